"""The container machine: a lab node that is a container, behind a virtual BMC.

A node is a container named ``spec['container']`` (default ``ingot-node-NAME``) running the lab
firmware image (``lab/firmware``) as PID 1, with ``--network none``: its NIC is a veth the machine
attaches at each power-on, with the node's fixed MAC, to the lab bridge (``spec['bridge']``); no
Docker IPAM.  Its disk is a host directory (``spec['disk']``, default ``STATE/disks/NAME``)
bind-mounted at ``/disk``; its "NVRAM" (``STATE/nvram/NAME``, at ``/nvram``) tells the firmware the
boot device of this boot (``boot``) and of later warm boots (``next``).

The container is created once (at the first power-on) and then started and stopped, so its log,
the node's console, spans every boot: ``docker logs`` / ``ingot-lab node console NAME``.  It is
labelled with the lab's state directory; one of the same name made by another lab or from another
firmware image (left behind by a lab that was killed) is made again, never booted; one that runs
for another lab is refused.

IPMI mapping:

* power on: write the boot device (the override, consumed when next-boot-only, as
  :class:`MemoryMachine` does; else ``default_boot_device``, ``disk``), start the container,
  attach its veth;
* power off (hard): ``docker kill`` (SIGKILL), at once;
* soft off: SIGRTMIN+3 to PID 1 (a booted systemd halts, the container ends), and in the
  background ``docker stop -t SOFT_OFF_TIMEOUT`` (the same signal, then a forced off, as an OS that
  ignores the button would not get on metal: documented lab simplification);
* cycle / reset: kill, then a boot as power on;
* power status: whether the container runs.

Boot devices: ``pxe`` and ``disk`` boot as named; every other override (cdrom, bios, ...) is
accepted by the BMC and boots as ``disk`` (what a server without that device falls back to).

The machine runs inside the vBMC server process (root): it calls the ``docker`` CLI, ``ip`` and
``nsenter``.  It never creates the bridge: ``lab up`` (``ingot_lab.rack``) does.
"""

import hashlib
import json
import logging
import os
import subprocess
import time

from ingot_lab.machines import POWER_OFF, POWER_ON, MachineError, MemoryMachine, PowerStateError

log = logging.getLogger('ingot_lab.container_machine')

DEFAULT_IMAGE = 'ingot-lab/firmware:latest'
DEFAULT_BRIDGE = 'ingotlab0'
LABEL = 'org.ingot-metal.lab-node'
DIR_LABEL = 'org.ingot-metal.lab-dir'     # the state directory of the lab that made the container
SOFT_OFF_TIMEOUT = 60
DOCKER_TIMEOUT = 60
SLOW_COMMAND = 3.0   # seconds: a docker or ip command slower than this is logged


def _run(argv, check=True, timeout=DOCKER_TIMEOUT, input_text=None):
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, input=input_text)
    took = time.monotonic() - started
    if took > SLOW_COMMAND:
        log.warning('%s took %.1f s', ' '.join(argv[:4]), took)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-500:]
        raise MachineError('%s failed (%d): %s' % (' '.join(argv[:3]), proc.returncode, detail))
    return proc


def cgroup_binds():
    """``-v`` arguments binding each host cgroup hierarchy (never the whole /sys/fs/cgroup, G3)."""
    proc = _run(['findmnt', '--noheadings', '--list', '--output', 'TARGET', '--types', 'cgroup,cgroup2'],
                check=False)
    args = []
    for line in proc.stdout.split():
        if line.startswith('/sys/fs/cgroup/') and line.count('/') == 4:
            args += ['-v', '%s:%s:rw' % (line, line)]
    return args


def veth_name(name):
    """The host-side veth of node ``name`` (at most 15 characters)."""
    return 'inv' + hashlib.sha1(name.encode()).hexdigest()[:10]


