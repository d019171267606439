"""Runtime fixes for pyghmi's IPMI server side, pinned to pyghmi 1.6.19.

The quirks are described (symptom, cause, what worked) in LAB-NOTES.md section 9; the numbers
below are theirs.  :func:`apply` patches pyghmi in this process, only when the installed pyghmi is
the pinned version (each patch replaces a 1.6.19 function wholesale), and is idempotent: every
function it installs carries the marker attribute ``_ingot_fixed``, and a function already carrying
it is left alone.  The lab's tests (make lab-tests, test_pyghmi_fixes.py) fail when a fix stops applying.

Shared with pyghmi's client (module ``pyghmi.ipmi.private.session``):

5. lost wakeup: ``_io_wait`` registers its wake-up event *after* the caller checked the queues;
   the fixed ``_io_wait`` checks again once registered and returns at once if what it waits for
   is already queued (``_poller`` is re-installed on top of it);
6. blocking-mode race: ``_io_recvfrom`` receives with ``MSG_DONTWAIT`` whatever the socket mode;
   plus ``_io_graball`` made race-safe (the IO thread looked session tables up twice, so a session
   closed in between killed the IO thread with a KeyError; the server now closes sessions) and
   reading only the sockets that have data (one ``select`` instead of a ``recvfrom`` per BMC).

These shared ones are normally fixed by the collection's ``plugins/module_utils/pyghmi_compat.py``
(``apply()``), owned with the BMC client: when that file exists it is loaded by path and applied
first, and this module only fills in what it left without the ``_ingot_fixed`` marker.

Server only (``pyghmi.ipmi.private.serversession`` and ``pyghmi.ipmi.bmc``):

1. cipher suites: an RMCP+ Open Session Request proposing anything other than cipher suite 3's
   algorithms (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) is answered with status 0x11 ("no
   matching cipher suite"), so pyghmi's client, which proposes suite 17 first, retries with 3;
7. ``ServerSession`` had no ``sessionless_data``: packets routed to a session that was gone by
   the time they were processed raised AttributeError and ended ``Bmc.listen()``.  They now go to
   the BMC; every packet is processed under ``try``, errors logged (rate-limited), never raised;
   ``Bmc.listen`` catches and logs too;
8. sessions never freed: ``close_server_session`` now removes the session (Close Session
   command), and :func:`expire_idle_sessions` frees sessions idle longer than a timeout.

And, as real BMCs do: RAKP1 naming an unknown user is answered with RAKP2 status 0x0d
("unauthorized name") instead of silence (pyghmi's client then gives up at once instead of
re-logging forever, quirk 2); a RAKP3 with a wrong integrity code gets RAKP4 status 0x0f; a failed
handshake frees its session.  A wrong password still fails fast in the client (it checks the
RAKP2 HMAC).  ``Set Session Privilege Level`` with level 0/1 no longer raises AttributeError.

Found on the way (pyghmi keys server sessions by client address and BMC port):

* RAKP1/RAKP3 must carry the BMC session id being negotiated, and are ignored on an established
  session (stray or forged ones tore sessions down);
* an Open Session Request on an established session (pyghmi's re-login from the same socket) was
  answered through the session's encryption, unreadable; it is now answered in the clear, a
  refused proposal leaves the session alone, an accepted one replaces it and resets the replay
  window (else the new session's sequence numbers looked replayed and were dropped);
* a sessionless IPMI 1.5 packet (Get Channel Authentication Capabilities, the start of a login)
  from an address with a session made pyghmi drop that address's sessions on *every* BMC of the
  process; it is now answered by the BMC and nothing is dropped.

For server processes only (not part of :func:`apply`): :func:`install_server_io_worker` gives
pyghmi's IO thread an epoll loop (select over hundreds of BMC sockets per packet cost more than
the IPMI work), and :func:`serve_once` is a serving-loop iteration that waits without waking the
IO thread with a datagram for every packet.
"""

import hashlib
import hmac
import importlib.metadata
import importlib.util
import logging
import os
import select
import socket
import struct
import sys
import threading
import time

PINNED_PYGHMI = '1.6.19'
MARKER = '_ingot_fixed'
COMPAT_RELATIVE_PATH = os.path.join('plugins', 'module_utils', 'pyghmi_compat.py')
DEFAULT_SESSION_IDLE_TIMEOUT = 60.0

