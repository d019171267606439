"""``ingot-lab up`` / ``ingot-lab down``: the whole lab rack on this machine.

``up`` (each step printed with its time; every host change is recorded in ``STATE/rack.json``
*before* it is made, so ``down`` undoes exactly that, even after a failed ``up``):

1. the Docker engine: ``lab/docker/ensure-docker`` with its state in ``STATE/docker`` (a daemon
   that already answers is left alone);
2. images, cached: ``lab/images/build-image debian-systemd`` and the firmware (``lab/firmware``);
3. the lab bridge (``ingotlab0``, 10.252.0.0/24, the host at .1 so that tests reach the API) and
   the ``DOCKER-USER`` accept rule for frames bridged on it (dockerd sets the FORWARD policy to DROP,
   and with br_netfilter on, frames bridged on the lab bridge go through FORWARD: DHCP was dropped);
4. the stopped containers of a lab that is gone (killed without ``down``: Docker keeps them) are
   removed; while another lab is up (a container of it runs, or a vBMC server), ``up`` stops;
   the provisioner host: a systemd container (the flags of lab/firmware/README.md, "Nodes"), eth0 on Docker's default
   bridge for apt/pip, eth1 = 10.252.0.2 on the lab bridge, configured by ``roles/provisioner``
   through ansible-runner (the service, dnsmasq in full DHCP mode on eth1, the web view at /ui/ with a
   read-only view token kept in ``STATE/rack.json``);
5. N virtual BMCs (``nNNN``, ports BASE..) whose machines are node containers (``docker`` machine
   type: firmware image, lab bridge), served by ``vbmc start``;
6. ``STATE/inventory.yml``: the vBMCs (bmc_host/port/user/password, lab_macs) and the provisioner
   (``provisioner_url``, ``provisioner_token``), mode 0600.

``down`` stops the vBMC servers, removes the node containers, the provisioner container, the veths,
the accept rule and the bridge, the vBMC configuration and node disks, and runs
``lab/docker/teardown-docker`` on the state ``up`` recorded (which stops dockerd only if ``up``
started it, and restores what dockerd changed).
"""

import json
import os
import secrets
import subprocess
import time

from ingot_lab import manage
from ingot_lab import server
from ingot_lab.container_machine import (BASE_IMAGE, DIR_LABEL, LABEL, ContainerMachine, cgroup_binds,
                                         ensure_firmware_image, prune_images)
from ingot_lab.machines import create_machine
from ingot_lab.state import Lab, LabError, write_file_atomic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRIDGE = os.environ.get('INGOT_LAB_BRIDGE', 'ingotlab0')
NET = os.environ.get('INGOT_LAB_NET', '10.252.0')
PROVISIONER = os.environ.get('INGOT_LAB_PROVISIONER', 'ingot-lab-provisioner')
PROVISIONER_VETH = 'vinglabprov'
PROVISIONER_MAC = '02:00:0a:fc:00:02'
PROVISIONER_PORT = 8080
RULE_COMMENT = 'ingot.metal lab'


def _say(msg):
    print('lab: %s' % msg, flush=True)


def _run(argv, check=True, env=None, timeout=900, quiet=False):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise LabError('%s failed (%d): %s' % (' '.join(argv[:4]), proc.returncode, detail))
    if not quiet and proc.stdout.strip():
        for line in proc.stdout.strip().splitlines()[-3:]:
            _say('  ' + line)
    return proc


