#!/usr/bin/env bash
# The customisation of debian-systemd (units masked, machine-id), then: no SSH host keys baked into the
# image (every container makes its own at boot: ssh.service's drop-in runs ssh-keygen -A), and
# docker.service disabled so that an instance starts without an engine running, as a node whose image
# carries the engine but was never configured.
set -euo pipefail
T=${1:?usage: customize.sh ROOTFS}
"$(dirname "${BASH_SOURCE[0]}")/../debian-systemd/customize.sh" "$T"
rm -f "$T"/etc/ssh/ssh_host_*
mkdir -p "$T/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
    >"$T/etc/systemd/system/ssh.service.d/host-keys.conf"
for u in docker.service docker.socket containerd.service; do
    rm -f "$T"/etc/systemd/system/*.wants/"$u"
done
