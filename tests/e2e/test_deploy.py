"""Deploy end to end with the real node image of roles/os_image (built through ansible-runner, cached
by node_image.py, registered in the lab provisioner by the role): the provisioner API allocates and
deploys, ingot.metal.bmc_boot / bmc_power PXE-boot the node, the deploy agent lands the image with its
checksum verified, the node boots from disk, cloud-init applies the seed, and ssh with the host key
pinned from the registry answers.  Then the wipe on release, and a node powered off in the middle of a
deploy (deploy timeout of the e2e rack: conftest.DEPLOY_TIMEOUT), then its retry.

Runs after test_rack.py's tests (conftest orders them): it uses the last node (deploy, wipe) and the
first (failure path); run alone it registers them itself. The deployed node is a module fixture: the
release test run alone deploys it first."""

import os
import time
import urllib.request

import pytest

from conftest import DEPLOY_TIMEOUT
from ingot_lab import deploy, node_image
from ingot_lab.rack_client import wait_for


def _mirror_reachable():
    try:
        with urllib.request.urlopen(node_image.MIRROR.rstrip('/') + '/dists/bookworm/Release', timeout=10):
            return True
    except OSError:
        return False


@pytest.fixture(scope='session')
def os_image():
    """roles/os_image's image (built once, cached across runs in node_image.CACHE)."""
    if os.geteuid() != 0:
        pytest.skip('roles/os_image needs root')
    if not _mirror_reachable():
        pytest.skip('the Debian mirror %s is unreachable: roles/os_image cannot build' % node_image.MIRROR)
    result = node_image.build()
    print('roles/os_image: %s (%d bytes), built=%s, %.1f s'
          % (result['path'], result['size'], result['built'], result['seconds']))
    return result


@pytest.fixture(scope='session')
def lab_image(lab_rack, os_image):
    result = deploy.install_image(lab_rack, os_image)
    image = lab_rack.api('/api/v1/images/%s' % result['name'])
    assert image['sha256'] == os_image['sha256']
    return image


@pytest.fixture(scope='session')
def ssh_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('ssh'))


@pytest.fixture(scope='session')
def ssh_key(ssh_dir):
    return deploy.ssh_keypair(ssh_dir)


def _state(lab_rack, node):
    return lab_rack.api('/api/v1/nodes/%s' % node['id'])['state']


def _read(path):
    with open(path) as handle:
        return handle.read()


@pytest.fixture(scope='module')
def deployed(lab_rack, lab_image, ssh_key, ssh_dir):
    """The rack's last node deployed with the real image (once for this module, whichever test asks
    first): its node record, name, address and the seconds from power-on to deployed and to SSH."""
    name = sorted(lab_rack.config)[-1]
    key, pubkey = ssh_key
    hostname = 'e2e-%s' % name
    node = deploy.allocate(lab_rack, name)
    node = deploy.deploy(lab_rack, node, lab_image['name'], pubkey, hostname, 'deployed-by-e2e')
    assert node['state'] == 'deploying' and node['ssh_host_keys'].get('ed25519', '').startswith('ssh-ed25519 ')
    start = time.monotonic()
    deploy.pxe_on(lab_rack, [name])
    deploy.wait_state(lab_rack, name, node, 'deployed', DEPLOY_TIMEOUT + 30)
    seconds = time.monotonic() - start
    ip, proc = deploy.wait_ssh(lab_rack, name, node, key, ssh_dir, timeout=120, command='hostname')
    return {'node': node, 'name': name, 'hostname': hostname, 'ip': ip, 'hostname_over_ssh': proc.stdout.strip(),
            'deployed_s': seconds, 'ssh_s': time.monotonic() - start}


def test_deploy_real_image_boots_and_ssh_answers_with_pinned_key(lab_rack, lab_image, ssh_key, ssh_dir, deployed):
    node, name, hostname, ip = deployed['node'], deployed['name'], deployed['hostname'], deployed['ip']
    key, pubkey = ssh_key
    vm = lab_rack.machine(name)
    events = lab_rack.api('/api/v1/nodes/%s/events' % node['id'])['items']
    success = [e for e in events if e['kind'] == 'agent_report' and 'installed on' in e['message']]
    assert success and lab_image['sha256'] in success[-1]['message'], events[-5:]
    console = lab_rack.console(name)
    assert "sha256 %s verified" % lab_image['sha256'] in console

    assert deployed['hostname_over_ssh'] == hostname
    status = deploy.ssh(ip, key, os.path.join(ssh_dir, 'known_hosts.%s' % name), 'cloud-init status --wait',
                        timeout=120)
    assert status.returncode == 0 and 'status: done' in status.stdout, (status.stdout, status.stderr)
    print('deploy of %s (%d bytes): power on to deployed %.1f s, to ssh answering %.1f s'
          % (lab_image['name'], lab_image.get('size') or 0, deployed['deployed_s'], deployed['ssh_s']))

    # a wrong pinned key is refused: no trust on first use
    wrong = os.path.join(ssh_dir, 'known_hosts.wrong')
    other = lab_rack.api('/api/v1/nodes/%s' % node['id'])
    other['ssh_host_keys'] = {'ed25519': _read(key + '.pub').split(' e2e@')[0]}
    deploy.known_hosts(wrong, other, ip)
    refused = deploy.ssh(ip, key, wrong, 'true')
    assert refused.returncode != 0 and 'verification failed' in refused.stderr, refused.stderr

    # the node's disk
    disk = vm.disk
    assert _read(os.path.join(disk, 'etc', 'hostname')).strip() == hostname
    assert 'NoCloud' in _read(os.path.join(disk, 'etc', 'cloud', 'cloud.cfg.d', '99_ingot.cfg'))   # image marker
    seed = os.path.join(disk, 'var', 'lib', 'cloud', 'seed', 'nocloud')
    assert hostname in _read(os.path.join(seed, 'meta-data'))
    assert pubkey in _read(os.path.join(seed, 'user-data'))
    assert pubkey in _read(os.path.join(disk, 'root', '.ssh', 'authorized_keys'))
    assert _read(os.path.join(disk, 'root', 'e2e-marker')).strip() == 'deployed-by-e2e'
    host_pub = _read(os.path.join(disk, 'etc', 'ssh', 'ssh_host_ed25519_key.pub')).split()[:2]
    assert ' '.join(host_pub) == ' '.join(node['ssh_host_keys']['ed25519'].split()[:2])
    assert not os.path.exists(os.path.join(disk, '.ingot-staging'))