#: RMCP+ algorithm numbers of cipher suite 3, the only suite the server implements.
SUITE3_ALGORITHMS = (1, 1, 1)
RMCP_STATUS_NO_CIPHER_SUITE_MATCH = 0x11
RMCP_STATUS_ILLEGAL_PARAMETER = 0x12
RMCP_STATUS_UNAUTHORIZED_NAME = 0x0D
RMCP_STATUS_INVALID_INTEGRITY_CHECK = 0x0F

log = logging.getLogger('ingot_lab.pyghmi')

_apply_lock = threading.Lock()
_last_report = None


def pyghmi_version():
    try:
        return importlib.metadata.version('pyghmi')
    except importlib.metadata.PackageNotFoundError:
        return None


def _mark(func, what):
    setattr(func, MARKER, what)
    return func


def is_fixed(func):
    """True when ``func`` is a fixed replacement (ours or pyghmi_compat's)."""
    return bool(getattr(func, MARKER, False))


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


# -- shared with the client: quirks 5 and 6 ---------------------------------------------------

def _session_module():
    from pyghmi.ipmi.private import session
    return session


def _already_queued(S, myaddr):
    """Is a packet already queued for the waiter (``myaddr`` None: for anyone)?"""
    if myaddr is None:
        return bool(S.sessionqueue)
    handlers = S.Session.bmc_handlers.get(myaddr)
    if not handlers:
        return False
    return any(getattr(s, 'pktqueue', None) for s in list(handlers.values()))


def _fixed_io_wait(timeout, myaddr=None, evq=None):
    S = _session_module()
    evt = threading.Event()
    if evq is not None:
        evq.append(evt)
    deadline = timeout + S._monotonic_time()
    S.ioqueue.append((deadline, evt, myaddr))
    # Quirk 5: the caller looked at the queues before this event was registered, and the IO
    # thread only wakes registered events; look again now, or sleep until the retry timer.
    if evq is None and _already_queued(S, myaddr):
        return
    if deadline < S.selectdeadline:
        intsock = S.iosockets[0]
        if hasattr(intsock, 'fd'):
            intsock = intsock.fd
        intsock.sendto(b'\x01', (S.myself, S.iosockets[0].getsockname()[1]))
    evt.wait()


def _fixed_poller(timeout=0):
    S = _session_module()
    if S.sessionqueue:
        return True
    S._io_wait(timeout)
    return S.sessionqueue


def _fixed_io_recvfrom(mysocket, size):
    # Quirk 6: never depend on the socket's blocking mode, which other threads flip.
    try:
        return mysocket.recvfrom(size, socket.MSG_DONTWAIT)
    except OSError:
        return None


def _drain(mysockets, iowaiters):
    """Receive every queued datagram of ``mysockets`` and route it (pyghmi's ``_io_graball`` body,
    looking each session table up once: another thread may remove entries at any time)."""
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
    return _drain(ready, iowaiters)


SHARED_FIXES = {
    '_io_wait': (_fixed_io_wait, 5),
    '_poller': (_fixed_poller, 5),
    '_io_recvfrom': (_fixed_io_recvfrom, 6),
    '_io_graball': (_fixed_io_graball, 6),
}


