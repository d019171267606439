"""The lab rack end to end (see conftest.py).  Test order matters: the last test takes the rack down
and compares the host with what it was before ``up``."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time

import pytest

from ingot_lab import rack
from ingot_lab.container_machine import BASE_IMAGE, DIR_LABEL, LABEL
from ingot_lab.rack_client import host_snapshot, wait_for
from ingot_lab.runner import ansible_env, unwrap_unsafe
from ingot_lab.state import Lab, LabError


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


def test_discovery_of_all_nodes(lab_rack, tmp_path):
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
        assert sorted(node['macs']) == sorted(m.lower() for m in lab_rack.macs(name))
    wait_for(lambda: all(lab_rack.power(n) == 'off' for n in names), 60, what='every node off')

    # and in the dynamic inventory (ingot.metal.provisioner through ansible-inventory), grouped by state,
    # with the MACs and facts the firmware reported and the BMC address from the registry
    source = tmp_path / 'lab.ingot.yml'
    source.write_text(json.dumps({'plugin': 'ingot.metal.provisioner', 'provisioner_url': rack.provisioner_url()}))
    env = dict(os.environ, **ansible_env({'INGOT_PROVISIONER_TOKEN': lab_rack.token()}))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-inventory'), '-i', str(source),
                           '--list'], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and 'Failed to parse' not in proc.stderr, proc.stderr[-3000:]
    listing = json.loads(proc.stdout)
    hostvars = listing['_meta']['hostvars']
    for name in names:
        node = by_mac[lab_rack.macs(name)[0]]
        assert node['name'] in listing['state_discovered']['hosts'], listing.get('state_discovered')
        hv = unwrap_unsafe(hostvars[node['name']])
        assert sorted(hv['ingot_macs']) == sorted(node['macs'])
        assert hv['ingot_state'] == 'discovered' and hv['ingot_facts']['cpus'] == node['facts']['cpus']


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


def _stand_in_image(lab_rack, tmp_path, name):
    """Until roles/os_image exists: the lab's systemd base image as a tar in the provisioner's image
    store, registered with its sha256 (a bad one when asked)."""
    tar = tmp_path / 'os.tar'
    cid = subprocess.run(['docker', 'create', BASE_IMAGE], capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run('docker export %s > %s' % (cid, tar), shell=True, check=True)
    finally:
        subprocess.run(['docker', 'rm', cid], capture_output=True, check=False)
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    subprocess.run(['docker', 'cp', str(tar), '%s:/var/lib/ingot-provisioner/images/%s.tar' % (rack.PROVISIONER, name)],
                   check=True)
    subprocess.run(['docker', 'exec', rack.PROVISIONER, 'chmod', '0644', '/var/lib/ingot-provisioner/images/%s.tar' % name],
                   check=True)
    return digest, '%s.tar' % name


def test_deploy_bad_checksum_then_good_image_boots_from_disk(lab_rack, tmp_path):
    """Deploy through the provisioner API and the BMC: a wrong checksum ends in deploy_failed with an
    event naming the image and an untouched disk; a retry with the right image lands on the disk and
    the node boots it (the provisioner's iPXE script sends the deployed node to its disk)."""
    name = 'n002'
    mac = lab_rack.macs(name)[0]
    vm = lab_rack.machine(name)
    digest, fname = _stand_in_image(lab_rack, tmp_path, 'standin')
    lab_rack.api('/api/v1/images', 'POST', {'name': 'standin', 'url': fname, 'sha256': digest, 'format': 'tar'})
    lab_rack.api('/api/v1/images', 'POST', {'name': 'standin-bad', 'url': fname, 'sha256': '0' * 64, 'format': 'tar'})
    node = [n for n in lab_rack.api('/api/v1/nodes')['items'] if mac in n['macs']][0]
    lab_rack.api('/api/v1/nodes/%s/enroll' % node['id'], 'POST', {})
    lab_rack.api('/api/v1/allocations', 'POST', {'owner': 'e2e', 'name': 'e2e1'})
    lab_rack.api('/api/v1/nodes/%s/deploy' % node['id'], 'POST', {'image': 'standin-bad', 'ssh_keys': []})
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'pxe')
    lab_rack.ipmitool(name, 'power', 'on')
    wait_for(lambda: lab_rack.api('/api/v1/nodes/%s' % node['id'])['state'] == 'deploy_failed', 90, interval=1,
             what='deploy_failed')
    events = lab_rack.api('/api/v1/nodes/%s/events' % node['id'])['items']
    assert any('standin-bad' in json.dumps(e) for e in events if 'fail' in json.dumps(e).lower())
    assert not os.path.exists(os.path.join(vm.disk, 'lib', 'systemd', 'systemd'))
    lab_rack.ipmitool(name, 'power', 'off')

    start = time.monotonic()
    lab_rack.api('/api/v1/nodes/%s/deploy' % node['id'], 'POST', {'image': 'standin', 'ssh_keys': []})
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'pxe')
    lab_rack.ipmitool(name, 'power', 'on')
    wait_for(lambda: lab_rack.api('/api/v1/nodes/%s' % node['id'])['state'] == 'deployed', 120, interval=1,
             what='deployed')
    print('deploy of the stand-in image: %.1f s' % (time.monotonic() - start))
    assert os.path.isfile(os.path.join(vm.disk, 'var', 'lib', 'cloud', 'seed', 'nocloud', 'user-data'))
    console = wait_for(lambda: 'exec /disk/lib/systemd/systemd' in lab_rack.console(name) and lab_rack.console(name),
                       60, what='the boot from disk after the deploy')
    assert 'rebooting' in console
    assert lab_rack.power(name) == 'on'
    lab_rack.ipmitool(name, 'power', 'off')