def test_release_wipes_the_disk_and_node_is_ready(lab_rack, deployed):
    node, name = deployed['node'], deployed['name']
    vm = lab_rack.machine(name)
    written = ['etc/hostname', 'root/e2e-marker', 'var/lib/cloud/seed/nocloud/user-data',
               'etc/cloud/cloud.cfg.d/99_ingot.cfg', 'lib/systemd/systemd']
    assert all(os.path.lexists(os.path.join(vm.disk, f)) for f in written)
    node = lab_rack.api('/api/v1/nodes/%s/release' % node['id'], 'POST', {'wipe': True})
    assert node['state'] == 'releasing'
    start = time.monotonic()
    deploy.pxe_cycle(lab_rack, [name])       # the node is on (its OS booted): cycle into PXE
    deploy.wait_state(lab_rack, name, node, 'ready', DEPLOY_TIMEOUT + 30)
    print('wipe: %.1f s' % (time.monotonic() - start))
    assert 'mode wipe' in lab_rack.console(name) or 'ingot.mode=wipe' in lab_rack.console(name)
    left = [f for f in written if os.path.lexists(os.path.join(vm.disk, f))]
    assert not left, left
    assert os.listdir(vm.disk) == [], os.listdir(vm.disk)
    record = lab_rack.api('/api/v1/nodes/%s' % node['id'])
    assert record['state'] == 'ready' and not record['owner'] and not record['ssh_host_keys']
    # after the wipe the firmware boots the (now empty) disk: no OS, halted with power on
    wait_for(lambda: 'no bootable OS on disk' in lab_rack.console(name), 60, what='the empty disk boot')
    deploy.power_off(lab_rack, [name])


def test_power_off_mid_deploy_times_out_then_retry_works(lab_rack, lab_image, ssh_key, ssh_dir):
    name = sorted(lab_rack.config)[0]
    key, pubkey = ssh_key
    vm = lab_rack.machine(name)
    node = deploy.allocate(lab_rack, name)
    node = deploy.deploy(lab_rack, node, lab_image['name'], pubkey, 'e2e-%s' % name, 'first-try')
    deploy.pxe_on(lab_rack, [name])
    # the agent is writing the image: then pull the plug through the BMC
    wait_for(lambda: any('deploying image' in e['message'] or 'writing image' in e['message']
                         for e in lab_rack.api('/api/v1/nodes/%s/events' % node['id'])['items']),
             60, interval=0.2, what='the agent to start writing')
    deploy.power_off(lab_rack, [name])
    assert not vm.running()
    off = time.monotonic()
    assert _state(lab_rack, node) == 'deploying'
    deploy.wait_state(lab_rack, name, node, 'deploy_failed', DEPLOY_TIMEOUT + 30)
    print('deploy_failed %.1f s after the power off (deploy timeout %d s)' % (time.monotonic() - off,
                                                                              DEPLOY_TIMEOUT))
    record = lab_rack.api('/api/v1/nodes/%s' % node['id'])
    assert 'timed out' in (record['last_error'] or ''), record
    events = lab_rack.api('/api/v1/nodes/%s/events' % node['id'])['items']
    assert any(e['kind'] == 'timeout' for e in events)
    assert not os.path.exists(os.path.join(vm.disk, 'root', 'e2e-marker'))

    # retry: the same node, the same image
    node = deploy.deploy(lab_rack, node, lab_image['name'], pubkey, 'e2e-%s' % name, 'second-try')
    start = time.monotonic()
    deploy.pxe_on(lab_rack, [name])
    deploy.wait_state(lab_rack, name, node, 'deployed', DEPLOY_TIMEOUT + 30)
    ip, proc = deploy.wait_ssh(lab_rack, name, node, key, ssh_dir, timeout=120, command='hostname')
    print('retry: power on to ssh answering %.1f s' % (time.monotonic() - start))
    assert proc.stdout.strip() == 'e2e-%s' % name
    assert not os.path.exists(os.path.join(vm.disk, '.ingot-staging'))
    wait_for(lambda: os.path.exists(os.path.join(vm.disk, 'root', 'e2e-marker')), 60, what='cloud-init write_files')
    assert _read(os.path.join(vm.disk, 'root', 'e2e-marker')).strip() == 'second-try'
    deploy.power_off(lab_rack, [name])
