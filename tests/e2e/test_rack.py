"""The lab rack end to end (see conftest.py).  Test order matters: the last test takes the rack down
and compares the host with what it was before ``up``."""

import subprocess
import time

from ingot_lab.docker_machine import BASE_IMAGE

from conftest import host_snapshot, wait_for


def test_ipmitool_pxe_boot_and_power(lab_rack):
    """chassis bootdev pxe + power on PXE-boots the node (DHCP, the iPXE script for its MAC, the
    provisioner's agent); power status follows the container; the override is used once."""
    name = 'n001'
    mac = lab_rack.macs(name)[0]
    assert lab_rack.power(name) == 'off'
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'pxe')
    start = time.monotonic()
    lab_rack.ipmitool(name, 'power', 'on')
    assert lab_rack.power(name) == 'on'
    assert lab_rack.machine(name).running()
    console = wait_for(lambda: 'discovery done' in lab_rack.console(name) and lab_rack.console(name), 60,
                       what='the discovery to finish on the console')
    assert 'lease of 10.252.0.' in console
    assert '/boot/ipxe?mac=%s' % mac in console
    assert '#!ipxe' in console and 'ingot.mode=discover' in console
    # discovery ends with a power off: the container stops, and the BMC says so
    wait_for(lambda: lab_rack.power(name) == 'off', 30, what='power off after discovery')
    print('pxe boot to discovered and off: %.1f s' % (time.monotonic() - start))
    state = lab_rack.machine(name).state()
    assert state['last_boot']['device'] == 'pxe' and state['last_boot']['override'] is True
    assert state['boot']['device'] == 'default'          # next-boot-only: consumed
    assert 'Boot Device Selector : No override' in lab_rack.ipmitool(name, 'chassis', 'bootparam', 'get', '5').stdout


def test_disk_without_os_halts_powered_on_then_power_off(lab_rack):
    name = 'n001'
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'disk')
    lab_rack.ipmitool(name, 'power', 'on')
    wait_for(lambda: 'no bootable OS on disk' in lab_rack.console(name), 20, what='the no-OS message')
    time.sleep(1)
    assert lab_rack.power(name) == 'on'
    start = time.monotonic()
    lab_rack.ipmitool(name, 'power', 'off')
    assert lab_rack.power(name) == 'off'
    assert not lab_rack.machine(name).running()
    print('power off: %.2f s' % (time.monotonic() - start))


def test_soft_off_of_a_halted_node(lab_rack):
    name = 'n001'
    lab_rack.ipmitool(name, 'power', 'on')
    wait_for(lambda: lab_rack.console(name).count('system halted') >= 2, 20, what='the halt')
    lab_rack.ipmitool(name, 'power', 'soft')
    wait_for(lambda: lab_rack.power(name) == 'off', 20, what='soft off')


def test_wrong_password_is_refused_and_node_untouched(lab_rack):
    name = 'n002'
    proc = lab_rack.ipmitool(name, 'power', 'on', password='wrong-password', check=False)
    assert proc.returncode != 0
    assert lab_rack.power(name) == 'off'


def test_discovery_of_all_nodes(lab_rack):
    """N unregistered nodes powered on with pxe appear as discovered, with MACs and facts (n001
    was discovered by the first test: the provisioner sends a known node to its local disk)."""
    names = sorted(lab_rack.config)[1:]
    start = time.monotonic()
    for name in names:
        lab_rack.ipmitool(name, 'chassis', 'bootdev', 'pxe')
        lab_rack.ipmitool(name, 'power', 'on')

    def discovered():
        nodes = lab_rack.api('/api/v1/nodes?state=discovered')['items']
        by_mac = {m: n for n in nodes for m in n['macs']}
        return by_mac if all(lab_rack.macs(name)[0] in by_mac for name in names) else None

    by_mac = wait_for(discovered, 90, interval=1, what='every node discovered')
    print('discovery of %d nodes: %.1f s' % (len(names), time.monotonic() - start))
    for name in names:
        node = by_mac[lab_rack.macs(name)[0]]
        assert node['state'] == 'discovered'
        assert node['facts']['cpus'] >= 1 and node['facts']['memory_mib'] > 0
        assert node['facts'].get('discovered_target') == '/disk'
    wait_for(lambda: all(lab_rack.power(n) == 'off' for n in names), 60, what='every node off')


def test_known_node_pxe_boots_its_local_disk(lab_rack):
    name = 'n001'
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'pxe')
    lab_rack.ipmitool(name, 'power', 'on')
    console = wait_for(lambda: lab_rack.console(name).count('no bootable OS on disk') >= 3 and lab_rack.console(name),
                       30, what='the local boot')
    assert 'boot the local disk' in console and 'sanboot' in console
    assert lab_rack.power(name) == 'on'
    lab_rack.ipmitool(name, 'power', 'off')
    assert lab_rack.power(name) == 'off'


def test_disk_boot_of_an_os_then_soft_off(lab_rack):
    """A disk holding a systemd OS boots from disk (firmware chroot + systemd as PID 1), with the
    node's NIC; soft off (ACPI) halts it cleanly and the container ends."""
    name = sorted(lab_rack.config)[-1]
    vm = lab_rack.machine(name)
    created = subprocess.run(['docker', 'create', BASE_IMAGE], capture_output=True, text=True, check=True)
    cid = created.stdout.strip()
    try:
        subprocess.run('docker export %s | tar -x -C %s' % (cid, vm.disk), shell=True, check=True)
    finally:
        subprocess.run(['docker', 'rm', cid], capture_output=True, check=False)
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'disk')
    start = time.monotonic()
    lab_rack.ipmitool(name, 'power', 'on')

    def system_state():
        proc = subprocess.run(['docker', 'exec', vm.container, 'chroot', '/disk', 'systemctl', 'is-system-running'],
                              capture_output=True, text=True, check=False)
        return proc.stdout.strip() in ('running', 'degraded') and proc.stdout.strip()

    state = wait_for(system_state, 60, interval=0.5, what='systemd on the disk')
    print('disk boot to systemd %s: %.1f s' % (state, time.monotonic() - start))
    mac = subprocess.run(['docker', 'exec', vm.container, 'cat', '/sys/class/net/eth0/address'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert mac == lab_rack.macs(name)[0]
    assert 'exec /disk/lib/systemd/systemd' in lab_rack.console(name)
    start = time.monotonic()
    lab_rack.ipmitool(name, 'power', 'soft')
    wait_for(lambda: lab_rack.power(name) == 'off', 30, what='the OS to power off')
    print('soft off of the booted OS: %.1f s' % (time.monotonic() - start))


def test_zz_down_restores_the_host(lab_rack):
    lab_rack.down()
    after = host_snapshot(lab_rack.state_dir)
    assert after == lab_rack.before
