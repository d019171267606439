#!/bin/sh
# ingot lab node firmware: PID 1 of a node container, acting as a server's PXE firmware would.
#
# The virtual BMC (lab/ingot_lab/container_machine.py) writes the boot device of this boot into
# /nvram/boot ("pxe" or "disk") and the device of later (warm) boots into /nvram/next, then starts
# this container and attaches its NIC (eth0, fixed MAC) from the host.
#   pxe:  DHCP (busybox udhcpc, user class iPXE) -> the iPXE script for our MAC over HTTP (the same
#         script real iPXE gets: /boot/ipxe?mac=...) -> what it says:
#           kernel ... ingot.mode=discover ...   run the provisioner's agent.sh in discover mode, power off
#           kernel ... ingot.mode=deploy|wipe    run agent.sh with the ingot.* parameters on /disk, reboot
#           sanboot / exit                       boot the local disk
#   disk: chroot into /disk and exec its systemd; no OS there: say so and halt with power on.
# Console output (stdout) is the container's log: `ingot-lab node console NAME`.
exec 2>&1
D=${DISK:-/disk}
IF=${NIC:-eth0}
NVRAM=${NVRAM:-/nvram}
say() { echo "firmware: $*"; }

halt_on() {   # halt, power stays on (the container keeps running)
    say "$*"
    say "system halted"
    # the power button (SIGRTMIN+3 = 37, docker stop's signal) or SIGTERM: power off
    # shellcheck disable=SC2172 # dash knows no RTMIN+3 name
    trap 'say "power button: off"; exit 0' TERM INT 37
    while :; do sleep 3600 & wait $!; done
}

wait_nic() {
    n=0
    while ! ip link show "$IF" >/dev/null 2>&1; do
        n=$((n + 1))
        [ "$n" -ge "${NIC_WAIT:-300}" ] && return 1
        sleep 0.1
    done
    ip link set lo up 2>/dev/null
    ip link set "$IF" up
}

boot_disk() {
    say "booting from disk $D"
    if [ ! -x "$D/lib/systemd/systemd" ]; then
        halt_on "no bootable OS on disk (no $D/lib/systemd/systemd)"
    fi
    wait_nic || say "no NIC $IF: booting without network"
    set -e
    mountpoint -q "$D/proc" || mount -t proc proc "$D/proc"
    mountpoint -q "$D/sys" || mount --rbind /sys "$D/sys"
    mountpoint -q "$D/dev" || mount --rbind /dev "$D/dev"
    mountpoint -q "$D/run" || mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$D/run"
    mkdir -p "$D/run/lock"
    # resolv.conf and hosts come from the container (the node has no DNS of its own); the
    # hostname stays the disk's, so that what cloud-init writes to /etc/hostname lands on the disk
    for f in resolv.conf hosts; do
        [ -e "$D/etc/$f" ] || : > "$D/etc/$f"
        mount --bind "/etc/$f" "$D/etc/$f"
    done
    say "exec $D/lib/systemd/systemd"
    exec chroot "$D" /usr/bin/env container=docker /lib/systemd/systemd
}

ipxe_param() {   # ipxe_param KEY SCRIPT: the value of ingot.KEY= on the kernel line
    sed -n 's/^kernel[[:space:]]//p' "$2" | tr -s '[:blank:]' '\n' | sed -n "s/^ingot\.$1=//p" | head -n 1
}

boot_pxe() {
    say "PXE boot on $IF"
    if ! wait_nic; then say "no NIC $IF (not attached)"; return 1; fi
    mac=$(cat "/sys/class/net/$IF/address")
    say "$IF mac $mac: DHCP"
    rm -f /run/dhcp.env
    # like a PXE ROM: rounds of DISCOVERs with growing timeouts (2, 4, 8 s), about a minute in all,
    # so that a DHCP server slowed by a busy rack is waited for
    got=
    for wait in 2 4 8; do
        if busybox udhcpc -i "$IF" -f -q -n -t "${DHCP_TRIES:-3}" -T "$wait" -x 0x4d:69505845 \
                -s /fw/udhcpc.script 2>&1; then
            got=1; break
        fi
        say "no DHCP lease yet ($wait s timeouts): trying again"
    done
    if [ -z "$got" ]; then say "no DHCP answer"; return 1; fi
    # shellcheck disable=SC1091 # written by /fw/udhcpc.script
    . /run/dhcp.env
    say "DHCP: ip=${ip:-} next-server=${siaddr:-} boot_file=${boot_file:-}"
    case ${boot_file:-} in
        http://*|https://*) url=$boot_file ;;
        '') say "no boot file in the DHCP answer"; return 1 ;;
        *) url="http://${siaddr}:${PROVISIONER_PORT:-8080}/boot/ipxe?mac=\${net0/mac}" ;;
    esac
    url=$(printf '%s' "$url" | sed "s|\${net0/mac}|$mac|g; s|\${mac}|$mac|g")
    say "fetching iPXE script $url"
    if ! curl -fsS --retry 3 --retry-connrefused -o /run/boot.ipxe "$url"; then
        say "cannot fetch the iPXE script"; return 1
    fi
    echo "----- iPXE script -----"; cat /run/boot.ipxe; echo "-----------------------"
    if grep -Eq '^[[:space:]]*(sanboot|exit)' /run/boot.ipxe && ! grep -q '^kernel' /run/boot.ipxe; then
        say "iPXE script: boot the local disk"
        return 2
    fi
    mode=$(ipxe_param mode /run/boot.ipxe)
    purl=$(ipxe_param url /run/boot.ipxe)
    token=$(ipxe_param token /run/boot.ipxe)
    [ -n "$purl" ] || { say "iPXE script has no ingot.url"; return 1; }
    say "iPXE script: agent mode ${mode:-deploy}, provisioner $purl"
    if ! curl -fsS --retry 3 -o /run/agent.sh "$purl/agent/agent.sh"; then
        say "cannot fetch $purl/agent/agent.sh"; return 1
    fi
    set -- --url "$purl" --mode "${mode:-deploy}" --target "$D"
    [ -n "$token" ] && set -- "$@" --token "$token"
    # a progress report every second (the agent's default is 5 s): a lab node writes its image to a directory
    # in a few seconds, where a real disk takes minutes; so that a deploy's progress shows (the web view's bar)
    INGOT_REBOOT_CMD=true INGOT_DISCOVER_DONE_CMD=true INGOT_CMDLINE=/dev/null INGOT_PROGRESS_INTERVAL=1 \
        sh /run/agent.sh "$@" 2>&1
    rc=$?
    say "agent finished (mode ${mode:-deploy}, exit $rc)"
    if [ "${mode:-deploy}" = discover ]; then
        say "discovery done: powering off"; exit 0
    fi
    [ "$rc" -eq 0 ] || { say "agent failed"; return 1; }
    return 3   # reboot
}

dev=$(cat "$NVRAM/boot" 2>/dev/null || echo disk)
boots=0
while :; do
    boots=$((boots + 1))
    say "boot #$boots: boot device $dev"
    case $dev in
        pxe)
            boot_pxe; rc=$?
            case $rc in
                2) boot_disk ;;
                3) say "rebooting"; ip addr flush dev "$IF" 2>/dev/null ;;
                *) if [ "${PXE_FALLBACK_DISK:-1}" = 1 ]; then say "PXE boot failed: trying the disk"; boot_disk; fi
                   halt_on "PXE boot failed" ;;
            esac ;;
        *) boot_disk ;;
    esac
    dev=$(cat "$NVRAM/next" 2>/dev/null || echo disk)
done
