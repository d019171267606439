# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runtime fixes for pyghmi's IPMI session layer.

pyghmi 1.6.19 has races and policy gaps that matter when many BMCs are
driven from one process (see the lab notes, section 9). This module patches
them in place, once, and records what it patched so that tests can check
that every fix still applies to the installed pyghmi.

It imports nothing from Ansible so that the lab's virtual BMC (which uses the
server half of the same session layer) can load it by file path.

Fixes (numbers are the quirk numbers of the lab notes):

* 5 - lost wake-up: ``_io_wait`` registers its wake-up event only after the
  caller checked the packet queue, so a reply filed in between sleeps until
  the retry timer fires. Patched: after registering, return at once when a
  packet for the waiter is already queued.
* 6 - blocking-mode race: ``_io_sendto`` switches the shared socket to
  blocking mode from the caller's thread while the I/O thread receives;
  the I/O thread then blocks in ``recvfrom`` and the whole process stops.
  Patched: receive with ``MSG_DONTWAIT`` whatever the socket mode.
* policy - the cipher suite a session proposes and whether a session may fall
  back to IPMI 1.5 are chosen per session: the thread that creates a
  ``Command`` inside ``with session_policy(...)`` gives its session that
  policy, which stays with the session object (its re-logins included), so
  two entries for one BMC never share it. ``set_session_policy`` remains as a
  per (host, port) default for sessions made outside such a block:
  suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) unless asked otherwise,
  and no IPMI 1.5 unless the caller opted in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import socket
import threading

PYGHMI_TESTED_VERSIONS = ('1.6.19',)

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


def applied():
    """Names of the fixes applied in this process."""
    return dict(_APPLIED)


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


def _fix_lost_wakeup(S):
    orig = S._io_wait
    if getattr(orig, '_ingot_fixed', False):
        return

    def _queued_for(myaddr):
        if myaddr is None:
            return bool(S.sessionqueue)
        handlers = S.Session.bmc_handlers.get(myaddr)
        if not handlers:
            return False
        for sess in list(handlers.values()):
            if getattr(sess, 'pktqueue', None):
                return True
        return False

    def _io_wait(timeout, myaddr=None, evq=None):
        evt = threading.Event()
        if evq is not None:
            evq.append(evt)
        deadline = timeout + S._monotonic_time()
        S.ioqueue.append((deadline, evt, myaddr))
        # The fix: a reply may have been queued between the caller's check of
        # its queue and the registration above; nobody would wake us for it.
        if evq is None and _queued_for(myaddr):
            return
        if deadline < S.selectdeadline:
            intsock = S.iosockets[0]
            if hasattr(intsock, 'fd'):
                intsock = intsock.fd
            intsock.sendto(b'\x01', (S.myself, S.iosockets[0].getsockname()[1]))
        evt.wait()

    _io_wait._ingot_fixed = True
    _io_wait._ingot_original = orig
    S._io_wait = _io_wait
    _APPLIED['lost_wakeup'] = True


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


def apply():
    """Apply every fix once; safe to call many times and from many threads."""
    with _LOCK:
        from pyghmi.ipmi.private import session as S
        _fix_lost_wakeup(S)
        _fix_recv_mode(S)
        _fix_session_policy(S)
        _APPLIED['version'] = pyghmi_version()
    return applied()
