"""The vBMC server process: many virtual BMCs, one serving loop, and the processes that run it.

One process serves any number of BMCs (each on its own loopback UDP port); ``start`` can shard a
lab over several processes.  pyghmi does the IPMI work, with every patch of the collection's
``plugins/module_utils/pyghmi_compat.py`` applied (client, io and server groups): its IO thread
(epoll-based here, :func:`install_server_io_worker`) receives and routes packets, the serving loop
(:func:`serve_once`) handles them and runs deferred work (the delay fault), and every half second
idle sessions are closed, the configuration is re-read if it changed (faults, credentials; SIGHUP
forces it) and the IO thread is checked.  No exception leaves the loop.
"""

import contextlib
import heapq
import importlib.util
import itertools
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

from ingot_lab import apply_pyghmi_compat, load_pyghmi_compat
from ingot_lab.faults import Faults
from ingot_lab.machines import create_machine
from ingot_lab.probe import probe
from ingot_lab.state import LabError

log = logging.getLogger('ingot_lab.server')
compat = load_pyghmi_compat()

HOUSEKEEPING_INTERVAL = 0.5
MAX_WAIT = 0.5


def setup_logging(lab, shard_id, to_stderr=False, level=logging.INFO):
    lab.ensure()
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter('%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s')
    handler = logging.FileHandler(lab.log_path(shard_id))
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if to_stderr:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(fmt)
        root.addHandler(err)


# -- the serving loop and pyghmi's IO thread of a server process ------------------------------------
# (not patches of pyghmi functions, which are all in plugins/module_utils/pyghmi_compat.py, but
# this process's own loop: pyghmi's client never runs them)


def _epoll_worker_class():
    """pyghmi's IO thread with epoll instead of select over every socket (server processes only).

    Same loop as pyghmi 1.6.19's ``_IOWorker.run`` (session.define_worker); sockets appended to
    ``iosockets`` are registered at the next iteration (:func:`wake_io_thread` forces one)."""
    from pyghmi.ipmi.private import session as S

    class _IOWorker(threading.Thread):
        def join(self):
            S.Session._cleanup()
            self.running = False
            wake_io_thread()
            super().join()

        def run(self):
            self.running = True
            poller = select.epoll()
            registered = {}
            iowaiters = []
            directediowaiters = {}
            timeout = 300
            S.iothreadready = True
            while S.iothreadwaiters:
                S.iothreadwaiters.pop().set()
            while self.running:
                if len(registered) != len(S.iosockets):
                    for sock in list(S.iosockets):
                        if sock.fileno() not in registered:
                            poller.register(sock.fileno(), select.EPOLLIN)
                            registered[sock.fileno()] = sock
                if timeout < 0:
                    timeout = 0
                S.selectdeadline = S._monotonic_time() + timeout
                try:
                    events = poller.poll(timeout)
                except InterruptedError:
                    events = []
                S.selectdeadline = S._monotonic_time() + 300
                timeout = 300
                sockaddrs = compat.drain([registered[fd] for fd, _mask in events if fd in registered], directediowaiters)
                for w in iowaiters:
                    w[1].set()
                iowaiters = []
                rightnow = S._monotonic_time()
                for d in list(directediowaiters):
                    for idx, w in reversed(list(enumerate(directediowaiters[d]))):
                        ltimeout = w[0] - rightnow
                        if ltimeout < 0:
                            w[1].set()
                            del directediowaiters[d][idx]
                        elif ltimeout < timeout:
                            timeout = ltimeout
                    if not directediowaiters[d]:
                        del directediowaiters[d]
                while S.ioqueue:
                    workitem = S.ioqueue.popleft()
                    if (workitem[2] is None and sockaddrs) or workitem[2] in sockaddrs:
                        workitem[1].set()
                    else:
                        ltimeout = workitem[0] - S._monotonic_time()
                        if ltimeout < timeout:
                            timeout = ltimeout
                        if workitem[2] is None:
                            iowaiters.append(workitem)
                        else:
                            directediowaiters.setdefault(workitem[2], []).append(workitem)

    return _IOWorker


def install_server_io_worker():
    """Make pyghmi's IO thread use epoll (a server process with hundreds of BMC sockets: select
    over all of them on every packet cost more than the IPMI work).  Must run before the first
    socket exists; returns False (and changes nothing) when the IO thread already runs."""
    from pyghmi.ipmi.private import session as S
    if compat.is_fixed(S.define_worker):
        return True
    if S.iothread is not None or not hasattr(select, 'epoll'):
        return False
    S.define_worker = _epoll_worker_class
    S.define_worker._ingot_fixed = 'ingot_lab server IO worker'
    return True