class Record:
    """``STATE/rack.json``: what ``up`` changed, written before each change."""

    def __init__(self, lab):
        self.path = os.path.join(lab.dir, 'rack.json')
        try:
            with open(self.path) as handle:
                self.data = json.load(handle)
        except FileNotFoundError:
            self.data = {'changes': []}

    def save(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_file_atomic(self.path, json.dumps(self.data, indent=1) + '\n', 0o600)

    def add(self, kind, **info):
        entry = dict(kind=kind, **info)
        if entry not in self.data['changes']:
            self.data['changes'].append(entry)
            self.save()

    def has(self, kind):
        return any(c['kind'] == kind for c in self.data['changes'])

    def remove(self, entry):
        self.data['changes'].remove(entry)
        self.save()


def _step(name):
    def wrap(func):
        def inner(*args, **kwargs):
            start = time.monotonic()
            _say('%s ...' % name)
            result = func(*args, **kwargs)
            _say('%s: done in %.1f s' % (name, time.monotonic() - start))
            return result
        return inner
    return wrap


def docker_state_dir(lab):
    """Where the lab's Docker engine keeps its state and its log (dockerd.log)."""
    return os.path.join(lab.dir, 'docker')


def _docker_env(lab):
    env = dict(os.environ)
    env['INGOT_DOCKER_STATE_DIR'] = docker_state_dir(lab)
    return env


@_step('Docker engine')
def _ensure_docker(lab, record):
    record.add('docker', state_dir=docker_state_dir(lab))
    _run([os.path.join(REPO, 'lab', 'docker', 'ensure-docker')], env=_docker_env(lab))


@_step('images (cached)')
def _images():
    _run([os.path.join(REPO, 'lab', 'images', 'build-image'), 'debian-systemd'])
    return ensure_firmware_image(BASE_IMAGE, log=lambda m: _say('  ' + m))


def _link_exists(name):
    return subprocess.run(['ip', 'link', 'show', name], capture_output=True, check=False).returncode == 0


def _rule(action):
    return ['iptables', action, 'DOCKER-USER', '-i', BRIDGE, '-o', BRIDGE, '-m', 'comment', '--comment',
            RULE_COMMENT, '-j', 'ACCEPT']


@_step('lab bridge')
def _bridge(record):
    if not _link_exists(BRIDGE):
        record.add('bridge', name=BRIDGE)
        _run(['ip', 'link', 'add', BRIDGE, 'type', 'bridge'])
        _run(['ip', 'addr', 'add', '%s.1/24' % NET, 'dev', BRIDGE])
        _run(['ip', 'link', 'set', BRIDGE, 'up'])
    if subprocess.run(_rule('-C'), capture_output=True, check=False).returncode != 0:
        record.add('iptables', rule=_rule('-D'))
        _run(_rule('-I'))


PROVISIONER_IMAGE_REPO = 'ingot-lab/provisioner'


def _provisioner_image_hash():
    """Content hash of roles/provisioner (minus molecule/build/caches) and the base image id."""
    import hashlib   # pylint: disable=import-outside-toplevel
    digest = hashlib.sha256()
    digest.update(_run(['docker', 'image', 'inspect', '-f', '{{.Id}}', BASE_IMAGE], quiet=True).stdout.encode())
    role = os.path.join(REPO, 'roles', 'provisioner')
    for top, dirs, files in os.walk(role):
        dirs[:] = sorted(d for d in dirs if d not in ('molecule', 'build', '__pycache__', '.pytest_cache')
                         and not d.endswith('.egg-info'))
        for fname in sorted(files):
            path = os.path.join(top, fname)
            with open(path, 'rb') as handle:
                digest.update(os.path.relpath(path, role).encode() + b'\0' + handle.read())
    return digest.hexdigest()[:16]


def _image_exists(tag):
    return subprocess.run(['docker', 'image', 'inspect', tag], capture_output=True, check=False).returncode == 0


def _container_state(name):
    proc = subprocess.run(['docker', 'inspect', '-f', '{{.State.Running}}', name], capture_output=True,
                          text=True, check=False)
    return None if proc.returncode else proc.stdout.strip() == 'true'


def _lab_is_up(state_dir, containers):
    """Is the lab of ``state_dir`` still up: one of its containers running, or a vBMC server of it alive?"""
    if any(running for _name, running in containers):
        return True
    return bool(state_dir) and os.path.isdir(state_dir) and bool(Lab(state_dir).live_shards())


def clear_leftovers(lab):
    """Remove the containers a lab left behind when it was not taken down (killed, machine
    restarted: Docker keeps stopped containers), so that they cannot stand in for this lab's.
    Raises when another lab is still up (a running container of it, or a live vBMC server)."""
    proc = _run(['docker', 'ps', '-a', '--filter', 'label=%s' % LABEL, '--format',
                 '{{.Names}}\t{{.State}}\t{{.Label "%s"}}' % DIR_LABEL], quiet=True)
    others = {}
    for line in proc.stdout.splitlines():
        name, state, owner = (line.split('\t') + ['', ''])[:3]
        if owner != lab.dir:
            others.setdefault(owner, []).append((name, state == 'running'))
    removed = []
    for owner, containers in sorted(others.items()):
        names = sorted(n for n, _r in containers)
        if _lab_is_up(owner, containers):
            raise LabError('another lab is up (state directory %s, containers %s): "ingot-lab --state-dir %s down" '
                           'first' % (owner or '?', ', '.join(names), owner or '?'))
        _run(['docker', 'rm', '-f'] + names, quiet=True)
        removed += names
        _say('  removed %d stopped container(s) of a lab that is no longer up (state directory %s): %s'
             % (len(names), owner or 'not recorded', ', '.join(names)))
    return removed


@_step('provisioner host (container + roles/provisioner)')
def _provisioner(lab, record, token, view_token, deploy_timeout):
    clear_leftovers(lab)
    # roles/provisioner installs the service's wheel, which make builds from provisioner/ into the role's files/
    # (again only when provisioner/ changed; reproducible, so the image cache below keys on it)
    _run(['make', '-C', REPO, 'provisioner-dist'], quiet=True)
    state = _container_state(PROVISIONER)
    # A container on which roles/provisioner already converged once (same role, same base) is kept
    # as an image; the role still runs on it (idempotent, quick).  Its registry is empty: the image
    # is committed right after the role's first run, before any node exists.
    cache_tag = '%s:%s' % (PROVISIONER_IMAGE_REPO, _provisioner_image_hash())
    cached = _image_exists(cache_tag)
    _say('  provisioner image %s' % (cache_tag + ': cached' if cached else BASE_IMAGE))
    if state is None:
        record.add('container', name=PROVISIONER)
        _run(['docker', 'run', '-d', '--name', PROVISIONER, '--hostname', 'provisioner',
              '--label', '%s=provisioner' % LABEL, '--label', '%s=%s' % (DIR_LABEL, os.path.abspath(lab.dir)),
              '--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE',
              '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined',
              '--tmpfs', '/run', '--tmpfs', '/run/lock',
              '--cgroupns=host', '--tmpfs', '/sys/fs/cgroup:mode=755', *cgroup_binds(),
              '--stop-signal', 'SIGRTMIN+3', '-e', 'container=docker',
              '-v', '/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro',
              cache_tag if cached else BASE_IMAGE, '/sbin/init'], quiet=True)
    elif not state:
        _run(['docker', 'start', PROVISIONER], quiet=True)
    pid = _run(['docker', 'inspect', '-f', '{{.State.Pid}}', PROVISIONER], quiet=True).stdout.strip()
    if subprocess.run(['nsenter', '-t', pid, '-n', 'ip', 'link', 'show', 'eth1'], capture_output=True,
                      check=False).returncode != 0:
        _run(['ip', 'link', 'del', PROVISIONER_VETH], check=False)
        record.add('link', name=PROVISIONER_VETH)
        _run(['ip', 'link', 'add', PROVISIONER_VETH, 'type', 'veth', 'peer', 'name', 'eth1',
              'address', PROVISIONER_MAC, 'netns', pid])
        _run(['ip', 'link', 'set', PROVISIONER_VETH, 'master', BRIDGE, 'up'])
        _run(['nsenter', '-t', pid, '-n', 'ip', 'addr', 'add', '%s.2/24' % NET, 'dev', 'eth1'])
        _run(['nsenter', '-t', pid, '-n', 'ip', 'link', 'set', 'eth1', 'up'])
    _run(['docker', 'exec', PROVISIONER, 'systemctl', 'is-system-running', '--wait'], check=False, quiet=True)
    _say('  applying roles/provisioner (ansible-runner)')
    from ingot_lab.runner import run_playbook   # pylint: disable=import-outside-toplevel
    play = [{
        'name': 'The lab provisioner host', 'hosts': 'provisioner', 'gather_facts': True,
        'vars': {
            'provisioner_admin_token': token,
            'provisioner_view_token': view_token,
            'provisioner_port': PROVISIONER_PORT,
            'provisioner_dhcp_mode': 'full',
            'provisioner_dhcp_interface': 'eth1',
            'provisioner_dhcp_range_start': '%s.100' % NET,
            'provisioner_dhcp_range_end': '%s.199' % NET,
            'provisioner_dhcp_lease_time': '10m',
            'provisioner_provisioning_networks': ['%s.0/24' % NET],
            'provisioner_deploy_timeout': deploy_timeout,
            'provisioner_pip_environment': {'PIP_CERT': '/etc/ssl/certs/ca-certificates.crt'},
        },
        'roles': [{'role': 'ingot.metal.provisioner'}],
    }]
    inventory = {'all': {'hosts': {'provisioner': {
        'ansible_connection': 'community.docker.docker', 'ansible_host': PROVISIONER,
        'ansible_python_interpreter': '/usr/bin/python3'}}}}
    workdir = os.path.join(lab.dir, 'runner', 'provisioner')
    result = run_playbook(play, inventory, workdir=workdir, progress=True, timeout=900,
                          envvars={'ANSIBLE_PIPELINING': 'True'})
    if result.rc != 0:
        raise LabError('roles/provisioner failed (rc %s; artifacts in %s):\n%s' % (
            result.rc, result.artifact_dir, result.stdout[-3000:]))
    _say('  roles/provisioner: %d changed, in %.1f s' % (result.count('changed'), result.seconds))
    if not cached:
        _run(['docker', 'commit', PROVISIONER, cache_tag], quiet=True)   # (STOPSIGNAL: set by docker run)
        _say('  cached the configured provisioner host as %s' % cache_tag)
        prune_images(PROVISIONER_IMAGE_REPO, cache_tag)


@_step('virtual BMCs and node containers')
def _bmcs(lab, record, nodes, base_port, image):
    config = lab.load()
    fleet = manage.fleet_names(nodes, base_port, 'n')
    new = [(name, port) for name, port in fleet if name not in config['bmcs']]
    if new:
        record.add('vbmcs', names=[pair[0] for pair in new])
        manage.add_many(lab, new, password=None, machine_options={
            'type': 'docker', 'bridge': BRIDGE, 'image': image, 'default_boot_device': 'disk'})
    records = server.start(lab, 1, 30.0)[0]
    for rec in records:
        record.add('vbmc_server', id=rec['id'])
        _say('  vBMC server %s (pid %d) serves %d vBMCs' % (rec['id'], rec['pid'], len(rec['names'])))


def provisioner_url():
    return 'http://%s.2:%d' % (NET, PROVISIONER_PORT)


DEFAULT_DEPLOY_TIMEOUT = 600


def up(lab, nodes, base_port=16230, deploy_timeout=None):
    """Bring the lab up (idempotent); returns 0.  ``deploy_timeout`` (seconds; default
    ``$INGOT_LAB_DEPLOY_TIMEOUT`` or 600) is the provisioner's deploy (and wipe) timeout."""
    start = time.monotonic()
    if deploy_timeout is None:
        deploy_timeout = int(os.environ.get('INGOT_LAB_DEPLOY_TIMEOUT', DEFAULT_DEPLOY_TIMEOUT))
    record = Record(lab)
    token = record.data.get('token') or secrets.token_urlsafe(24)
    record.data['token'] = token
    # the web view's read-only token (its /ui pages: watch the rack, change nothing)
    view_token = record.data.get('view_token') or secrets.token_urlsafe(24)
    record.data['view_token'] = view_token
    record.save()
    _ensure_docker(lab, record)
    image = _images()
    _bridge(record)
    _provisioner(lab, record, token, view_token, deploy_timeout)
    _bmcs(lab, record, nodes, base_port, image)
    inventory = manage.inventory_yaml(lab)
    inventory += ('    provisioner:\n      hosts:\n        %s:\n          ansible_connection: local\n'
                  '      vars:\n          provisioner_url: %s\n          provisioner_token: %s\n' % (
                      PROVISIONER, provisioner_url(), json.dumps(token)))
    path = os.path.join(lab.dir, 'inventory.yml')
    write_file_atomic(path, inventory, 0o600)
    _say('inventory: %s' % path)
    _say('up in %.1f s: %d node(s), provisioner %s' % (time.monotonic() - start, nodes, provisioner_url()))
    return 0


def down(lab):
    """Remove what ``up`` recorded, newest first; returns 0."""
    start = time.monotonic()
    record = Record(lab)
    changes = list(record.data['changes'])
    if any(c['kind'] == 'vbmc_server' for c in changes) or lab.served():
        _say('stopping vBMC servers')
        server.stop(lab)
    config = lab.load()
    for name, entry in config['bmcs'].items():
        vm = create_machine(name, entry.get('machine'), lab.dir)
        if isinstance(vm, ContainerMachine):
            vm.destroy()
    for entry in reversed(changes):
        kind = entry['kind']
        if kind == 'vbmcs':
            names = [n for n in entry['names'] if n in lab.load()['bmcs']]
            disks = [create_machine(n, lab.load()['bmcs'][n].get('machine'), lab.dir, readonly=True).disk
                     for n in names]
            if names:
                manage.remove(lab, names)
            for disk in disks:
                _run(['rm', '-rf', '--one-file-system', disk], check=False)
            _say('removed vBMCs %s' % ', '.join(names))
        elif kind == 'container':
            _run(['docker', 'rm', '-f', entry['name']], check=False, quiet=True)
            _say('removed container %s' % entry['name'])
        elif kind == 'link':
            if _link_exists(entry['name']):
                _run(['ip', 'link', 'del', entry['name']])
        elif kind == 'iptables':
            if subprocess.run(['iptables'] + ['-C'] + entry['rule'][2:], capture_output=True,
                              check=False).returncode == 0:
                _run(entry['rule'])
            _say('removed the DOCKER-USER rule')
        elif kind == 'bridge':
            if _link_exists(entry['name']):
                _run(['ip', 'link', 'del', entry['name']])
            _say('removed bridge %s' % entry['name'])
        elif kind == 'docker':
            proc = _run([os.path.join(REPO, 'lab', 'docker', 'teardown-docker')], env=_docker_env(lab),
                        check=False)
            if proc.returncode != 0:
                _say('teardown-docker: %s' % proc.stderr.strip())
        record.remove(entry)
    for leftover in ('nvram', 'disks'):
        _run(['rm', '-rf', '--one-file-system', os.path.join(lab.dir, leftover)], check=False)
    for fname in ('inventory.yml', 'rack.json'):
        try:
            os.unlink(os.path.join(lab.dir, fname))
        except FileNotFoundError:
            pass
    _say('down in %.1f s' % (time.monotonic() - start))
    return 0
