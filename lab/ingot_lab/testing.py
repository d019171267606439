"""A fixture-friendly API over the lab, for the test suites and benchmarks of the collection.

    # lab/ on the path: pytest.ini's pythonpath for the suites, PYTHONPATH=lab for a script
    from ingot_lab.testing import start_lab

    @pytest.fixture(scope='module')
    def lab(tmp_path_factory):
        with start_lab(tmp_path_factory.mktemp('lab'), n=3) as running:
            yield running

    def test_power(lab):
        bmc = lab.bmcs[0]                 # BmcInfo(name, host, port, user, password, macs)
        bmc.ipmitool('power', 'on')       # subprocess.CompletedProcess (text)
        assert lab.machine_state(bmc.name)['power'] == 'on'

``start_lab`` configures ``n`` vBMCs on free consecutive loopback ports in ``state_dir``, starts
the server process(es) and waits until every BMC answers; leaving the block stops them.  The lab
can also be restarted (``stop()``/``start()``); machine state survives.
"""

import contextlib
import dataclasses
import os
import random
import socket
import subprocess

from ingot_lab import manage, server
from ingot_lab.state import Lab


@dataclasses.dataclass(frozen=True)
class BmcInfo:
    """How to reach one vBMC."""

    name: str
    host: str
    port: int
    user: str
    password: str
    macs: tuple = ()

    def ipmitool_args(self, *args, password=None, user=None):
        return ['ipmitool', '-I', 'lanplus', '-H', self.host, '-p', str(self.port), '-U', user or self.user,
                '-P', self.password if password is None else password] + [str(a) for a in args]

    def ipmitool(self, *args, password=None, user=None, timeout=60, check=False):
        """Run ipmitool against this BMC; returns the CompletedProcess (stdout, stderr as text)."""
        return subprocess.run(self.ipmitool_args(*args, password=password, user=user), capture_output=True,
                              text=True, timeout=timeout, check=check)


def free_udp_ports(count, host='127.0.0.1', low=20000, high=60000, attempts=50):
    """A base port such that ``count`` consecutive UDP ports from it are free on ``host``."""
    for _attempt in range(attempts):
        base = random.randrange(low, high - count)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError('no %d consecutive free UDP ports found on %s' % (count, host))


class RunningLab:
    """A lab whose vBMC servers run (see :func:`start_lab`)."""

    def __init__(self, state_dir, processes=1, timeout=30.0):
        self.lab = Lab(str(state_dir))
        self.state_dir = self.lab.dir
        self.processes = processes
        self.timeout = timeout
        self._procs = []

    # -- what is there -------------------------------------------------------------------------
    @property
    def bmcs(self):
        config = self.lab.load()
        return [BmcInfo(name, e.get('address', manage.DEFAULT_ADDRESS), e['port'], e['user'], e['password'],
                        tuple(e.get('machine', {}).get('macs') or ()))
                for name, e in sorted(config['bmcs'].items(), key=lambda item: item[1]['port'])]

    def bmc(self, name):
        for info in self.bmcs:
            if info.name == name:
                return info
        raise KeyError(name)

    def config(self, name):
        """The configuration entry of vBMC ``name`` (guid, bmc_mac, machine spec, faults...)."""
        return self.lab.load()['bmcs'][name]

    def machine_state(self, name):
        """The machine's state as its state file says: power, boot, boot_count, last_boot..."""
        return manage.machine(self.lab, name).state()

    def server_records(self):
        return self.lab.live_shards()

    def server_pids(self):
        return [s['pid'] for s in self.lab.live_shards()]

    def logs(self):
        """All vBMC server logs, concatenated."""
        text = []
        for entry in sorted(os.listdir(self.lab.logs_dir)):
            with open(os.path.join(self.lab.logs_dir, entry), errors='replace') as handle:
                text.append(handle.read())
        return ''.join(text)

    def inventory(self, path=None):
        """The Ansible YAML inventory text; also written (mode 0600) to ``path`` if given."""
        from ingot_lab.state import write_file_atomic
        text = manage.inventory_yaml(self.lab)
        if path is not None:
            write_file_atomic(os.path.abspath(str(path)), text, 0o600)
        return text

    # -- changing it (running servers apply changes before these return) ------------------------
    def _names(self, names):
        if names is None:
            return [b.name for b in self.bmcs]
        return [names] if isinstance(names, str) else list(names)

    def set_fault(self, names=None, drop=None, delay=None, max_sessions=None, clear=False, next_boot_only=None):
        manage.set_faults(self.lab, self._names(names), drop, delay, max_sessions, clear,
                          next_boot_only=next_boot_only)

    def clear_faults(self, names=None):
        manage.set_faults(self.lab, self._names(names), clear=True)

    def set_password(self, names, password, user=None):
        manage.set_credentials(self.lab, self._names(names), user, password)

    def set_session_timeout(self, seconds):
        manage.set_session_timeout(self.lab, seconds)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self):
        procs = server.start(self.lab, self.processes, self.timeout)[1]
        self._procs.extend(procs)

    def stop(self):
        server.stop(self.lab, procs=self._procs)
        self._procs = []


@contextlib.contextmanager
def start_lab(state_dir, n=1, *, base_port=None, prefix='n', user='admin', password='password', processes=1,
              nics=1, vendor=None, soft_off_delay=None, session_timeout=None, timeout=30.0):
    """Configure ``n`` vBMCs named PREFIX001.. in ``state_dir``, start them, yield a RunningLab.

    ``password=None`` gives each BMC a random password (read it from ``lab.bmcs``).  Ports are
    ``base_port``.. or, by default, a free range found on 127.0.0.1.
    """
    running = RunningLab(state_dir, processes, timeout)
    if base_port is None:
        base_port = free_udp_ports(n)
    machine_options = {'vendor': vendor, 'soft_off_delay': soft_off_delay}
    manage.add_many(running.lab, manage.fleet_names(n, base_port, prefix), user, password, nics=nics,
                    machine_options=machine_options)
    if session_timeout is not None:
        manage.set_session_timeout(running.lab, session_timeout, wait=False)
    running.start()
    try:
        yield running
    finally:
        running.stop()
