# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/os_image on this machine (connection local, as root), through ansible-runner.

The image is built once per session (debootstrap + apt, a few minutes on a busy 2-core machine) into a
private cache and image directory; the other tests reuse it, in file order:
  first build -> checked tree | cached run changes nothing | check mode names the layer each input
  rebuilds and builds nothing | a customisation change rebuilds only the image layer | apt failing in
  the chroot leaves no mount and the previous image and layers untouched | the image boots under systemd in two
  containers (distinct machine-ids and host keys, cloud-init from a NoCloud seed, sshd) |
  registration in the real provisioner's catalog, served by its image store |
  os_image_keep_layers=false prunes the cache after a build, and the image stays current.
A package change is not built to the end here (apt again, minutes): check mode shows that it
rebuilds the rootfs layer on the cached bootstrap, and the failing-apt test starts that path.

Skipped only when this machine cannot build at all (not root, or debootstrap's mirror unreachable);
the boot test also needs Docker (lab/docker/ensure-docker). INGOT_OS_IMAGE_MIRROR overrides the
mirror, INGOT_OS_IMAGE_KEEP=1 keeps the work directory.
"""

import glob
import hashlib
import json
import os
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import yaml

from ingot_lab.runner import REPO, run_playbook

pytestmark = pytest.mark.timeout(2400)

LOCAL = {'all': {'hosts': {'localhost': {'ansible_connection': 'local'}}}}
MIRROR = os.environ.get('INGOT_OS_IMAGE_MIRROR', 'http://deb.debian.org/debian')
ENSURE = os.path.join(REPO, 'lab', 'docker', 'ensure-docker')
TEARDOWN = os.path.join(REPO, 'lab', 'docker', 'teardown-docker')
KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJw8vJmKq2mK1Wq3n9s0x6u0mP5o2f0aWc4bq2d7kqj3 ci@os-image-test'
TIMES = {}


def _say(msg):
    print('[os_image] %s' % msg, flush=True)


class Workspace:
    def __init__(self, root):
        self.root = root
        self.images = os.path.join(root, 'images')
        self.cache = os.path.join(root, 'cache')
        self.runs = os.path.join(root, 'runs')
        self.image = os.path.join(self.images, 'bookworm.tar.gz')
        self.sha_file = os.path.join(self.images, 'bookworm.sha256')
        self.build_info = os.path.join(self.images, 'bookworm.build.json')
        self.layers = os.path.join(self.cache, 'bookworm')
        self.count = 0

    def vars(self, **extra):
        out = {'os_image_dir': self.images, 'os_image_cache_dir': self.cache, 'os_image_mirror': MIRROR}
        out.update(extra)
        return out

    def run(self, check=False, what='run', **extra):
        """One play with the role; returns the RunResult, its time recorded under ``what``."""
        self.count += 1
        play = [{'name': 'os_image', 'hosts': 'localhost', 'gather_facts': False,
                 'roles': [{'role': 'ingot.metal.os_image', 'vars': self.vars(**extra)}]}]
        r = run_playbook(play, LOCAL, check=check, timeout=2000,
                         workdir=os.path.join(self.runs, '%02d-%s' % (self.count, what.replace(' ', '-'))))
        TIMES[what] = r.seconds
        _say('%-28s %s in %5.1f s, changed=%d' % (what, r.status, r.seconds, r.count('changed')))
        return r

    def mounts(self):
        with open('/proc/self/mounts') as f:
            return [line.split()[1] for line in f if line.split()[1].startswith(self.root + '/')]


def ok(r):
    assert r.status == 'successful' and r.rc == 0, r.stdout[-6000:]
    return r


def changed_tasks(r):
    return [t.task for t in r.results if t.status == 'changed']


def ran(r, prefix):
    """The results of the tasks whose name starts with prefix (the task ran, whatever its status)."""
    return [t for t in r.results if t.task.startswith(prefix) and t.status != 'skipped']


def result_fact(r):
    return r.one('Publish the result as os_image_result').result['ansible_facts']['os_image_result']


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def extract(image, dest):
    os.makedirs(dest)
    subprocess.run(['tar', '--extract', '--file', image, '--directory', dest, '--numeric-owner',
                    '--xattrs', '--xattrs-include=*', '--acls'], check=True)
    return dest


def rmtree(path):
    if os.path.lexists(path):
        subprocess.run(['rm', '-rf', '--one-file-system', path], check=True)


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def ws():
    if os.geteuid() != 0:
        pytest.skip('the os_image role builds with debootstrap, chroot and mount: it needs root')
    url = '%s/dists/bookworm/InRelease' % MIRROR.rstrip('/')
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            resp.read(64)
    except (OSError, urllib.error.URLError) as e:
        pytest.skip('debootstrap cannot reach the Debian mirror %s (%s)' % (MIRROR, e))
    root = tempfile.mkdtemp(prefix='ingot-os-image-', dir='/var/tmp')
    w = Workspace(root)
    try:
        yield w
    finally:
        left = w.mounts()
        assert not left, 'mounts left below %s: %s' % (root, left)
        if os.environ.get('INGOT_OS_IMAGE_KEEP') == '1':
            _say('kept %s' % root)
        else:
            rmtree(root)
        _say('times: %s' % ', '.join('%s %.0f s' % kv for kv in TIMES.items()))


@pytest.fixture(scope='module')
def first_build(ws):
    r = ok(ws.run(what='first build'))
    return r


@pytest.fixture(scope='module')
def tree_of(ws):
    """Extracts an image into a fresh directory below the workspace (one per call)."""
    made = []

    def _extract(image=None):
        dest = os.path.join(ws.root, 'tree%d' % len(made))
        made.append(dest)
        return extract(image or ws.image, dest)

    yield _extract
    for d in made:
        rmtree(d)


# ------------------------------------------------------------------------------------------------ tests
def test_first_build_makes_a_checksummed_node_image(ws, first_build, tree_of):
    r = first_build
    assert r.count('changed') > 0
    assert ran(r, 'Run debootstrap') and ran(r, 'Install the packages in the chroot')
    assert not ws.mounts()

    # the image, its sha256sum file and its build record agree
    assert os.path.isfile(ws.image)
    digest = sha256_of(ws.image)
    with open(ws.sha_file) as f:
        assert f.read() == '%s  bookworm.tar.gz\n' % digest
    subprocess.run(['sha256sum', '--check', '--strict', '--quiet', 'bookworm.sha256'], cwd=ws.images, check=True)
    with open(ws.build_info) as f:
        info = json.load(f)
    fact = result_fact(r)
    assert info['sha256'] == fact['sha256'] == digest
    assert info['size'] == int(fact['size']) == os.path.getsize(ws.image)
    assert info['content_key'] == fact['content_key'] and fact['built'] is True
    assert fact['url'] == 'bookworm.tar.gz' and fact['format'] == 'tar.gz'
    assert 'cloud-init' in info['packages'] and 'docker.io' not in info['packages']

    # numeric owners only, and the shadow group kept by number
    with tarfile.open(ws.image) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert all(m.uname == '' and m.gname == '' for m in members.values())
    assert members['./etc/shadow'].gid == 42 and members['./etc/shadow'].uid == 0

    t = tree_of()
    assert os.access(os.path.join(t, 'lib/systemd/systemd'), os.X_OK)
    assert os.readlink(os.path.join(t, 'sbin/init')).endswith('systemd')
    for exe in ('usr/sbin/sshd', 'usr/bin/python3', 'usr/bin/cloud-init', 'sbin/dhclient', 'sbin/ifup',
                'usr/bin/curl', 'usr/bin/sudo', 'usr/bin/ping', 'sbin/ip'):
        assert os.access(os.path.join(t, exe), os.X_OK), exe
    with open(os.path.join(t, 'etc/cloud/cloud.cfg.d/99_ingot.cfg')) as f:
        cfg = yaml.safe_load(f)
    assert cfg['datasource_list'] == ['NoCloud', 'None']
    assert cfg['network'] == {'config': 'disabled'} and cfg['locale'] == 'C.UTF-8'
    assert glob.glob(os.path.join(t, 'etc/ssh/ssh_host_*')) == []
    with open(os.path.join(t, 'etc/systemd/system/ssh.service.d/ingot-keygen.conf')) as f:
        assert 'ExecStartPre=/usr/bin/ssh-keygen -A' in f.read()
    assert os.path.getsize(os.path.join(t, 'etc/machine-id')) == 0
    assert os.readlink(os.path.join(t, 'var/lib/dbus/machine-id')) == '/etc/machine-id'
    with open(os.path.join(t, 'etc/network/interfaces.d/eth0')) as f:
        assert f.read() == 'auto eth0\niface eth0 inet dhcp\n'
    with open(os.path.join(t, 'etc/network/interfaces')) as f:
        assert 'source /etc/network/interfaces.d/*' in f.read()
    for unit in ('systemd-udevd.service', 'getty@tty1.service', 'systemd-remount-fs.service'):
        assert os.readlink(os.path.join(t, 'etc/systemd/system', unit)) == '/dev/null', unit
    with open(os.path.join(t, 'etc/hostname')) as f:
        assert f.read() == 'node\n'
    assert os.path.getsize(os.path.join(t, 'etc/resolv.conf')) == 0  # not the build host's
    assert not os.path.exists(os.path.join(t, 'usr/sbin/policy-rc.d'))
    assert not os.path.exists(os.path.join(t, 'root/.ssh/authorized_keys'))
    assert [f for f in os.listdir(os.path.join(t, 'var/lib/apt/lists')) if os.path.isfile(
        os.path.join(t, 'var/lib/apt/lists', f))] == []
    assert os.stat(os.path.join(t, 'var/lib/apt/lists')).st_mtime < 86400 * 2  # 1970: apt must update
    assert glob.glob(os.path.join(t, 'var/cache/apt/archives/*.deb')) == []
    with open(os.path.join(t, 'etc/apt/sources.list')) as f:
        sources = f.read()
    assert 'bookworm-security' in sources and 'deb %s bookworm main' % MIRROR in sources


def test_second_run_builds_nothing(ws, first_build):
    before = os.stat(ws.image).st_mtime_ns, os.stat(ws.sha_file).st_mtime_ns
    r = ok(ws.run(what='cached run'))
    assert r.count('changed') == 0, changed_tasks(r)
    assert (os.stat(ws.image).st_mtime_ns, os.stat(ws.sha_file).st_mtime_ns) == before
    assert not ran(r, 'Pack the tree') and not ran(r, 'Run debootstrap')
    assert result_fact(r)['sha256'] == sha256_of(ws.image) and result_fact(r)['built'] is False


def test_check_mode_names_the_layer_each_input_rebuilds_and_builds_nothing(ws, first_build):
    """Every input changes the key of its layer: one check-mode run, one play per changed input."""
    cases = [
        ('nothing', {}, None),
        ('extra package', {'os_image_extra_packages': ['tree']}, 'rootfs'),
        ('docker', {'os_image_docker': True}, 'rootfs'),
        ('security mirror', {'os_image_security_mirror': ''}, 'rootfs'),
        ('mirror', {'os_image_mirror': MIRROR.rstrip('/') + '/'}, 'bootstrap'),
        ('serial', {'os_image_serial': '2026-01'}, 'bootstrap'),
        ('hostname', {'os_image_hostname': 'other'}, 'image'),
        ('authorized key', {'os_image_root_authorized_keys': [KEY]}, 'image'),
        ('masked units', {'os_image_masked_units': []}, 'image'),
        ('dhcp interfaces', {'os_image_dhcp_interfaces': ['eth0', 'eth1']}, 'image'),
        ('ca bundle', {'os_image_ca_bundle': '/etc/ssl/certs/ca-certificates.crt'}, 'image'),
        ('format', {'os_image_format': 'tar'}, 'image'),
    ]
    plays = [{'name': name, 'hosts': 'localhost', 'gather_facts': False,
              'roles': [{'role': 'ingot.metal.os_image', 'vars': ws.vars(**extra)}]} for name, extra, dummy in cases]
    before = sorted(os.listdir(ws.images)), os.stat(ws.image).st_mtime_ns, sorted(os.listdir(ws.layers))
    r = run_playbook(plays, LOCAL, check=True, timeout=600, workdir=os.path.join(ws.runs, 'check-matrix'))
    TIMES['check mode (%d plays)' % len(cases)] = r.seconds
    ok(r)
    plans = r.for_task('Show the plan')
    assert len(plans) == len(cases)
    for (name, dummy, layer), plan in zip(cases, plans):
        lines = plan.result['msg']
        image, rootfs, bootstrap = lines[0], lines[1], lines[2]
        if layer is None:
            assert plan.status == 'ok' and 'up to date' in image, (name, lines)
            continue
        assert plan.status == 'changed' and ': build' in image, (name, lines)
        assert ('rootfs layer: build' in rootfs) == (layer in ('rootfs', 'bootstrap')), (name, lines)
        assert ('bootstrap layer: build' in bootstrap) == (layer == 'bootstrap'), (name, lines)
        assert ('rootfs layer: cached' in rootfs) == (layer == 'image'), (name, lines)
    assert r.count('changed') == len(cases) - 1, changed_tasks(r)
    assert not ran(r, 'Pack the tree') and not ran(r, 'Run debootstrap') and not ran(r, 'Install the build tools')
    assert (sorted(os.listdir(ws.images)), os.stat(ws.image).st_mtime_ns, sorted(os.listdir(ws.layers))) == before


def test_customisation_change_rebuilds_only_the_image_layer(ws, first_build, tree_of):
    old_digest = sha256_of(ws.image)
    old_mtime = os.stat(ws.image).st_mtime_ns
    extra = {'os_image_root_authorized_keys': [KEY], 'os_image_hostname': 'lab-node',
             'os_image_ca_bundle': '/etc/ssl/certs/ca-certificates.crt'}
    r = ok(ws.run(what='customisation rebuild', **extra))
    assert ran(r, 'Customise the tree') and ran(r, 'Pack the tree')
    assert not ran(r, 'Run debootstrap') and not ran(r, 'Install the packages in the chroot')
    assert os.stat(ws.image).st_mtime_ns != old_mtime
    digest = sha256_of(ws.image)
    assert digest != old_digest
    with open(ws.sha_file) as f:
        assert f.read().split()[0] == digest == result_fact(r)['sha256']
    assert not ws.mounts() and not os.path.exists(os.path.join(ws.layers, 'staging'))

    t = tree_of()
    keys = os.path.join(t, 'root/.ssh/authorized_keys')
    with open(keys) as f:
        assert f.read() == KEY + '\n'
    assert oct(os.stat(keys).st_mode & 0o777) == '0o600'
    assert oct(os.stat(os.path.dirname(keys)).st_mode & 0o777) == '0o700'
    with open(os.path.join(t, 'etc/hostname')) as f:
        assert f.read() == 'lab-node\n'
    with open('/etc/ssl/certs/ca-certificates.crt') as f:
        host_ca = f.read().strip().splitlines()[-2]  # a line of the host bundle's last certificate
    with open(os.path.join(t, 'etc/ssl/certs/ca-certificates.crt')) as f:
        assert host_ca in f.read()

    mtime = os.stat(ws.image).st_mtime_ns
    again = ok(ws.run(what='customised, cached', **extra))
    assert again.count('changed') == 0, changed_tasks(again)
    assert os.stat(ws.image).st_mtime_ns == mtime


def test_failed_build_unmounts_the_chroot_and_keeps_the_previous_image(ws, first_build):
    """apt fails inside the chroot (a security mirror that refuses connections, on loopback): every mount
    is gone, the image and the cached layers are untouched, and the previous inputs are still a no-op."""
    before = os.stat(ws.image).st_mtime_ns, sha256_of(ws.image)
    with open(os.path.join(ws.layers, 'rootfs.key')) as f:
        rootfs_key = f.read()
    r = ws.run(what='failed build', os_image_security_mirror='http://127.0.0.1:9/debian-security')
    assert r.status == 'failed'
    failed = [t for t in r.results if t.status == 'failed']
    assert [t.task for t in failed] == ['Update the package lists in the chroot'], r.stdout[-3000:]
    assert '127.0.0.1' in failed[0].result.get('stdout', '') + failed[0].result.get('stderr', ''), failed[0].result
    assert ran(r, 'Unmount everything below the chroot') and not ran(r, 'Run debootstrap')
    assert not ws.mounts()
    assert (os.stat(ws.image).st_mtime_ns, sha256_of(ws.image)) == before
    with open(os.path.join(ws.layers, 'rootfs.key')) as f:
        assert f.read() == rootfs_key
    # the inputs the customisation test left
    again = ok(ws.run(what='after the failure', os_image_root_authorized_keys=[KEY], os_image_hostname='lab-node',
                      os_image_ca_bundle='/etc/ssl/certs/ca-certificates.crt'))
    assert again.count('changed') == 0, changed_tasks(again)


# --------------------------------------------------------------------------------- boot in containers
@pytest.fixture(scope='module')
def docker_engine():
    r = subprocess.run([ENSURE], capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0:
        pytest.skip('Docker cannot run here: lab/docker/ensure-docker failed:\n%s%s' % (r.stdout, r.stderr[-3000:]))
    started_here = 'nothing changed' not in r.stdout
    try:
        yield
    finally:
        if started_here:  # a daemon found running belongs to whoever started it
            subprocess.run([TEARDOWN], capture_output=True, text=True, timeout=300, check=False)


def _docker(*args, check=True, timeout=120):
    r = subprocess.run(['docker'] + list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError('docker %s: rc=%d\n%s%s' % (' '.join(args), r.returncode, r.stdout, r.stderr))
    return r


def _run_node(name, image, seed):
    """systemd as PID 1 in a container (the flags of lab/firmware/README.md, "Nodes"), the host's cgroup v1
    hierarchies bound one by one over a private tmpfs (never the whole /sys/fs/cgroup: it turns the host's read-only)."""
    cgroups = []
    for c in sorted(os.listdir('/sys/fs/cgroup')):
        p = os.path.join('/sys/fs/cgroup', c)
        if os.path.ismount(p):
            cgroups += ['-v', '%s:%s:rw' % (p, p)]
    _docker('run', '-d', '--name', name, '--hostname', name, '--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE',
            '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined',
            '--tmpfs', '/run', '--tmpfs', '/run/lock', '--cgroupns=host', '--tmpfs', '/sys/fs/cgroup:mode=755',
            *cgroups, '--stop-signal', 'SIGRTMIN+3', '-v', '%s:/var/lib/cloud/seed/nocloud:ro' % seed, image)


def test_image_boots_under_systemd_in_containers(ws, first_build, docker_engine):
    tag = 'ingot-test/os-image:%d' % os.getpid()
    names = ['ingot-osimg-%d-%d' % (os.getpid(), i) for i in (1, 2)]
    start = time.monotonic()
    with open(ws.image, 'rb') as f:
        subprocess.run(['docker', 'import', '-c', 'CMD ["/sbin/init"]', '-c', 'ENV container=docker', '-', tag],
                       stdin=f, check=True, capture_output=True, timeout=600)
    try:
        for i, name in enumerate(names):
            seed = os.path.join(ws.root, 'seed-%s' % name)
            os.makedirs(seed)
            with open(os.path.join(seed, 'meta-data'), 'w') as f:
                f.write('instance-id: %s\nlocal-hostname: %s\n' % (name, name))
            with open(os.path.join(seed, 'user-data'), 'w') as f:
                f.write('#cloud-config\nruncmd:\n  - [touch, /root/seeded]\n')
            _run_node(name, tag, seed)
        state = {}
        deadline = time.monotonic() + 180
        for name in names:
            out = ''
            while time.monotonic() < deadline:
                out = _docker('exec', name, 'systemctl', 'is-system-running', check=False).stdout.strip()
                if out in ('running', 'degraded'):
                    break
                time.sleep(1)
            state[name] = out
        booted = time.monotonic() - start
        failed = {n: _docker('exec', n, 'systemctl', '--failed', '--no-legend', '--plain', check=False).stdout
                  for n in names}
        assert state == {n: 'running' for n in names}, (state, failed)
        TIMES['import + boot 2 nodes'] = booted

        facts = {}
        for name in names:
            wait = time.monotonic() + 60
            while time.monotonic() < wait:
                status = _docker('exec', name, 'cloud-init', 'status', check=False).stdout
                if 'done' in status or 'error' in status:
                    break
                time.sleep(1)
            assert 'status: done' in status, (name, status)
            _docker('exec', name, 'test', '-e', '/root/seeded')
            machine_id = _docker('exec', name, 'cat', '/etc/machine-id').stdout.strip()
            dbus_id = _docker('exec', name, 'cat', '/var/lib/dbus/machine-id').stdout.strip()
            host_key = _docker('exec', name, 'cat', '/etc/ssh/ssh_host_ed25519_key.pub').stdout.split()[1]
            scan = _docker('exec', name, 'ssh-keyscan', '-t', 'ed25519', '127.0.0.1', check=False).stdout
            assert host_key in scan, (name, scan)
            assert len(machine_id) == 32 and dbus_id == machine_id, (name, machine_id, dbus_id)
            facts[name] = (machine_id, host_key)
        assert len({machine_id for machine_id, key in facts.values()}) == 2, facts
        assert len({key for machine_id, key in facts.values()}) == 2, facts
    finally:
        for name in names:
            _docker('rm', '-f', name, check=False)
        _docker('rmi', tag, check=False)


# ------------------------------------------------------------------------------------- the catalog
def test_registers_the_image_in_the_provisioners_catalog(ws, first_build):
    from provisioner_service import Service

    os.makedirs(os.path.join(ws.root, 'provisioner'))
    with Service(os.path.join(ws.root, 'provisioner'), image_dir=ws.images) as svc:
        extra = {'os_image_register': True, 'os_image_provisioner_url': svc.url,
                 'os_image_provisioner_token': svc.token}
        # the image as the previous tests left it
        extra.update({'os_image_root_authorized_keys': [KEY], 'os_image_hostname': 'lab-node',
                      'os_image_ca_bundle': '/etc/ssl/certs/ca-certificates.crt'})
        r = ok(ws.run(what='register', **extra))
        assert changed_tasks(r) == ["Register the image in the provisioner's catalog as bookworm"]
        assert svc.token not in r.stdout
        status, entry = svc.api('GET', '/api/v1/images/bookworm')
        assert status == 200, entry
        digest = sha256_of(ws.image)
        assert (entry['sha256'], entry['format'], entry['size'], entry['url']) == \
            (digest, 'tar.gz', os.path.getsize(ws.image), 'bookworm.tar.gz')
        # the provisioner's image store serves the same bytes
        h = hashlib.sha256()
        with urllib.request.urlopen(svc.url + '/images/bookworm.tar.gz', timeout=60) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b''):
                h.update(chunk)
        assert h.hexdigest() == digest

        again = ok(ws.run(what='register, cached', **extra))
        assert again.count('changed') == 0, changed_tasks(again)

        check = ok(ws.run(check=True, what='register, check mode', **dict(extra, os_image_hostname='other')))
        assert changed_tasks(check) == ['Show the plan']  # the new checksum is not known before a build
        assert svc.api('GET', '/api/v1/images/bookworm')[1]['sha256'] == digest


# ------------------------------------------------------------------------------------- pruned cache
def test_keep_layers_false_prunes_the_cache_and_the_image_stays_current(ws, first_build, tree_of):
    extra = {'os_image_hostname': 'pruned', 'os_image_keep_layers': False}
    r = ok(ws.run(what='rebuild and prune', **extra))
    assert ran(r, 'Pack the tree') and not ran(r, 'Install the packages in the chroot')
    assert result_fact(r)['sha256'] == sha256_of(ws.image)
    # the layers are gone, and what the failed build left (the customisation script stays), the
    # downloaded packages stay
    assert sorted(os.listdir(ws.layers)) == ['customise.sh'], os.listdir(ws.layers)
    assert glob.glob(os.path.join(ws.cache, 'debs', 'openssh-server_*.deb'))
    assert not ws.mounts()
    with open(os.path.join(tree_of(), 'etc/hostname')) as f:
        assert f.read() == 'pruned\n'

    again = ok(ws.run(what='pruned, cached', **extra))
    assert again.count('changed') == 0, changed_tasks(again)