def wake_io_thread():
    """Make pyghmi's IO thread run one iteration (e.g. to watch sockets created since)."""
    from pyghmi.ipmi.private import session as S
    if S.iosockets:
        sock = S.iosockets[0]
        sock.sendto(b'\x01', (S.myself, sock.getsockname()[1]))


_server_waiter = None


def wake_server_loop():
    """Make a :func:`serve_once` waiting now return at once (e.g. from a signal handler)."""
    waiter = _server_waiter
    if waiter is not None:
        waiter.set()


def serve_once(timeout):
    """One iteration of a server process's loop: wait up to ``timeout`` seconds for packets, then
    process every queued one (through pyghmi_compat's ``process_packet``).

    It replaces ``Session.wait_for_rsp`` in a process that is only a server (no client sessions,
    keep-alives or retry timers to run): it waits on its own timeout instead of waking pyghmi's IO
    thread with a datagram to shorten that thread's select (which ``_io_wait`` does on nearly
    every call), so a packet costs one thread hand-off instead of two plus a wake-up datagram.
    Registering before checking the queue keeps it free of the lost wakeup of quirk 5.
    """
    global _server_waiter
    from pyghmi.ipmi.private import session as S
    if not S.sessionqueue:
        # One registered waiter at a time: the IO thread drops an event once it has set it, so an
        # event not set yet is still registered and can be waited on again (no pile-up of events
        # registered by timed-out waits while the lab is idle).
        if _server_waiter is None or _server_waiter.is_set():
            _server_waiter = threading.Event()
            S.ioqueue.append((S._monotonic_time() + timeout, _server_waiter, None))
        if not S.sessionqueue:
            _server_waiter.wait(timeout)
    while S.sessionqueue:
        target = S.sessionqueue.popleft()
        while target.pktqueue:
            compat.process_packet(target, target.pktqueue.popleft())


