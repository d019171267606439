#!/usr/bin/env bash
# Make a systemd rootfs boot cleanly inside a container:
# no udev, getty, kernel-module or remount units (nothing to do in a container, and they fail);
# an empty machine-id, generated at first boot, with dbus's pointing at it (dbus's postinst writes its own
# at build time, which systemd copies into an empty /etc/machine-id: every node had the same one).
set -euo pipefail
T=${1:?usage: customize.sh ROOTFS}
for u in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
         getty@tty1.service console-getty.service systemd-modules-load.service sys-kernel-config.mount \
         systemd-remount-fs.service systemd-timesyncd.service; do
    ln -sf /dev/null "$T/etc/systemd/system/$u"
done
: >"$T/etc/machine-id"
rm -f "$T/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$T/var/lib/dbus/machine-id"
echo node >"$T/etc/hostname"
