# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every run-time patch of pyghmi, client and server side, in one place.

pyghmi 1.6.19 has races and policy gaps that matter when many BMCs are driven
from one process, and its IPMI server side (which the lab's virtual BMCs use)
has more. This module patches them in place, once, and records what it
patched, **only on the pyghmi versions the patches were tested on**
(``PYGHMI_TESTED_VERSIONS``: the version pinned in requirements.txt and
claimed by the modules' documentation). Each patch replaces or wraps a
function of exactly that release; on any other version nothing is patched
and :func:`apply` warns, naming the version found and the versions tested
(the BMC client then refuses IPMI, see ``plugins/module_utils/bmc.py``:
unpatched, it could not enforce ``bmc_allow_ipmi15=false``).

It imports nothing from Ansible, so that the lab (``lab/ingot_lab``), which
runs without Ansible, loads this very file by path
(``ingot_lab.compat.pyghmi_compat()``).

Every function it installs carries the marker attribute ``_ingot_fixed``; a
function already carrying it is left alone (idempotent, thread-safe).

Groups of patches (``apply(groups)``):

``client`` (the BMC modules, the inventory plugin, the lab's clients), in
``pyghmi.ipmi.private.session``:

* quirk 5, lost wake-up: ``_io_wait`` registers its wake-up event only after
  the caller checked the packet queue, so a reply filed in between sleeps
  until the retry timer fires (0.5-1 s per command). Patched: after
  registering, return at once when a packet for the waiter is already queued;
  and wait on the waiter's own timeout instead of sending the I/O thread a
  wake-up datagram so that its select ends at the waiter's deadline (a send,
  a select round and a thread hand-off on nearly every wait: CPU, not
  latency, since the I/O thread wakes the waiter on its packet either way).
  (``_poller`` calls ``_io_wait`` through the module's globals, so it uses
  the fixed one with no patch of its own.)
* thundering herd at login: a thread creating a ``Command`` waits for its
  login in ``Session.wait_for_rsp``, whose ``_poller`` waits for a packet
  from *any* BMC; with N threads logging in, every packet woke all N (each
  then found no packet of its own and waited again): CPU grew with the
  square of the concurrency. Patched: while a thread is in
  ``Session.__init__``, ``_poller`` waits for packets from that session's
  BMC address (once it sent its first packet; a name with several
  addresses still waits for any). Packets of other sessions are still
  processed by whichever thread wakes, as in pyghmi; timers still end
  the wait (``wait_for_rsp`` passes the earliest retry deadline).
* the clock: ``_monotonic_time`` is ``os.times()[4]``, a system call (about
  1 us, some 50 times per session) with a resolution of one clock tick
  (10 ms). Patched: ``time.monotonic`` (no system call, same meaning: only
  differences of it are used), in ``util``, ``session`` and ``console``.
* locks: ``with util.protect(lock)`` (some 40 times a session) built a
  Python object whose ``__enter__``/``__exit__`` acquire and release
  ``lock``. Patched: ``util.protect(lock)`` returns ``lock`` itself, whose
  own ``with`` does the same in C. (pyghmi 1.6.19 uses ``protect`` only in
  ``with``, never as the decorator it can also be.)
* quirk 6, blocking-mode race: ``_io_sendto`` switches the shared socket to
  blocking mode from the caller's thread while the I/O thread receives; the
  I/O thread then blocks in ``recvfrom`` and the whole process stops.
  Patched: receive with ``MSG_DONTWAIT`` whatever the socket mode.
* lock order, a deadlock: sending takes ``KEEPALIVE_SESSIONS`` and then, to arm the retry timer,
  ``WAITING_SESSIONS`` (``send_payload`` -> ``_xmit_packet``); a retry takes them the other way round:
  ``wait_for_rsp`` and ``awaitresponse`` call ``_timedout`` while they hold ``WAITING_SESSIONS``, and its
  resend or re-login goes through ``send_payload``. A retry in one thread while another sends stops both for
  good, and with them every later session of the process (their first send waits for ``KEEPALIVE_SESSIONS``):
  seen in a fleet of 200 vBMCs on a loaded machine (retries are common there, as on a lossy network), every
  later BMC of that process then failing at its deadline.
  Patched: ``_timedout`` lets go of ``WAITING_SESSIONS`` (when its thread holds it) while it runs and takes it
  back after; the sessions it times out were already taken off the table under the lock.
* policy: the cipher suite a session proposes and whether a session may fall
  back to IPMI 1.5 are chosen per session: the thread that creates a
  ``Command`` inside ``with session_policy(...)`` gives its session that
  policy, which stays with the session object (its re-logins included), so
  two entries for one BMC never share it. ``set_session_policy`` remains as a
  per (host, port) default for sessions made outside such a block: suite 3
  (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) unless asked otherwise, and no
  IPMI 1.5 unless the caller opted in.

Quirks of pyghmi 1.6.19 handled by its callers, not patched here (the numbers
are the ones used across the repository's comments and tests):

* quirk 2, a login that never returns: for an unknown user pyghmi re-logs
  forever (``_relog`` takes ``logontries`` below zero while ``_timedout``
  gives up only at exactly zero). The BMC client bounds every call with its
  own deadline (``bmc.run_with_deadline``); the lab's server answers RAKP2
  status 0x0d, as real BMCs do.
* quirk 3, str credentials: with a str ``userid`` a second ``Command()`` to
  the same BMC in one process hangs (``initting_sessions`` is keyed by str on
  insert and by bytes on delete). Callers pass bytes.
* quirk 4, threads: many threads in one process stalled for seconds before
  quirks 5 and 6 were fixed (a 20-thread run of 200 BMCs took 20 s; fixed,
  0.2-0.5 s).

``io`` (processes with many sockets: the lab's servers and its benchmark
client): ``_io_graball`` made race-safe (the I/O thread looked session tables
up twice, so a session closed in between killed the I/O thread with a
KeyError) and reading only the sockets that have data (one ``select``
instead of a ``recvfrom`` per BMC).

``server`` (the lab's virtual BMCs), in ``pyghmi.ipmi.private.serversession``
and ``pyghmi.ipmi.bmc``:

* quirk 1, cipher suites: an RMCP+ Open Session Request proposing anything
  other than cipher suite 3's algorithms is answered with status 0x11 ("no
  matching cipher suite"), so pyghmi's client, which proposes suite 17
  first, retries with 3;
* quirk 7: ``ServerSession`` had no ``sessionless_data``: packets routed to a
  session that was gone by the time they were processed raised
  AttributeError and ended ``Bmc.listen()``. They now go to the BMC; every
  packet is processed under ``try``, errors logged (rate-limited), never
  raised; ``Bmc.listen`` catches and logs too;
* quirk 8, sessions never freed: ``close_server_session`` now removes the
  session (Close Session command), and :func:`expire_idle_sessions` frees
  sessions idle longer than a timeout;
* as real BMCs do: RAKP1 naming an unknown user is answered with RAKP2 status
  0x0d ("unauthorized name") instead of silence (pyghmi's client then gives
  up at once instead of re-logging forever); a RAKP3 with a wrong integrity
  code gets RAKP4 status 0x0f; a failed handshake frees its session.
  ``Set Session Privilege Level`` with level 0/1 no longer raises;
* found on the way (pyghmi keys server sessions by client address and BMC
  port): RAKP1/RAKP3 must carry the BMC session id being negotiated and are
  ignored on an established session; an Open Session Request on an
  established session (a re-login from the same socket) is answered in the
  clear, a refused proposal leaves the session alone, an accepted one
  replaces it and resets the replay window; a sessionless IPMI 1.5 packet
  from an address with a session is answered by the BMC instead of dropping
  that address's sessions on every BMC of the process.

The lab's serving loop and its epoll I/O thread, which are not patches of a
pyghmi function but a server process's own loop, live with the server in
``lab/ingot_lab/server.py``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import hmac
import logging
import os
import select
import socket
import struct
import sys
import threading
import time
import warnings

#: The pyghmi releases every patch below was checked against (requirements.txt pins the first).
PYGHMI_TESTED_VERSIONS = ('1.6.19',)
MARKER = '_ingot_fixed'
CLIENT = 'client'
IO = 'io'
SERVER = 'server'
GROUPS = (CLIENT, IO, SERVER)
DEFAULT_SESSION_IDLE_TIMEOUT = 60.0
#: The longest a thread logging in sleeps between checks of its login (a safety net: the packets of
#: its BMC and the end of its login wake it).
LOGIN_WAIT_CAP = 0.5

#: RMCP+ algorithm numbers of cipher suite 3, the only suite pyghmi's server implements.
SUITE3_ALGORITHMS = (1, 1, 1)
RMCP_STATUS_NO_CIPHER_SUITE_MATCH = 0x11
RMCP_STATUS_ILLEGAL_PARAMETER = 0x12
RMCP_STATUS_UNAUTHORIZED_NAME = 0x0D
RMCP_STATUS_INVALID_INTEGRITY_CHECK = 0x0F

log = logging.getLogger('ingot.metal.pyghmi_compat')
_monotonic = time.monotonic

_LOCK = threading.Lock()
_APPLIED = {}
# (bmc host as given, port) -> {'hash': 1 or 256, 'allow_ipmi15': bool}
_POLICY = {}
# The policy of the sessions the current thread creates (see session_policy).
_THREAD = threading.local()

IPMI15_REFUSED = ('the BMC offers only IPMI 1.5 (no RMCP+ authentication); '
                  'refused because IPMI 1.5 sends credentials with weak protection. '
                  'Enable IPMI 2.0 (lanplus) on the BMC, or opt in with bmc_allow_ipmi15=true')


def pyghmi_version():
    try:
        from importlib.metadata import version
        return version('pyghmi')
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return None


def version_tested(found=None):
    """Were the patches tested on pyghmi ``found`` (default: the installed one)?"""
    return (found or pyghmi_version()) in PYGHMI_TESTED_VERSIONS


def untested_message(found=None):
    """What to tell a user whose pyghmi is not one the patches were tested on."""
    found = found or pyghmi_version() or '(version unknown)'
    return ('pyghmi %s is installed, but ingot.metal\'s fixes of pyghmi were tested on pyghmi %s only, '
            'so they are not applied to %s (unpatched, IPMI sessions may stall or hang the process and '
            'the IPMI 1.5 refusal is not enforced): install pyghmi==%s (requirements.txt)'
            % (found, ', '.join(PYGHMI_TESTED_VERSIONS), found, PYGHMI_TESTED_VERSIONS[0]))


def applied():
    """Names of the fixes applied in this process, and the pyghmi version (``version``)."""
    return dict(_APPLIED)


def _mark(func, what=True):
    setattr(func, MARKER, what)
    return func


def is_fixed(func):
    """True when ``func`` is a replacement installed by this module."""
    return bool(getattr(func, MARKER, False))


def _session_module():
    from pyghmi.ipmi.private import session
    return session


def set_session_policy(host, port, cipher_suite=3, allow_ipmi15=False):
    """Choose how sessions to ``host:port`` authenticate."""
    _POLICY[(host, int(port))] = make_policy(cipher_suite, allow_ipmi15)


def make_policy(cipher_suite=3, allow_ipmi15=False):
    return {'hash': 256 if int(cipher_suite) == 17 else 1, 'allow_ipmi15': bool(allow_ipmi15)}


@contextlib.contextmanager
def session_policy(cipher_suite=3, allow_ipmi15=False):
    """Sessions created by this thread inside the block get this policy."""
    previous = getattr(_THREAD, 'policy', None)
    _THREAD.policy = make_policy(cipher_suite, allow_ipmi15)
    try:
        yield
    finally:
        _THREAD.policy = previous


def _policy_for(sess):
    own = getattr(sess, '_ingot_policy', None)
    if own is not None:
        return own
    return _POLICY.get((sess.bmc, int(sess.port)), {'hash': 1, 'allow_ipmi15': False})


def _queued_for(S, myaddr):
    """Is a packet queued for a waiter on ``myaddr`` (any session, when None)?"""
    if myaddr is None:
        return bool(S.sessionqueue)
    handlers = S.Session.bmc_handlers.get(myaddr)
    if not handlers:
        return False
    for sess in list(handlers.values()):
        if getattr(sess, 'pktqueue', None):
            return True
    return False


def _fix_lost_wakeup(S):
    orig = S._io_wait
    if getattr(orig, '_ingot_fixed', False):
        return

    def _io_wait(timeout, myaddr=None, evq=None):
        evt = threading.Event()
        if evq is not None:
            evq.append(evt)
        deadline = timeout + S._monotonic_time()
        S.ioqueue.append((deadline, evt, myaddr))
        # The fix: a reply may have been queued between the caller's check of
        # its queue and the registration above; nobody would wake us for it.
        if evq is None and _queued_for(S, myaddr):
            return
        # The second fix: wait on our own timeout.  pyghmi sent a datagram to its I/O thread here (on
        # nearly every call) so that the thread would shorten its select and wake us at the deadline:
        # a send, a select round and a thread hand-off per wait, about a third of the CPU of an
        # exchange.  The I/O thread still wakes us when a packet for us arrives (it reads ioqueue after
        # every receive); at the deadline we wake by ourselves.
        evt.wait(max(0.0, timeout))

    _io_wait._ingot_fixed = True
    _io_wait._ingot_original = orig
    S._io_wait = _io_wait
    _APPLIED['lost_wakeup'] = True


def _fix_login_wait(S):
    """A thread logging in waits for packets from its own BMC only (see the module docstring)."""
    sess_cls = S.Session
    orig_init = sess_cls.__init__
    orig_poller = S._poller
    orig_sync_login = sess_cls._sync_login

    def __init__(self, *args, **kwargs):
        previous = getattr(_THREAD, 'logging_in', None)
        _THREAD.logging_in = self
        try:
            orig_init(self, *args, **kwargs)
        finally:
            _THREAD.logging_in = previous

    def _sync_login(self, response):
        # The login ended (either way), maybe in another thread: wake the thread waiting for it.
        evt = getattr(self, '_ingot_login_waiter', None)
        if evt is not None:
            evt.set()
        return orig_sync_login(self, response)

    def _poller(timeout=0):
        if S.sessionqueue:
            return True
        sess = getattr(_THREAD, 'logging_in', None)
        addrs = getattr(sess, 'allsockaddrs', None) if sess is not None else None
        if not addrs or len(addrs) != 1:
            # Not logging in, or no packet sent yet, or a name with several addresses: pyghmi's wait.
            S._io_wait(timeout)
            return S.sessionqueue
        evt = threading.Event()
        sess._ingot_login_waiter = evt      # before the checks below: a login ending now sets it
        deadline = timeout + S._monotonic_time()
        S.ioqueue.append((deadline, evt, addrs[0]))
        if S.sessionqueue or _queued_for(S, addrs[0]) or not sess.logging or sess.broken:
            return S.sessionqueue
        evt.wait(max(0.0, min(timeout, LOGIN_WAIT_CAP)))
        return S.sessionqueue

    # Each one once (idempotent, and a test may restore one of them alone).
    if not is_fixed(orig_init):
        sess_cls.__init__ = _mark(__init__)
    if not is_fixed(orig_sync_login):
        sess_cls._sync_login = _mark(_sync_login)
    if not is_fixed(orig_poller):
        _poller._ingot_original = orig_poller
        S._poller = _mark(_poller)
    _APPLIED['login_wait'] = True


def _fix_clock(S):
    """pyghmi's clock: ``time.monotonic`` instead of ``os.times()[4]`` (see the module docstring)."""
    from pyghmi.ipmi.private import util
    if is_fixed(S._monotonic_time):
        return
    orig = util._monotonic_time

    def _monotonic_time():
        return _monotonic()

    _monotonic_time._ingot_original = orig
    _mark(_monotonic_time)
    util._monotonic_time = _monotonic_time
    S._monotonic_time = _monotonic_time
    console = sys.modules.get('pyghmi.ipmi.console')
    if console is not None and getattr(console, '_monotonic_time', None) is orig:
        console._monotonic_time = _monotonic_time
    _APPLIED['monotonic_clock'] = True


def _fix_protect():
    """pyghmi's ``util.protect(lock)``: the lock itself (see the module docstring)."""
    from pyghmi.ipmi.private import util
    if is_fixed(util.protect):
        return
    orig = util.protect

    def protect(lock):
        return lock

    protect._ingot_original = orig
    util.protect = _mark(protect)
    _APPLIED['protect'] = True


def _fix_recv_mode(S):
    orig = S._io_recvfrom
    if getattr(orig, '_ingot_fixed', False):
        return

    def _io_recvfrom(mysocket, size):
        if hasattr(mysocket, 'fd'):
            mysocket = mysocket.fd
        try:
            return mysocket.recvfrom(size, socket.MSG_DONTWAIT)
        except (socket.error, OSError):
            return None

    _io_recvfrom._ingot_fixed = True
    _io_recvfrom._ingot_original = orig
    S._io_recvfrom = _io_recvfrom
    _APPLIED['recv_dontwait'] = True


def _fix_timeout_lock_order(S):
    """A retry never holds the waiting-sessions lock while it sends (see the module docstring, lock order)."""
    sess_cls = S.Session
    orig = sess_cls._timedout
    lock = S.WAITING_SESSIONS
    if is_fixed(orig) or not all(hasattr(lock, m) for m in ('_is_owned', '_release_save', '_acquire_restore')):
        return

    def _timedout(self):
        saved = lock._release_save() if lock._is_owned() else None
        try:
            return orig(self)
        finally:
            if saved is not None:
                lock._acquire_restore(saved)

    _timedout._ingot_original = orig
    sess_cls._timedout = _mark(_timedout)
    _APPLIED['timeout_lock_order'] = True


def _fix_session_policy(S):
    sess_cls = S.Session
    orig_init = sess_cls._initsession
    if getattr(orig_init, '_ingot_fixed', False):
        return

    def _initsession(self):
        orig_init(self)
        if not getattr(self, 'servermode', False):
            mine = getattr(_THREAD, 'policy', None)
            if mine is not None and getattr(self, '_ingot_policy', None) is None:
                self._ingot_policy = mine
            self.attemptedhash = _policy_for(self)['hash']

    _initsession._ingot_fixed = True
    sess_cls._initsession = _initsession

    orig_cap = sess_cls._got_channel_auth_cap

    def _got_channel_auth_cap(self, response):
        if 'error' not in response and not _policy_for(self)['allow_ipmi15']:
            code = response.get('code')
            data = response.get('data') or b''
            only15 = False
            if code == 0xcc and self.ipmi15only is not None:
                only15 = True  # the BMC refused the IPMI 2.0 form of the request
            elif code == 0 and len(data) > 3 and not (data[1] & 0x80 and data[3] & 0x02):
                only15 = True
            if only15:
                self.onlogon({'error': IPMI15_REFUSED})
                return None
        return orig_cap(self, response)

    _got_channel_auth_cap._ingot_fixed = True
    sess_cls._got_channel_auth_cap = _got_channel_auth_cap
    _APPLIED['session_policy'] = True


# -- io: the I/O thread's receive, race-safe and from ready sockets only --------------------------

def drain(mysockets, iowaiters):
    """Receive every queued datagram of ``mysockets`` and route it; return the senders' addresses.

    pyghmi's ``_io_graball`` body, looking each session table up once (another thread may remove
    entries at any time); the lab's epoll I/O thread calls it with the sockets epoll reported."""
    S = _session_module()
    sockaddrs = []
    handlers_of = S.Session.bmc_handlers
    for mysocket in mysockets:
        myport = None
        while True:
            rdata = S._io_recvfrom(mysocket, 3000)
            if rdata is None:
                break
            if len(rdata[0]) < 4:   # too short to be useful, e.g. the IO thread's wake-up byte
                continue
            if myport is None:
                myport = mysocket.getsockname()[1]
            rdata = rdata + (mysocket,)
            handlers = handlers_of.get(rdata[1])
            relsession = handlers.get(myport) if handlers else None
            if relsession is not None:
                rdata = rdata + (True,)
            else:
                server = handlers_of.get(mysocket)
                relsession = server.get(0) if server else None
                rdata = rdata + (False,)
            if relsession is not None:
                relsession.pktqueue.append(rdata)
                S.sessionqueue.append(relsession)
            waiters = iowaiters.pop(rdata[1], None)
            for w in waiters or ():
                w[1].set()
            sockaddrs.append(rdata[1])
    return sockaddrs


def _fixed_io_graball(mysockets, iowaiters):
    # Only the sockets that have data: one select instead of a recvfrom per socket (per BMC).
    try:
        ready = select.select(mysockets, (), (), 0)[0]
    except (OSError, ValueError):
        ready = list(mysockets)
    return drain(ready, iowaiters)


def _fix_graball(S):
    if is_fixed(S._io_graball):
        return
    S._io_graball = _mark(_fixed_io_graball, 'io')
    _APPLIED['graball'] = True


# -- server: quirks 1, 7, 8 and the RAKP answers ---------------------------------------------------

class _ErrorLog:
    """Log exceptions, at most ``burst`` per ``window`` seconds, then a count of the rest."""

    def __init__(self, burst=20, window=60.0):
        self.burst = burst
        self.window = window
        self.started = 0.0
        self.logged = 0
        self.suppressed = 0
        self.lock = threading.Lock()

    def __call__(self, what):
        now = time.monotonic()
        with self.lock:
            if now - self.started > self.window:
                if self.suppressed:
                    log.error('%d more errors not logged in the last %.0f s', self.suppressed, self.window)
                self.started, self.logged, self.suppressed = now, 0, 0
            if self.logged >= self.burst:
                self.suppressed += 1
                return
            self.logged += 1
        log.exception('%s (kept serving)', what)


log_error = _ErrorLog()


def _proposed_algorithms(request):
    """(auth, integrity, confidentiality) algorithms of an Open Session Request, None for a
    wildcard (null) payload; None when the request is malformed."""
    if len(request) < 32:
        return None
    algorithms = []
    for offset, payload_type in ((8, 0), (16, 1), (24, 2)):
        if request[offset] != payload_type:
            return None
        algorithms.append(None if request[offset + 3] == 0 else request[offset + 4] & 0x3F)
    return tuple(algorithms)


def _server_fixes():
    from pyghmi.ipmi import bmc as bmcmod
    from pyghmi.ipmi.private import constants
    from pyghmi.ipmi.private import serversession as SS
    S = _session_module()
    ServerSession = SS.ServerSession
    IpmiServer = SS.IpmiServer
    originals = {name: ServerSession.__dict__[name] for name in
                 ('__init__', 'create_open_session_response') if name in ServerSession.__dict__}

    def __init__(self, *args, **kwargs):
        self._ingot_last_activity = time.monotonic()
        self._ingot_established = False
        originals['__init__'](self, *args, **kwargs)

    def create_open_session_response(self, request):
        established = getattr(self, '_ingot_established', False)
        if len(request) < 8:
            if not established:
                self.close_server_session()
            raise ValueError('RMCP+ Open Session Request too short (%d bytes)' % len(request))
        algorithms = _proposed_algorithms(request)
        if algorithms is None or any(a not in (None, want) for a, want in zip(algorithms, SUITE3_ALGORITHMS)):
            # Quirk 1: refuse what we cannot do, so the client retries with suite 3.  A refused
            # request leaves an established session of the same client address alone.
            if not established:
                self._ingot_negotiated = False
                self.clientsessionid = request[4:8]
                self.close_server_session()
            status = RMCP_STATUS_ILLEGAL_PARAMETER if algorithms is None else RMCP_STATUS_NO_CIPHER_SUITE_MATCH
            return bytearray([request[0], status, 0, 0]) + request[4:8]
        self._ingot_negotiated = True
        return originals['create_open_session_response'](self, request)

    def _got_rmcp_openrequest(self, data):
        # An Open Session Request from a client address that already has a session here (pyghmi's
        # re-login from the same socket, or a stray request).  Stock pyghmi sent the answer through
        # the session's integrity and encryption, which no client can read.  A refused proposal
        # leaves an established session alone; an accepted one replaces it.
        response = self.create_open_session_response(bytearray(data))
        if response[1] == 0:
            self._ingot_established = False
            self.integrityalgo = 0
            self.confalgo = 0
            self.sessionid = 0
            self.sequencenumber = 0
            self.remseqnumber = None    # else the new session's first sequence numbers look replayed
        send_plain_payload(self.socket, self.sockaddr, response, 'rmcpplusopenresponse')

    def _send_rakp_error(self, payload_type, clienttag, status):
        self.send_payload(bytearray([clienttag, status, 0, 0]) + self.clientsessionid,
                          constants.payload_types[payload_type], retry=False)
        self.close_server_session()

    def _for_this_handshake(self, data, length):
        """Is this RAKP message for the session being negotiated (by its BMC session id)?"""
        return (getattr(self, '_ingot_negotiated', False) and not getattr(self, '_ingot_established', False)
                and len(data) >= length and bytes(data[4:8]) == bytes(getattr(self, 'managedsessionid', b'')))

    def _got_rakp1(self, data):
        if not _for_this_handshake(self, data, 28):
            return
        clienttag = data[0]
        self.Rm = data[8:24]
        self.rolem = data[24]
        self.maxpriv = self.rolem & 0b111
        self.clientpriv = min(self.maxpriv, 2)
        namelen = data[27]
        self.username = bytes(data[28:28 + namelen])
        password = None
        if namelen:
            password = self.authdata.get(self.username.decode('utf-8', 'replace'))
        if password is None:
            # Like a real BMC: say so (RAKP2 status 0x0d) instead of leaving the client to retry.
            _send_rakp_error(self, 'rakp2', clienttag, RMCP_STATUS_UNAUTHORIZED_NAME)
            return
        uuidbytes = self.uuid.bytes
        self.uuiddata = uuidbytes
        self.Rc = os.urandom(16)
        hmacdata = (self.clientsessionid + self.managedsessionid + self.Rm + self.Rc + uuidbytes
                    + bytearray([self.rolem, len(self.username)]))
        hmacdata += self.username
        self.kuid = password.encode('utf-8')
        if self.kg is None:
            self.kg = self.kuid
        authcode = hmac.new(self.kuid, bytes(hmacdata), hashlib.sha1).digest()
        newmessage = (bytearray([clienttag, 0, 0, 0]) + self.clientsessionid + self.Rc + uuidbytes
                      + authcode)
        self.send_payload(newmessage, constants.payload_types['rakp2'], retry=False)

    def _got_rakp3(self, data):
        if (not _for_this_handshake(self, data, 8) or getattr(self, 'kuid', None) is None
                or getattr(self, 'Rc', None) is None):
            return
        clienttag = data[0]
        if data[1] != 0:
            # the client gave up on this handshake (e.g. it did not like our RAKP2)
            self.close_server_session()
            return
        RmRc = self.Rm + self.Rc
        rolelen = struct.pack('2B', self.rolem, len(self.username))
        self.sik = hmac.new(self.kg, bytes(RmRc) + rolelen + self.username, hashlib.sha1).digest()
        self.k1 = hmac.new(self.sik, b'\x01' * 20, hashlib.sha1).digest()
        self.k2 = hmac.new(self.sik, b'\x02' * 20, hashlib.sha1).digest()
        self.aeskey = self.k2[0:16]
        hmacdata = self.Rc + self.clientsessionid + rolelen + self.username
        expected = hmac.new(self.kuid, bytes(hmacdata), hashlib.sha1).digest()
        if not hmac.compare_digest(expected, bytes(data[8:])):
            _send_rakp_error(self, 'rakp4', clienttag, RMCP_STATUS_INVALID_INTEGRITY_CHECK)
            return
        self.localsid = struct.unpack('<I', self.managedsessionid)[0]
        self.ipmicallback = self.handle_client_request
        self._ingot_established = True
        self._send_rakp4(clienttag, 0)

    def close_server_session(self):
        # Quirk 8: free the session (Close Session, idle timeout, failed handshake).
        self._ingot_established = False
        handlers = S.Session.bmc_handlers.get(getattr(self, 'sockaddr', None))
        if handlers is not None and handlers.get(self.bmc.port) is self:
            del handlers[self.bmc.port]
            if not handlers:
                S.Session.bmc_handlers.pop(self.sockaddr, None)

    def sessionless_data(self, data, sockaddr):
        # Quirk 7: ServerSession lacked this; such packets belong to the BMC.
        return self.bmc.sessionless_data(data, sockaddr)

    def _handle_ipmi_packet(self, data, sockaddr=None, qent=None):
        if len(data) >= 13 and data[4] in (0, 2) and not any(data[5:13]):
            # A sessionless IPMI 1.5 packet (e.g. Get Channel Authentication Capabilities) from a
            # client address that has a session here: answer it as the BMC.  pyghmi deleted the
            # sessions of that address on *every* BMC of the process here.
            return self.bmc.sessionless_data(data, sockaddr)
        return S.Session._handle_ipmi_packet(self, data, sockaddr, qent)

    def session_process_pktqueue(self):
        while self.pktqueue:
            process_packet(self, self.pktqueue.popleft())

    def server_process_pktqueue(self):
        while self.pktqueue:
            process_packet(self, self.pktqueue.popleft())

    def listen(cls, timeout=30):
        last_sweep = time.monotonic()
        while True:
            try:
                S.Session.wait_for_rsp(min(timeout, 1.0))
                if time.monotonic() - last_sweep > 1.0:
                    last_sweep = time.monotonic()
                    expire_idle_sessions(DEFAULT_SESSION_IDLE_TIMEOUT)
            except Exception:
                log_error('error in the serving loop')

    return [
        (ServerSession, '__init__', __init__, 8),
        (ServerSession, 'create_open_session_response', create_open_session_response, 1),
        (ServerSession, '_got_rmcp_openrequest', _got_rmcp_openrequest, 1),
        (ServerSession, '_got_rakp1', _got_rakp1, 2),
        (ServerSession, '_got_rakp3', _got_rakp3, 2),
        (ServerSession, 'close_server_session', close_server_session, 8),
        (ServerSession, 'sessionless_data', sessionless_data, 7),
        (ServerSession, '_handle_ipmi_packet', _handle_ipmi_packet, 7),
        (ServerSession, 'process_pktqueue', session_process_pktqueue, 7),
        (IpmiServer, 'process_pktqueue', server_process_pktqueue, 7),
        (bmcmod.Bmc, 'listen', classmethod(listen), 7),
    ]


def _class_attr_fixed(cls, name):
    value = cls.__dict__.get(name)
    if isinstance(value, classmethod):
        value = value.__func__
    return is_fixed(value)


def _apply_server_fixes():
    """Fix the server-only quirks.  Returns the list of patched attributes."""
    patched = []
    fixes = _server_fixes()
    for cls, name, func, quirk in fixes:
        if _class_attr_fixed(cls, name):
            continue
        target = func.__func__ if isinstance(func, classmethod) else func
        _mark(target, 'server quirk %d' % quirk)
        target.__name__ = name
        target.__qualname__ = '%s.%s' % (cls.__name__, name)
        setattr(cls, name, func)
        patched.append('%s.%s' % (cls.__name__, name))
    return patched


def send_plain_payload(sock, sockaddr, payload, payload_type):
    """Send an RMCP+ payload outside any session (no integrity, no encryption), as Open Session
    Responses and RAKP messages travel; ``payload_type`` names one of pyghmi's payload types."""
    from pyghmi.ipmi.private import constants
    S = _session_module()
    packet = (bytearray(b'\x06\x00\xff\x07\x06') + bytes([constants.payload_types[payload_type]]) + bytes(8)
              + struct.pack('<H', len(payload)) + payload)
    S._io_sendto(sock, packet, sockaddr)


def process_packet(target, pkt):
    """Process one packet queued for ``target`` (a ServerSession or a BMC), never raising.

    A BMC may filter packets with a ``packet_hook(target, pkt)`` method returning True when it
    consumed the packet (dropped it, or deferred it: it then calls :func:`handle_packet` later).
    """
    from pyghmi.ipmi.private import serversession as SS
    bmc = target.bmc if isinstance(target, SS.ServerSession) else target
    hook = getattr(bmc, 'packet_hook', None)
    try:
        if hook is not None and hook(target, pkt):
            return
    except Exception:
        log_error('error in packet hook')
    handle_packet(target, pkt)


def handle_packet(target, pkt):
    """Handle one packet now, as pyghmi would, logging (never raising) errors."""
    from pyghmi.ipmi.private import serversession as SS
    S = _session_module()
    try:
        data = bytearray(pkt[0])
        if not (len(data) >= 4 and data[0] == 6 and data[2:4] == b'\xff\x07'):
            return
        if isinstance(target, SS.ServerSession):
            target._ingot_last_activity = time.monotonic()
            handlers = S.Session.bmc_handlers.get(pkt[1])
            if handlers is not None and handlers.get(target.bmc.port) is target:
                target._handle_ipmi_packet(data, sockaddr=pkt[1], qent=pkt)
            else:
                # the session was closed after this packet was queued
                target.bmc.sessionless_data(data, pkt[1])
        else:
            target.sessionless_data(data, pkt[1])
    except Exception:
        log_error('error handling a packet from %s' % (pkt[1],))


def server_sessions(port=None, established_only=True):
    """The live server sessions (of the BMC on ``port``)."""
    from pyghmi.ipmi.private import serversession as SS
    S = _session_module()
    found = []
    for addr, handlers in list(S.Session.bmc_handlers.items()):
        if not isinstance(addr, tuple):
            continue
        for bmcport, sess in list(handlers.items()):
            if not isinstance(sess, SS.ServerSession):
                continue
            if port is not None and bmcport != port:
                continue
            if established_only and not getattr(sess, '_ingot_established', False):
                continue
            found.append(sess)
    return found


def expire_idle_sessions(max_idle, now=None):
    """Close server sessions idle for more than ``max_idle`` seconds; return how many."""
    now = time.monotonic() if now is None else now
    closed = 0
    for sess in server_sessions(established_only=False):
        last = getattr(sess, '_ingot_last_activity', None)
        if last is None:
            sess._ingot_last_activity = now
        elif now - last > max_idle:
            sess.close_server_session()
            closed += 1
    return closed


# -- imports: pyghmi's OEM code and Redfish client only when needed ---------------------------------

_OEM_LOOKUP = 'pyghmi.ipmi.oem.lookup'
_IMPORT_LOCK = threading.Lock()


def _new_import_lock():
    global _IMPORT_LOCK
    _IMPORT_LOCK = threading.Lock()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_new_import_lock)   # a lock another thread held at the fork stays held


def _deferred_get_oem_handler(*args, **kwargs):
    """pyghmi's ``get_oem_handler``, imported on its first call (see :func:`deferred_oem_lookup`)."""
    import importlib
    redfish = sys.modules.get('pyghmi.redfish.command')
    if redfish is not None:
        # Lenovo's OEM code uses pyghmi's Redfish client: executed first, under the lock (see lazy_module).
        loaded(redfish)
    lookup = importlib.import_module(_OEM_LOOKUP)
    return lookup.get_oem_handler(*args, **kwargs)


_mark(_deferred_get_oem_handler)


@contextlib.contextmanager
def deferred_oem_lookup():
    """Import ``pyghmi.ipmi.command`` inside this block without ``pyghmi.ipmi.oem.lookup``.

    ``command`` imports ``get_oem_handler`` from ``lookup``, which imports every OEM's code (Lenovo's
    pulls in an HTTPS client and more): about two thirds of the CPU of importing pyghmi, which
    Ansible's controller pays for every play with a BMC task, while only ``Command.oem_init`` (FRU,
    sensors, pyghmi's own power and boot helpers) ever calls it. Inside the block ``lookup`` is a stand-in
    whose ``get_oem_handler`` imports the real module on its first call; the stand-in leaves
    ``sys.modules`` at the end of the block, so any other import gets the real module. Only on a tested
    pyghmi, and only when ``command`` is not imported yet (otherwise a no-op)."""
    if (not version_tested() or _OEM_LOOKUP in sys.modules or 'pyghmi.ipmi.command' in sys.modules):
        yield
        return
    import types
    stand_in = types.ModuleType(_OEM_LOOKUP)
    stand_in.get_oem_handler = _deferred_get_oem_handler
    sys.modules[_OEM_LOOKUP] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_OEM_LOOKUP) is stand_in:
            del sys.modules[_OEM_LOOKUP]
    _APPLIED['deferred_oem_lookup'] = True


def lazy_module(name):
    """Module ``name``, executed on its first use (``importlib.util.LazyLoader``); load it with
    :func:`loaded` before use from threads (a lazy module's first load is not thread-safe on Python 3.11)."""
    import importlib.util
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError('No module named %r' % name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def loaded(module):
    """``module`` (from :func:`lazy_module`) executed, by one thread at a time."""
    with _IMPORT_LOCK:
        getattr(module, '__dict__')    # any attribute executes a lazy module
    return module


def warm_up(hosts=('127.0.0.1', 'localhost')):
    """Do once, in a process that is going to fork (Ansible's controller before it forks a worker per
    host), the first-use work of the libraries every IPMI session needs: OpenSSL looks up the AES-CBC,
    HMAC-SHA1 and HMAC-SHA256 implementations on their first use, and the resolver loads its
    configuration on the first ``getaddrinfo``. Done in the parent, every forked worker inherits it
    instead of repeating it (in the per-host form: a worker per host). It uses the very objects pyghmi's
    session uses, and opens no session, socket or thread (none of them would survive a fork)."""
    try:
        S = _session_module()
        key = b'\x00' * 16
        cipher = S.Cipher(algorithm=S.algorithms.AES(key), mode=S.modes.CBC(key), backend=S.Session._crypto_backend)
        encrypted = cipher.encryptor().update(key)
        cipher.decryptor().update(encrypted)
        for digest in (hashlib.sha1, hashlib.sha256):
            hmac.new(key, key, digest).digest()
        os.urandom(16)
        for host in hosts:
            try:
                socket.getaddrinfo(host, 623, 0, socket.SOCK_DGRAM)
            except (socket.error, UnicodeError):
                pass
    except Exception:  # pragma: no cover - only ever an optimisation
        log.debug('pyghmi_compat.warm_up failed', exc_info=True)


def apply(groups=(CLIENT,), force=False):
    """Apply the fixes of ``groups`` once; safe to call many times and from many threads.

    Only on a pyghmi of ``PYGHMI_TESTED_VERSIONS`` (or with ``force``, for someone re-checking
    the fixes on a new release): on any other version nothing is patched, a RuntimeWarning naming
    both is issued, and the result says ``untested``. Returns :func:`applied`.
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError('unknown pyghmi fix group(s) %s (known: %s)' % (', '.join(unknown), ', '.join(GROUPS)))
    with _LOCK:
        version = pyghmi_version()
        _APPLIED['version'] = version
        if not (force or version_tested(version)):
            if not _APPLIED.get('untested'):
                warnings.warn(untested_message(version), RuntimeWarning)
            _APPLIED['untested'] = True
            return applied()
        from pyghmi.ipmi.private import session as S
        if CLIENT in groups:
            _fix_clock(S)
            _fix_protect()
            _fix_lost_wakeup(S)
            _fix_login_wait(S)
            _fix_recv_mode(S)
            _fix_timeout_lock_order(S)
            _fix_session_policy(S)
        if IO in groups:
            _fix_graball(S)
        if SERVER in groups:
            for name in _apply_server_fixes():
                _APPLIED['server:' + name] = True
    return applied()