class VbmcServer:
    """Serve the vBMCs ``names`` (default: all configured) of ``lab`` in this process."""

    def __init__(self, lab, names=None, shard_id='fg'):
        self.lab = lab
        self.shard_id = str(shard_id)
        self.names = names
        self.bmcs = {}
        self.generation = 0
        self.session_timeout = 60.0
        self._timers = []
        self._seq = itertools.count()
        self._stop = False
        self._reload = False
        self._config_mtime = None
        self.started = None
        self.exit_code = 0
        self.pyghmi_report = {}

    # -- set-up --------------------------------------------------------------------------------
    def setup(self):
        from ingot_lab.vbmc import VirtualBmc
        report = apply_pyghmi_compat(compat.GROUPS)
        applied = not report.get('untested')
        fixes = sorted(k for k in report if k not in ('version', 'untested'))
        if applied:
            log.info('pyghmi %s, fixes applied: %s', report['version'], ', '.join(fixes))
        else:
            log.warning('%s; the virtual BMCs may hang or die under load', compat.untested_message(report['version']))
        self.pyghmi_report = {'version': report['version'], 'fixes_applied': applied, 'fixes': fixes,
                              'io_worker': 'select'}
        self._config_mtime = self.lab.config_mtime()
        config = self.lab.load()
        names = self.names if self.names is not None else sorted(config['bmcs'], key=lambda n: config['bmcs'][n]['port'])
        missing = [n for n in names if n not in config['bmcs']]
        if missing:
            raise LabError('not configured: %s' % ', '.join(missing))
        self.session_timeout = float(config['settings']['session_timeout'])
        if applied and install_server_io_worker():
            self.pyghmi_report['io_worker'] = 'epoll'
        else:
            log.warning('serving with pyghmi\'s own select() IO loop')
        for name in names:
            entry = config['bmcs'][name]
            machine = create_machine(name, entry.get('machine'), self.lab.dir)
            try:
                bmc = VirtualBmc(name, machine, entry['port'], {entry['user']: entry['password']},
                                 address=entry.get('address', '127.0.0.1'), guid=entry.get('guid'),
                                 bmc_mac=entry.get('bmc_mac'), manufacturer_id=entry.get('manufacturer_id'),
                                 faults=Faults.from_dict(entry.get('faults')), defer=self.defer)
            except OSError as err:
                raise LabError('%s: cannot listen on %s:%d/udp: %s' % (
                    name, entry.get('address', '127.0.0.1'), entry['port'], err.strerror or err))
            self.bmcs[name] = bmc
        wake_io_thread()   # watch every socket created above
        self.generation = config['generation']
        self.started = time.time()
        self._write_record()
        log.info('serving %d vBMCs (%s) as shard %s, config generation %d', len(self.bmcs),
                 self._describe_ports(), self.shard_id, self.generation)

    def _describe_ports(self):
        ports = sorted(b.port for b in self.bmcs.values())
        if not ports:
            return 'no ports'
        return 'udp %d-%d' % (ports[0], ports[-1]) if len(ports) > 1 else 'udp %d' % ports[0]

    def _write_record(self):
        self.lab.write_shard(self.shard_id, {
            'id': self.shard_id,
            'pid': os.getpid(),
            'names': list(self.bmcs),
            'ports': [b.port for b in self.bmcs.values()],
            'generation': self.generation,
            'started': self.started,
            'pyghmi': self.pyghmi_report,
        })

    # -- the loop ------------------------------------------------------------------------------
    def defer(self, delay, func, *args):
        """Run ``func(*args)`` on the serving loop ``delay`` seconds from now."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), func, args))

    def _run_due_timers(self):
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            func, args = heapq.heappop(self._timers)[2:]
            try:
                func(*args)
            except Exception:
                compat.log_error('error in a deferred task')

    def request_stop(self, *_signal):
        self._stop = True
        wake_server_loop()

    def request_reload(self, *_signal):
        self._reload = True
        wake_server_loop()

    def serve_forever(self):
        from pyghmi.ipmi.private import session
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL
        while not self._stop:
            try:
                self._run_due_timers()
                timeout = MAX_WAIT
                if self._timers:
                    timeout = min(timeout, max(0.001, self._timers[0][0] - time.monotonic()))
                serve_once(timeout)
                now = time.monotonic()
                if self._reload or now >= next_housekeeping:
                    next_housekeeping = now + HOUSEKEEPING_INTERVAL
                    self._housekeeping(session)
            except Exception:
                compat.log_error('error in the serving loop')
        log.info('stopping (shard %s)', self.shard_id)

    def _housekeeping(self, session):
        closed = compat.expire_idle_sessions(self.session_timeout)
        if closed:
            log.info('closed %d idle sessions', closed)
        if session.iothread is not None and not session.iothread.is_alive():
            log.critical('pyghmi IO thread died: no BMC of this process can answer; exiting')
            self._stop = True
            self.exit_code = 3
        mtime = self.lab.config_mtime()
        if self._reload or mtime != self._config_mtime:
            self._reload = False
            self._config_mtime = mtime
            self.reload()

    def reload(self):
        try:
            config = self.lab.load()
        except LabError as err:
            log.error('configuration not reloaded: %s', err)
            return
        self.session_timeout = float(config['settings']['session_timeout'])
        for name, bmc in self.bmcs.items():
            entry = config['bmcs'].get(name)
            if entry is None:
                log.warning('%s is no longer configured; served until this process stops', name)
                continue
            bmc.set_users({entry['user']: entry['password']})
            faults = Faults.from_dict(entry.get('faults'))
            if faults != bmc.faults:
                log.info('%s: faults %s', name, faults.to_dict())
            bmc.set_faults(faults)
        self.generation = config['generation']
        self._write_record()
        log.info('configuration generation %d applied', self.generation)

    def close(self):
        for bmc in self.bmcs.values():
            with contextlib.suppress(Exception):
                bmc.machine.close()
        self.lab.remove_shard(self.shard_id, pid=os.getpid())


def serve(lab, names=None, shard_id='fg'):
    """Run a server in this process until SIGTERM/SIGINT; return the exit code."""
    server = VbmcServer(lab, names, shard_id)
    try:
        try:
            server.setup()
        except Exception as err:
            log.error('cannot start: %s', err, exc_info=not isinstance(err, LabError))
            raise
        server.serve_forever()
    finally:
        server.close()
    return server.exit_code


# -- managing server processes ---------------------------------------------------------------------

def _child_env():
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = here + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    return env


def _tail(path, lines=15):
    try:
        with open(path, errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError:
        return ''


def _next_ids(lab, count):
    used = {str(s['id']) for s in lab.shards()}
    ids = []
    for candidate in itertools.count():
        if str(candidate) not in used:
            ids.append(str(candidate))
            if len(ids) == count:
                return ids


def start(lab, processes=1, timeout=30.0, python=None):
    """Start server processes for every configured vBMC not served yet; wait until each answers.

    Returns (started shard records, [subprocess.Popen]); raises LabError (after stopping what it
    started) when a process fails or a BMC does not answer within ``timeout`` seconds.
    """
    python = python or sys.executable
    if python == sys.executable and importlib.util.find_spec('pyghmi') is None:
        raise LabError('pyghmi is not installed for %s: run ingot-lab with a python that has it '
                       '(e.g. a virtualenv with "pip install pyghmi==%s")' % (python, compat.PYGHMI_TESTED_VERSIONS[0]))
    deadline = time.monotonic() + timeout
    with lab.locked():
        lab.clean_stale_shards()
        config = lab.load()
        served = lab.served()
        todo = sorted((n for n in config['bmcs'] if n not in served), key=lambda n: config['bmcs'][n]['port'])
        if not todo:
            return [], []
        count = max(1, min(int(processes), len(todo)))
        size, extra = divmod(len(todo), count)
        chunks, at = [], 0
        for i in range(count):
            take = size + (1 if i < extra else 0)
            chunks.append(todo[at:at + take])
            at += take
        procs = []
        for shard_id, chunk in zip(_next_ids(lab, count), chunks):
            out = open(os.path.join(lab.logs_dir, 'vbmc-%s.out' % shard_id), 'ab')
            cmd = [python, '-m', 'ingot_lab', '--state-dir', lab.dir, 'vbmc', 'serve', '--shard-id', shard_id,
                   '--names', ','.join(chunk), '--quiet']
            procs.append((shard_id, chunk, subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=_child_env(),
                start_new_session=True, close_fds=True)))
            out.close()
        # (still under the lock: a second "start" must not spawn servers for the same vBMCs)
        try:
            records = _wait_started(lab, procs, config, deadline)
        except LabError:
            _terminate_all([(proc.pid, proc) for _shard, _names, proc in procs])
            for shard_id, _names, proc in procs:
                lab.remove_shard(shard_id, pid=proc.pid)
            raise
    return records, [p[2] for p in procs]


def _wait_started(lab, procs, config, deadline):
    records = {}
    while len(records) < len(procs):
        for shard_id, _names, proc in procs:
            if shard_id in records:
                continue
            if proc.poll() is not None:
                raise LabError('vBMC server %s exited with code %s:\n%s%s' % (
                    shard_id, proc.returncode, _tail(lab.log_path(shard_id), 5),
                    _tail(os.path.join(lab.logs_dir, 'vbmc-%s.out' % shard_id), 5)))
            for shard in lab.shards():
                if str(shard['id']) == shard_id and shard['pid'] == proc.pid:
                    records[shard_id] = shard
        if len(records) < len(procs):
            if time.monotonic() > deadline:
                raise LabError('vBMC servers did not start in time')
            time.sleep(0.02)
    by_host = {}
    for shard in records.values():
        for name in shard['names']:
            entry = config['bmcs'][name]
            by_host.setdefault(entry.get('address', '127.0.0.1'), {})[entry['port']] = name
    for host, ports in by_host.items():
        answered = probe(host, ports, timeout=max(0.5, deadline - time.monotonic()))
        silent = sorted(ports[p] for p in set(ports) - answered)
        if silent:
            raise LabError('vBMCs not answering after start: %s' % ', '.join(silent[:20]))
    return list(records.values())


def _terminate_all(targets, timeout=5.0):
    """SIGTERM every (pid, Popen or None), wait up to ``timeout`` for all, SIGKILL the rest.
    Children of this process (Popen) are reaped."""
    for pid, _proc in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout

    def gone(pid, proc):
        return proc.poll() is not None if proc is not None else not _alive(pid)

    while time.monotonic() < deadline and not all(gone(pid, proc) for pid, proc in targets):
        time.sleep(0.02)
    for pid, proc in targets:
        if not gone(pid, proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait()


def _alive(pid):
    from ingot_lab.state import process_state
    state = process_state(pid)
    return state is not None and state != 'Z'


def stop(lab, timeout=5.0, procs=()):
    """Stop every running server process of ``lab``; return their records."""
    by_pid = {p.pid: p for p in procs}
    with lab.locked():
        shards = lab.live_shards()
        targets = [(shard['pid'], by_pid.pop(shard['pid'], None)) for shard in shards]
        # started here but not (or no longer) recorded: a process that failed, not yet reaped
        targets += [(proc.pid, proc) for proc in by_pid.values() if proc.returncode is None]
        _terminate_all(targets, timeout)
        for shard in shards:
            lab.remove_shard(shard['id'])
        lab.clean_stale_shards()
    return shards