def compat_path():
    """Where the collection's client-side pyghmi fixes live (the collection root is ``lab/..``)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, COMPAT_RELATIVE_PATH)


def _apply_compat():
    """Load plugins/module_utils/pyghmi_compat.py by path and call its apply(); None if absent."""
    path = compat_path()
    if not os.path.isfile(path):
        return None
    name = 'ingot_metal_pyghmi_compat'
    module = sys.modules.get(name)
    try:
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
        module.apply()
        return path
    except Exception:
        log.exception('%s: apply() failed; using ingot_lab\'s own fixes for the shared quirks', path)
        return None


def _version_ok(force):
    if force is None:
        force = os.environ.get('INGOT_LAB_FORCE_PYGHMI_FIXES') == '1'
    return force or pyghmi_version() == PINNED_PYGHMI


def apply_shared_fixes(force=None):
    """Fix quirks 5 and 6 (client and server): pyghmi_compat's apply(), then fill the gaps.

    Returns {function name: who fixed it}; {} (nothing patched) when pyghmi is not the pinned
    version, unless ``force``."""
    if not _version_ok(force):
        log.warning('pyghmi %s is not the pinned %s: shared fixes NOT applied', pyghmi_version(), PINNED_PYGHMI)
        return {}
    S = _session_module()
    compat = _apply_compat()
    report = {}
    for name, (func, quirk) in SHARED_FIXES.items():
        current = getattr(S, name)
        if is_fixed(current):
            report[name] = 'ingot_lab' if current is func else (compat or 'already fixed')
            continue
        setattr(S, name, _mark(func, 'ingot_lab quirk %d' % quirk))
        report[name] = 'ingot_lab'
    return report


# -- server side: quirks 1, 7, 8 and RAKP answers --------------------------------------------

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


def apply_server_fixes():
    """Fix the server-only quirks.  Returns the list of patched attributes."""
    patched = []
    fixes = _server_fixes()
    for cls, name, func, quirk in fixes:
        if _class_attr_fixed(cls, name):
            continue
        target = func.__func__ if isinstance(func, classmethod) else func
        _mark(target, 'ingot_lab quirk %d' % quirk)
        target.__name__ = name
        target.__qualname__ = '%s.%s' % (cls.__name__, name)
        setattr(cls, name, func)
        patched.append('%s.%s' % (cls.__name__, name))
    return patched


def apply(force=None):
    """Apply every fix, once, if the installed pyghmi is the pinned version.

    ``force`` (or INGOT_LAB_FORCE_PYGHMI_FIXES=1) applies them to another version anyway.  Returns
    a report dict: ``applied``, ``version``, ``shared`` (who fixed each shared function),
    ``server`` (attributes patched by this call).
    """
    global _last_report
    version = pyghmi_version()
    with _apply_lock:
        if not _version_ok(force):
            log.warning('pyghmi %s is not the pinned %s: server fixes NOT applied (the virtual BMC may '
                        'hang or die under load); re-validate the fixes and update PINNED_PYGHMI',
                        version, PINNED_PYGHMI)
            _last_report = {'applied': False, 'version': version, 'shared': {}, 'server': []}
            return _last_report
        shared = apply_shared_fixes(force=True)
        server = apply_server_fixes()
        _last_report = {'applied': True, 'version': version, 'shared': shared, 'server': server}
        return _last_report


def last_report():
    return _last_report


# -- helpers for the serving loop ---------------------------------------------------------------

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


def _epoll_worker_class():
    """pyghmi's IO thread with epoll instead of select over every socket (server processes only).

    Same loop as pyghmi 1.6.19's ``_IOWorker.run`` (session.define_worker); sockets appended to
    ``iosockets`` are registered at the next iteration (:func:`wake_io_thread` forces one)."""
    S = _session_module()

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
                sockaddrs = _drain([registered[fd] for fd, _mask in events if fd in registered], directediowaiters)
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
    S = _session_module()
    if is_fixed(S.define_worker):
        return True
    if S.iothread is not None or not hasattr(select, 'epoll'):
        return False
    S.define_worker = _mark(_epoll_worker_class, 'ingot_lab server IO worker')
    return True


def wake_io_thread():
    """Make pyghmi's IO thread run one iteration (e.g. to watch sockets created since)."""
    S = _session_module()
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
    process every queued one (through :func:`process_packet`).

    It replaces ``Session.wait_for_rsp`` in a process that is only a server (no client sessions,
    keep-alives or retry timers to run): it waits on its own timeout instead of waking pyghmi's IO
    thread with a datagram to shorten that thread's select (which ``_io_wait`` does on nearly
    every call), so a packet costs one thread hand-off instead of two plus a wake-up datagram.
    Registering before checking the queue keeps it free of the lost wakeup of quirk 5.
    """
    global _server_waiter
    S = _session_module()
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
            process_packet(target, target.pktqueue.popleft())


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


__all__ = ['PINNED_PYGHMI', 'MARKER', 'apply', 'apply_shared_fixes', 'apply_server_fixes', 'is_fixed',
           'process_packet', 'handle_packet', 'server_sessions', 'expire_idle_sessions', 'compat_path',
           'log_error', 'last_report']
