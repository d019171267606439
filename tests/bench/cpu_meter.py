# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU seconds of the parts of the lab rack, for tests/bench/bench_deploy.py.

* the controller: this process and everything it starts (ansible-runner, ansible-playbook, its workers, the
  ssh connections it opens, ControlPersist masters included, which leave the process tree): a cgroup of the
  cpuacct hierarchy (cgroup v1) or of the unified one (v2) made for this process, read whole;
* containers (the provisioner container: the service and dnsmasq; the node containers): their cgroups, read
  by a sampler thread once a second, since a node container's cgroup goes when its machine is switched off
  (what it used in its last second is lost); the sampler's own CPU is taken off the controller's;
* processes by pid (the virtual BMC servers), with their reaped children;
* the whole machine (/proc/stat), other users included.

Commands the benchmark runs for its own bookkeeping go through :func:`outside`, out of the controller's cgroup.
"""

import os
import subprocess
import threading
import time

V1 = '/sys/fs/cgroup/cpuacct'
V2 = '/sys/fs/cgroup'
TICK = float(os.sysconf('SC_CLK_TCK'))


def _own_cgroup(pid='self'):
    """(root of the hierarchy, path of PID's cgroup in it): cgroup v1's cpuacct, else v2's unified one."""
    with open('/proc/%s/cgroup' % pid) as handle:
        lines = [line.rstrip('\n').split(':', 2) for line in handle]
    for dummy, controllers, path in lines:
        if 'cpuacct' in controllers.split(',') and os.path.isdir(V1):
            return V1, path
    for hid, controllers, path in lines:
        if hid == '0' and not controllers and os.path.exists(os.path.join(V2, 'cgroup.controllers')):
            return V2, path
    raise RuntimeError('no cpuacct (cgroup v1) or unified (cgroup v2) hierarchy in /proc/%s/cgroup' % pid)


def cgroup_seconds(directory):
    """CPU seconds used by the processes of a cgroup directory (and its children), or None when it is gone."""
    try:
        with open(os.path.join(directory, 'cpuacct.usage')) as handle:
            return int(handle.read()) / 1e9
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(directory, 'cpu.stat')) as handle:
            for line in handle:
                key, value = line.split()
                if key == 'usage_usec':
                    return int(value) / 1e6
    except FileNotFoundError:
        return None
    return None


def process_seconds(pid):
    """CPU seconds of a process and of its reaped children, or 0 when it is gone."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK


def machine_busy():
    """Core-seconds this machine spent busy so far (/proc/stat: everything but idle and iowait)."""
    with open('/proc/stat') as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


_CONTROLLER = {}


def _to_parent():
    parent = _CONTROLLER.get('parent')
    if parent:
        with open(os.path.join(parent, 'cgroup.procs'), 'w') as handle:
            handle.write(str(os.getpid()))


def outside(argv, check=False, **kwargs):
    """subprocess.run of a bookkeeping command, out of the controller's cgroup (not counted as its CPU)."""
    return subprocess.run(argv, check=check, preexec_fn=_to_parent, **kwargs)   # pylint: disable=subprocess-popen-preexec-fn


class Meter:
    """Reads the CPU of the controller, of named containers and of processes; :meth:`close` undoes the cgroup.

    ``containers``: {category: [container name, ...]}; ``pids``: a callable giving {category: [pid, ...]}."""

    def __init__(self, containers, pids=None, interval=1.0):
        root, path = _own_cgroup()
        self.parent = root + path if path != '/' else root
        self.path = os.path.join(self.parent, 'ingot-bench-%d' % os.getpid())
        os.mkdir(self.path)
        _CONTROLLER['parent'] = self.parent
        with open(os.path.join(self.path, 'cgroup.procs'), 'w') as handle:
            handle.write(str(os.getpid()))
        self.containers = containers
        self.pids = pids or (lambda: {})
        self.interval = interval
        self.totals = dict((category, 0.0) for category in containers)
        self._last = {}
        self._dirs = {}
        self._sampler_cpu = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resolve()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name='ingot-bench-cpu', daemon=True)
        self._thread.start()

    def _resolve(self):
        """The cgroup directory of each container, from its id and the provisioner container's cgroup."""
        names = [n for members in self.containers.values() for n in members]
        proc = outside(['docker', 'inspect', '-f', '{{.Name}} {{.Id}} {{.State.Pid}}'] + names,
                       capture_output=True, text=True)
        found = {}
        for line in proc.stdout.splitlines():
            name, cid, pid = line.split()
            found[name.lstrip('/')] = (cid, int(pid))
        template = None
        for cid, pid in found.values():
            if pid:
                template = (cid, _own_cgroup(pid))
                break
        if template is None:
            return
        tid, (root, path) = template
        for name, (cid, dummy) in found.items():
            self._dirs[name] = root + path.replace(tid, cid)

    def _sample(self):
        with self._lock:
            for category, members in self.containers.items():
                for name in members:
                    directory = self._dirs.get(name)
                    now = cgroup_seconds(directory) if directory else None
                    if now is None:
                        self._last[name] = 0.0   # switched off: its next cgroup starts at zero
                        continue
                    last = self._last.get(name)
                    if last is not None:
                        self.totals[category] += now - last if now >= last else now
                    self._last[name] = now

    def _loop(self):
        rounds = 0
        while not self._stop.wait(self.interval):
            start = time.thread_time()
            rounds += 1
            if rounds % 10 == 0:   # a container made again gets a new id
                self._resolve()
            self._sample()
            self._sampler_cpu += time.thread_time() - start

    def read(self):
        """{'controller': s, <container category>: s, ..., <pid category>: s, ..., 'machine': s} so far."""
        self._sample()
        controller = cgroup_seconds(self.path) or 0.0
        with self._lock:
            values = dict(self.totals)
        values['controller'] = controller - self._sampler_cpu
        for category, pids in self.pids().items():
            values[category] = sum(process_seconds(pid) for pid in set(pids))
        values['machine'] = machine_busy()
        return values

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
        _CONTROLLER.pop('parent', None)
        # this process and what it left running (ssh ControlPersist masters) back to where they came from
        with open(os.path.join(self.path, 'cgroup.procs')) as handle:
            pids = handle.read().split()
        for pid in pids:
            try:
                with open(os.path.join(self.parent, 'cgroup.procs'), 'w') as handle:
                    handle.write(pid)
            except OSError:
                pass   # gone meanwhile
        try:
            os.rmdir(self.path)
        except OSError as exc:
            print('bench: could not remove the cgroup %s: %s' % (self.path, exc), flush=True)


def difference(after, before):
    return dict((key, after[key] - before.get(key, 0.0)) for key in after)