def _container(name):
    proc = subprocess.run(['docker', 'inspect', '--type', 'container', name], capture_output=True, text=True,
                          check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def test_leftovers_of_a_lab_that_is_gone(lab_rack, tmp_path):
    """A killed lab leaves stopped containers in Docker: a node container of the same name made
    by another lab (other disk) is made again at power on, not booted; ``up`` removes the stopped
    containers of a lab that is gone, and refuses while another lab is up."""
    name = sorted(lab_rack.config)[-1]
    vm = lab_rack.machine(name)
    assert lab_rack.power(name) == 'off'
    gone = str(tmp_path / 'gone-lab')
    other_disk = tmp_path / 'other-disk'
    other_disk.mkdir()
    subprocess.run(['docker', 'rm', '-f', vm.container], capture_output=True, check=False)
    subprocess.run(['docker', 'create', '--name', vm.container, '--label', '%s=%s' % (LABEL, name),
                    '--label', '%s=%s' % (DIR_LABEL, gone), '--network', 'none',
                    '-v', '%s:/disk' % other_disk, vm.image], capture_output=True, check=True)
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'disk')
    lab_rack.ipmitool(name, 'power', 'on')
    wait_for(lambda: 'boot device disk' in lab_rack.console(name), 20, what='the firmware on the console')
    assert lab_rack.power(name) == 'on'
    info = _container(vm.container)
    assert info['Config']['Labels'][DIR_LABEL] == lab_rack.state_dir
    assert [m['Source'] for m in info['Mounts'] if m['Destination'] == '/disk'] == [os.path.realpath(vm.disk)]
    assert not os.listdir(other_disk)
    lab_rack.ipmitool(name, 'power', 'off')

    left = 'ingot-node-zzleft'
    subprocess.run(['docker', 'create', '--name', left, '--label', '%s=zzleft' % LABEL,
                    '--label', '%s=%s' % (DIR_LABEL, gone), vm.image], capture_output=True, check=True)
    try:
        assert rack.clear_leftovers(lab_rack.lab) == [left]
        assert _container(left) is None
        assert _container(vm.container) is not None           # this lab's own, stopped: kept
        assert _container(rack.PROVISIONER)['State']['Running']
        # Seen from another state directory, this rack is a lab that is up: refused, nothing removed.
        with pytest.raises(LabError, match='another lab is up .state directory %s' % re.escape(lab_rack.state_dir)):
            rack.clear_leftovers(Lab(str(tmp_path / 'second-lab')))
        assert _container(rack.PROVISIONER)['State']['Running']
        assert _container(vm.container) is not None
    finally:
        subprocess.run(['docker', 'rm', '-f', left], capture_output=True, check=False)


def test_zz_down_restores_the_host(lab_rack):
    lab_rack.down()
    after = host_snapshot(lab_rack.state_dir)
    assert after == lab_rack.before