class ContainerMachine(MemoryMachine):
    """A lab node container; state (boot flags, boots) persisted as :class:`MemoryMachine` does.

    ``spec`` keys beyond MemoryMachine's: ``container``, ``image``, ``bridge``, ``disk``,
    ``hostname``, ``env`` (dict, extra firmware environment), ``soft_off_timeout``.
    """

    def __init__(self, name, state_path, spec=None, readonly=False, clock=time.time):
        super().__init__(name, state_path, spec, readonly=readonly, clock=clock)
        state_dir = os.path.dirname(os.path.dirname(os.path.abspath(state_path)))
        self.state_dir = state_dir
        self.container = self.spec.get('container') or 'ingot-node-%s' % name
        self.image = self.spec.get('image') or DEFAULT_IMAGE
        self.bridge = self.spec.get('bridge') or DEFAULT_BRIDGE
        self.disk = self.spec.get('disk') or os.path.join(state_dir, 'disks', name)
        self.nvram = os.path.join(state_dir, 'nvram', name)

    # -- container -----------------------------------------------------------------------------
    def _inspect(self):
        proc = _run(['docker', 'inspect', '--type', 'container', self.container], check=False)
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout)[0]

    def running(self):
        # `docker ps` reads the engine's lock-free view of its containers; `docker inspect` waits for the
        # container's own lock, which the engine holds while it starts, kills or cleans up after that
        # container. A power-state read must not wait behind that: one process answers for every vBMC of
        # its shard, so one slow read is a silent BMC for all of them.
        proc = _run(['docker', 'ps', '--all', '--no-trunc', '--filter', 'name=^/?%s$' % self.container,
                     '--format', '{{.Names}} {{.State}}'], check=False)
        if proc.returncode != 0:
            info = self._inspect()
            return bool(info and info['State']['Running'])
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0].lstrip('/') == self.container:
                return fields[1] in ('running', 'paused', 'restarting')
        return False

    def _is_current(self, info):
        """Was the container made by this lab, from this image, with this disk?  Raises when it
        belongs to another lab and runs (a node of a lab that is up is not taken from it)."""
        labels = info['Config'].get('Labels') or {}
        owner = labels.get(DIR_LABEL)
        if owner != self.state_dir and info['State']['Running']:
            raise MachineError('%s: container %s runs for the lab in %s: take that lab down first '
                               '(ingot-lab --state-dir %s down)' % (self.name, self.container, owner or '?',
                                                                    owner or '?'))
        disks = [os.path.realpath(m.get('Source') or '') for m in info.get('Mounts') or ()
                 if m.get('Destination') == '/disk']
        return (owner == self.state_dir and info['Config'].get('Image') == self.image
                and disks == [os.path.realpath(self.disk)])

    def _create(self):
        os.makedirs(self.disk, exist_ok=True)
        os.makedirs(self.nvram, exist_ok=True)
        env = []
        for key, value in sorted((self.spec.get('env') or {}).items()):
            env += ['-e', '%s=%s' % (key, value)]
        argv = ['docker', 'create', '--name', self.container,
                '--hostname', self.spec.get('hostname') or self.name,
                '--label', '%s=%s' % (LABEL, self.name),
                '--label', '%s=%s' % (DIR_LABEL, self.state_dir),
                '--network', 'none',
                '--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE',
                '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined',
                '--tmpfs', '/run', '--tmpfs', '/run/lock',
                '--cgroupns=host', '--tmpfs', '/sys/fs/cgroup:mode=755', *cgroup_binds(),
                '--stop-signal', 'SIGRTMIN+3',
                '--log-driver', 'json-file',
                '-v', '%s:/disk' % os.path.abspath(self.disk),
                '-v', '%s:/nvram:ro' % os.path.abspath(self.nvram)] + env + [self.image]
        _run(argv)

    def _write_nvram(self, boot):
        os.makedirs(self.nvram, exist_ok=True)
        flags = self.get_boot_device()
        later = flags.device if flags.is_override and flags.persistent else self._default_device()
        for fname, value in (('boot', boot), ('next', self._effective(later))):
            path = os.path.join(self.nvram, fname)
            with open(path + '.tmp', 'w') as handle:
                handle.write(value + '\n')
            os.replace(path + '.tmp', path)

    def _default_device(self):
        return self.spec.get('default_boot_device', 'disk')

    @staticmethod
    def _effective(device):
        return 'pxe' if device == 'pxe' else 'disk'

    def _attach(self, pid):
        host = veth_name(self.name)
        mac = self.macs()[0]
        _run(['ip', 'link', 'del', host], check=False)
        _run(['ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'address', mac,
              'netns', str(pid)])
        _run(['ip', 'link', 'set', host, 'master', self.bridge, 'up'])
        _run(['nsenter', '-t', str(pid), '-n', 'ip', 'link', 'set', 'lo', 'up'])
        _run(['nsenter', '-t', str(pid), '-n', 'ip', 'link', 'set', 'eth0', 'up'])

    def _boot(self, why):
        forced, flags = self.boot_override_for_next_boot()
        device = forced or self._default_device()
        info = self._inspect()
        if info is not None and not self._is_current(info):
            # Made from an older firmware image, or by another lab: a node must boot the firmware
            # and disk of this lab, so the container is made again (its console starts anew).
            _run(['docker', 'rm', '-f', self.container], check=False)
            info = None
        if info is None:
            self._create()
        elif info['State']['Running']:
            _run(['docker', 'kill', self.container], check=False)
            self._wait_stopped(10)
        self._write_nvram(self._effective(device))
        _run(['docker', 'start', self.container])
        info = self._inspect()
        pid = info['State']['Pid'] if info else 0
        if not pid:
            raise MachineError('%s: container %s did not start' % (self.name, self.container))
        try:
            self._attach(pid)
        except MachineError:
            _run(['docker', 'kill', self.container], check=False)
            raise
        self._state['boot_count'] = self._state.get('boot_count', 0) + 1
        self._state['last_boot'] = {'device': device, 'firmware_boot': self._effective(device),
                                    'override': forced is not None, 'uefi': flags.uefi if forced else False,
                                    'why': why, 'at': self._clock()}
        self._set_power(POWER_ON, why)

    def _wait_stopped(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.running():
                return True
            time.sleep(0.05)
        return False

    # -- power ---------------------------------------------------------------------------------
    def get_power_state(self):
        return POWER_ON if self.running() else POWER_OFF

    def state(self):
        state = json.loads(json.dumps(self._state))
        state['power'] = self.get_power_state()
        state['container'] = self.container
        return state

    def power_on(self):
        if not self.running():
            self._boot('power-on')

    def power_off(self):
        if self.running():
            _run(['docker', 'kill', self.container], check=False)
            self._wait_stopped(10)
            self._set_power(POWER_OFF, 'power-off')

    def power_shutdown(self):
        if not self.running() or self.spec.get('soft_off_ignored'):
            return
        _run(['docker', 'kill', '--signal', 'SIGRTMIN+3', self.container], check=False)
        timeout = int(self.spec.get('soft_off_timeout', SOFT_OFF_TIMEOUT))
        # The OS halts by itself; a firmware that is not an OS gets the forced off after the timeout.
        subprocess.Popen(['docker', 'stop', '-t', str(timeout), self.container],   # pylint: disable=consider-using-with
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._state['last_power_change'] = {'power': 'soft-off requested', 'why': 'soft-off', 'at': self._clock()}
        self._save()

    def power_cycle(self):
        if not self.running():
            raise PowerStateError('%s is off: nothing to power-cycle' % self.name)
        self._boot('power-cycle')

    def power_reset(self):
        if not self.running():
            raise PowerStateError('%s is off: nothing to reset' % self.name)
        self._boot('reset')

    # -- sensors follow the container ------------------------------------------------------------
    # (MemoryMachine.sensors() asks get_power_state(), which is the container's.)

    def console(self, tail=None):
        """The node's console output so far (the container's log, every boot)."""
        argv = ['docker', 'logs']
        if tail:
            argv += ['--tail', str(tail)]
        proc = subprocess.run(argv + [self.container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=DOCKER_TIMEOUT, check=False)
        return proc.stdout if proc.returncode == 0 else ''

    def destroy(self):
        """Remove the container (power off first); the disk directory stays."""
        _run(['docker', 'rm', '-f', self.container], check=False)
        _run(['ip', 'link', 'del', veth_name(self.name)], check=False)


FIRMWARE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'firmware')
FIRMWARE_REPO = 'ingot-lab/firmware'
BASE_IMAGE = 'ingot-test/debian-systemd:bookworm'
HASH_LABEL = 'org.ingot-metal.content-hash'


def prune_images(repo, keep):
    """Remove the tags of ``repo`` other than ``keep`` and ``latest`` (stale cached builds)."""
    proc = _run(['docker', 'images', '--format', '{{.Repository}}:{{.Tag}}', repo], check=False)
    for tag in proc.stdout.split():
        if tag not in (keep, repo + ':latest'):
            _run(['docker', 'rmi', tag], check=False)


def firmware_hash(base=BASE_IMAGE, context=FIRMWARE_DIR):
    """A hash of the firmware build context and the base image's id."""
    digest = hashlib.sha256()
    base_id = _run(['docker', 'image', 'inspect', '-f', '{{.Id}}', base]).stdout.strip()
    digest.update(base_id.encode())
    for fname in sorted(os.listdir(context)):
        with open(os.path.join(context, fname), 'rb') as handle:
            digest.update(fname.encode() + b'\0' + handle.read())
    return digest.hexdigest()[:16]


def ensure_firmware_image(base=BASE_IMAGE, context=FIRMWARE_DIR, log=print):
    """Build the firmware image unless an image with the same content hash exists; return its tag."""
    content = firmware_hash(base, context)
    tag = '%s:%s' % (FIRMWARE_REPO, content)
    have = _run(['docker', 'image', 'inspect', '-f', '{{ index .Config.Labels "%s" }}' % HASH_LABEL, tag],
                check=False)
    if have.returncode == 0 and have.stdout.strip() == content:
        log('firmware image %s: cached' % tag)
    else:
        log('firmware image %s: building FROM %s' % (tag, base))
        _run(['docker', 'build', '-q', '--build-arg', 'BASE=%s' % base, '--label', '%s=%s' % (HASH_LABEL, content),
              '-t', tag, context], timeout=600)
    _run(['docker', 'tag', tag, FIRMWARE_REPO + ':latest'])
    prune_images(FIRMWARE_REPO, tag)
    return tag
