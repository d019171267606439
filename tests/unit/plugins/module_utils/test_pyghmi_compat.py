# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run-time fixes of pyghmi's IPMI session layer.

These tests drive pyghmi's real module (``pyghmi.ipmi.private.session``): its
globals, its ``Session`` class (instances made without a network) and real
sockets. They also check that each quirk is still present in the installed
pyghmi, so that a pyghmi upgrade makes someone look at every fix again.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from importlib.metadata import version

import pytest

from pyghmi.ipmi.private import session as S

from ansible_collections.ingot.metal.plugins.module_utils import bmc, pyghmi_compat
from ansible_collections.ingot.metal.plugins.module_utils.bmc import run_with_deadline

FIXED = ('_io_wait', '_poller', '_io_recvfrom', '_monotonic_time')
FIXED_SESSION = ('_initsession', '_got_channel_auth_cap', '__init__', '_sync_login', '_timedout')


def fixed_functions():
    return [getattr(S, n) for n in FIXED] + [getattr(S.Session, n) for n in FIXED_SESSION]


def bare_session(host='192.0.2.10', port=623):
    """A pyghmi Session object that never touched the network (no __init__, no login)."""
    sess = object.__new__(S.Session)
    sess.bmc = host
    sess.port = port
    sess.servermode = False
    sess.maxtimeout = 2
    sess.logontries = 1
    sess.incommand = False
    return sess


# ---------------------------------------------------------------- version and apply()
def test_installed_pyghmi_is_a_version_the_fixes_were_checked_against():
    installed = version('pyghmi')
    assert installed in pyghmi_compat.PYGHMI_TESTED_VERSIONS, (
        'pyghmi %s is installed but pyghmi_compat was checked against %s: re-check every fix of '
        'plugins/module_utils/pyghmi_compat.py against this version, then add it to PYGHMI_TESTED_VERSIONS'
        % (installed, ', '.join(pyghmi_compat.PYGHMI_TESTED_VERSIONS)))
    assert pyghmi_compat.pyghmi_version() == installed


def test_the_pinned_and_documented_pyghmi_are_tested_versions():
    root = os.path.join(os.path.dirname(pyghmi_compat.__file__), '..', '..')
    with open(os.path.join(root, 'requirements.txt')) as handle:
        pins = re.findall(r'^pyghmi==(\S+)', handle.read(), re.M)
    with open(os.path.join(root, 'plugins', 'doc_fragments', 'bmc.py')) as handle:
        claimed = re.findall(r'tested with pyghmi (\S+?)[ ;,]', handle.read())
    assert pins and claimed
    assert set(pins + claimed) <= set(pyghmi_compat.PYGHMI_TESTED_VERSIONS)


def test_importing_the_client_applied_every_fix():
    assert bmc.HAS_PYGHMI
    applied = pyghmi_compat.applied()
    for fix in ('monotonic_clock', 'lost_wakeup', 'login_wait', 'recv_dontwait', 'session_policy',
                'timeout_lock_order'):
        assert applied.get(fix) is True, fix
    assert applied['version'] == version('pyghmi')
    for fn in fixed_functions():
        assert getattr(fn, '_ingot_fixed', False) is True, fn


def test_apply_is_idempotent():
    before = fixed_functions()
    assert pyghmi_compat.apply() == pyghmi_compat.applied()
    pyghmi_compat.apply()
    after = fixed_functions()
    assert all(a is b for a, b in zip(before, after))
    assert all(getattr(fn, '_ingot_fixed', False) for fn in after)


def test_apply_from_many_threads_at_once_patches_once():
    before = fixed_functions()
    threads = [threading.Thread(target=pyghmi_compat.apply) for dummy in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert all(a is b for a, b in zip(before, fixed_functions()))


def test_the_fixes_wrap_pyghmis_own_functions():
    for name in FIXED:
        original = getattr(S, name)._ingot_original
        assert original.__module__ in ('pyghmi.ipmi.private.session', 'pyghmi.ipmi.private.util')
        assert not getattr(original, '_ingot_fixed', False)


# ---------------------------------------------------------------- the version guard
@pytest.fixture
def untested_pyghmi(monkeypatch):
    """This process as if pyghmi 9.9.9 were installed and nothing were patched yet."""
    monkeypatch.setattr(pyghmi_compat, 'pyghmi_version', lambda: '9.9.9')
    monkeypatch.setattr(pyghmi_compat, '_APPLIED', {})
    for name in FIXED:
        monkeypatch.setattr(S, name, getattr(S, name)._ingot_original)


def test_an_untested_pyghmi_is_not_patched_and_the_warning_names_both_versions(untested_pyghmi):
    with pytest.warns(RuntimeWarning) as caught:
        result = pyghmi_compat.apply()
    assert result == {'version': '9.9.9', 'untested': True}
    assert not any(getattr(getattr(S, name), '_ingot_fixed', False) for name in FIXED)
    message = str(caught[0].message)
    assert 'pyghmi 9.9.9 is installed' in message
    assert 'tested on pyghmi %s only' % ', '.join(pyghmi_compat.PYGHMI_TESTED_VERSIONS) in message
    assert 'install pyghmi==1.6.19' in message


def test_force_patches_an_untested_pyghmi(untested_pyghmi):
    result = pyghmi_compat.apply(force=True)
    assert 'untested' not in result and result['lost_wakeup'] and result['recv_dontwait']
    assert all(getattr(getattr(S, name), '_ingot_fixed', False) for name in FIXED)


def test_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match='unknown pyghmi fix group.*nonsense'):
        pyghmi_compat.apply(('client', 'nonsense'))


def test_the_client_refuses_ipmi_on_an_untested_pyghmi(monkeypatch):
    monkeypatch.setattr(pyghmi_compat, 'pyghmi_version', lambda: '9.9.9')
    monkeypatch.setitem(pyghmi_compat._APPLIED, 'untested', True)
    with pytest.raises(bmc.BmcError) as err:
        bmc.BmcClient('192.0.2.10', 'admin', 'secret', name='node1')
    assert err.value.kind == bmc.UNSUPPORTED
    assert err.value.message.startswith('BMC node1: IPMI not attempted: pyghmi 9.9.9 is installed')
    assert 'tested on pyghmi 1.6.19 only' in err.value.message
    # Redfish does not go through the patched session layer: it is not refused
    assert bmc.BmcClient('192.0.2.10', 'admin', 'secret', protocol='redfish').protocol == 'redfish'


# ---------------------------------------------------------------- session policy
@pytest.mark.parametrize('suite, expected', [(3, 1), (17, 256)])
def test_session_policy_sets_the_hash_a_session_proposes(suite, expected):
    sess = bare_session('192.0.2.10', 6230)
    with pyghmi_compat.session_policy(cipher_suite=suite):
        sess._initsession()
    assert sess.attemptedhash == expected
    sess.attemptedhash = None
    sess._initsession()  # every (re)login, from any thread, keeps the session's own policy
    assert sess.attemptedhash == expected


def test_two_sessions_to_one_bmc_keep_their_own_policy():
    """Two entries for one (host, port) with different cipher suites."""
    a, b = bare_session('192.0.2.11', 623), bare_session('192.0.2.11', 623)
    with pyghmi_compat.session_policy(cipher_suite=17, allow_ipmi15=True):
        a._initsession()
    with pyghmi_compat.session_policy(cipher_suite=3):
        b._initsession()
    a._initsession()
    assert (a.attemptedhash, b.attemptedhash) == (256, 1)
    assert pyghmi_compat._policy_for(a)['allow_ipmi15'] is True
    assert pyghmi_compat._policy_for(b)['allow_ipmi15'] is False


def test_a_bmc_without_policy_gets_suite_3():
    sess = bare_session('192.0.2.99', 623)
    sess._initsession()
    assert sess.attemptedhash == 1


def test_the_policy_is_per_bmc_and_port():
    pyghmi_compat.set_session_policy('192.0.2.10', 623, cipher_suite=17)
    pyghmi_compat.set_session_policy('192.0.2.10', 6230, cipher_suite=3)
    a, b = bare_session('192.0.2.10', 623), bare_session('192.0.2.10', 6230)
    a._initsession()
    b._initsession()
    assert (a.attemptedhash, b.attemptedhash) == (256, 1)


def test_server_sessions_keep_pyghmis_choice():
    pyghmi_compat.set_session_policy('192.0.2.10', 623, cipher_suite=3)
    sess = bare_session()
    sess.servermode = True
    sess._initsession()
    assert sess.attemptedhash == 256


def test_pyghmi_still_proposes_sha256_by_itself():
    # The quirk the policy fix is for: left alone, pyghmi 1.6.19 proposes suite 17 to every BMC.
    fixed = S.Session.__dict__['_initsession']
    original = getattr(fixed, '_ingot_original', None)
    if original is None:  # the fix keeps pyghmi's function in its closure
        original = [c.cell_contents for c in fixed.__closure__
                    if getattr(c.cell_contents, '__module__', None) == 'pyghmi.ipmi.private.session'][0]
    sess = bare_session()
    original(sess)
    assert sess.attemptedhash == 256


# ---------------------------------------------------------------- IPMI 1.5 refusal
class AuthCapSession:
    """Records what pyghmi's channel auth capabilities handler does with a response."""

    def __init__(self, allow_ipmi15):
        pyghmi_compat.set_session_policy('192.0.2.20', 623, allow_ipmi15=allow_ipmi15)
        self.sess = bare_session('192.0.2.20', 623)
        self.sess.ipmi15only = 0
        self.sess.ipmiversion = 1.5
        self.events = []
        self.sess.onlogon = lambda parameter: self.events.append(('onlogon', parameter))
        self.sess._get_session_challenge = lambda: self.events.append(('ipmi15 session challenge',))
        self.sess._open_rmcpplus_request = lambda: self.events.append(('rmcp+ open session',))
        self.sess._get_channel_auth_cap = lambda: self.events.append(('ask again',))

    def feed(self, response):
        self.sess._got_channel_auth_cap(response)
        return self.events


def auth_cap(ipmi20, md5=True):
    """A Get Channel Authentication Capabilities response."""
    byte1 = (0x80 if ipmi20 else 0) | (0x04 if md5 else 0)
    byte3 = 0x02 if ipmi20 else 0
    return {'netfn': 7, 'command': 0x38, 'code': 0, 'data': bytearray([1, byte1, 0x04, byte3, 0, 0, 0, 0])}


def test_a_bmc_that_offers_only_ipmi15_is_refused():
    events = AuthCapSession(allow_ipmi15=False).feed(auth_cap(ipmi20=False))
    assert events == [('onlogon', {'error': pyghmi_compat.IPMI15_REFUSED})]


def test_a_bmc_that_rejects_the_ipmi20_request_form_is_refused():
    events = AuthCapSession(allow_ipmi15=False).feed({'netfn': 7, 'command': 0x38, 'code': 0xcc, 'data': b''})
    assert events == [('onlogon', {'error': pyghmi_compat.IPMI15_REFUSED})]


def test_with_allow_ipmi15_pyghmi_goes_on_with_ipmi15():
    events = AuthCapSession(allow_ipmi15=True).feed(auth_cap(ipmi20=False))
    assert events == [('ipmi15 session challenge',)]


def test_with_allow_ipmi15_pyghmis_own_checks_still_apply():
    events = AuthCapSession(allow_ipmi15=True).feed(auth_cap(ipmi20=False, md5=False))
    assert events == [('onlogon', {'error': 'MD5 required but not enabled/available on target BMC'})]


def test_with_allow_ipmi15_a_0xcc_makes_pyghmi_ask_again_in_ipmi15_form():
    s = AuthCapSession(allow_ipmi15=True)
    assert s.feed({'netfn': 7, 'command': 0x38, 'code': 0xcc, 'data': b''}) == [('ask again',)]
    assert s.sess.ipmi15only == 1


@pytest.mark.parametrize('allow', [False, True])
def test_an_ipmi20_bmc_goes_on_to_rmcp_plus(allow):
    s = AuthCapSession(allow_ipmi15=allow)
    assert s.feed(auth_cap(ipmi20=True)) == [('rmcp+ open session',)]
    assert s.sess.ipmiversion == 2.0


def test_errors_pass_through_to_pyghmi():
    events = AuthCapSession(allow_ipmi15=False).feed({'error': 'timeout', 'code': 0xffff})
    assert events == [('onlogon', {'error': 'timeout', 'code': 0xffff})]


# ---------------------------------------------------------------- lost wake-up (quirk 5)
class _QueuedSession:
    def __init__(self, packets):
        self.pktqueue = collections.deque(packets)


@pytest.fixture
def io_globals(monkeypatch):
    """Private copies of the pyghmi globals _io_wait touches; nobody runs pyghmi's I/O thread here."""
    monkeypatch.setattr(S, 'ioqueue', collections.deque())
    monkeypatch.setattr(S, 'sessionqueue', collections.deque())
    monkeypatch.setattr(S, 'selectdeadline', 0)
    monkeypatch.setattr(S.Session, 'bmc_handlers', {})
    yield S
    for _deadline, evt, _addr in list(S.ioqueue):
        evt.set()  # release any waiter a test left behind


def _returns_within(fn, seconds):
    start = time.monotonic()
    try:
        run_with_deadline(fn, seconds)
    except bmc._Deadline:
        return False
    return time.monotonic() - start < seconds


ADDR = ('192.0.2.30', 623)


def test_io_wait_returns_at_once_when_a_packet_is_already_queued_for_the_waiter(io_globals):
    S.Session.bmc_handlers[ADDR] = {47001: _QueuedSession([(b'\x06\x00\xff\x07', ADDR)])}
    assert _returns_within(lambda: S._io_wait(30, myaddr=ADDR), 1.0)
    assert len(S.ioqueue) == 1  # still registered; pyghmi's I/O thread drops it when it expires


def test_io_wait_still_waits_when_nothing_is_queued_for_the_waiter(io_globals):
    S.Session.bmc_handlers[ADDR] = {47001: _QueuedSession([])}
    S.Session.bmc_handlers[('192.0.2.31', 623)] = {47002: _QueuedSession([(b'pkt', ('192.0.2.31', 623))])}
    assert not _returns_within(lambda: S._io_wait(30, myaddr=ADDR), 0.2)
    S.ioqueue[0][1].set()  # the I/O thread's wake-up


def test_io_wait_without_address_returns_when_a_session_is_queued(io_globals):
    S.sessionqueue.append(_QueuedSession([(b'pkt', ADDR)]))
    assert _returns_within(lambda: S._io_wait(30), 1.0)


def test_io_wait_for_a_command_slot_is_not_short_circuited(io_globals):
    # With evq the caller waits for its turn to send, not for a packet.
    S.Session.bmc_handlers[ADDR] = {47001: _QueuedSession([(b'pkt', ADDR)])}
    evq = collections.deque()
    assert not _returns_within(lambda: S._io_wait(30, myaddr=ADDR, evq=evq), 0.2)
    assert len(evq) == 1
    evq[0].set()


def test_io_wait_wakes_itself_at_its_timeout_without_waking_the_io_thread(io_globals, monkeypatch):
    # pyghmi sent its I/O thread a datagram on nearly every wait so that the thread's select would end
    # at the waiter's deadline; the fix waits on its own timeout: no datagram, and no I/O thread needed.
    io_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    io_sock.bind(('127.0.0.1', 0))
    try:
        monkeypatch.setattr(S, 'iosockets', [io_sock])
        monkeypatch.setattr(S, 'myself', '127.0.0.1')
        monkeypatch.setattr(S, 'selectdeadline', S._monotonic_time() + 300)   # the I/O thread in a long select
        S.Session.bmc_handlers[ADDR] = {47001: _QueuedSession([])}
        start = time.monotonic()
        assert _returns_within(lambda: S._io_wait(0.2, myaddr=ADDR), 10.0)
        assert time.monotonic() - start >= 0.15
        assert _returns_within(lambda: S._io_wait(-1.0), 5.0)     # a deadline already past: no wait at all
        io_sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            io_sock.recvfrom(100)                                  # no wake-up datagram was sent
    finally:
        io_sock.close()


class _LoggingIn:
    """A client session in the middle of its login, as pyghmi's Session.__init__ loop sees it."""

    def __init__(self):
        self.allsockaddrs = [ADDR]
        self.logging = True
        self.broken = False


def test_a_thread_logging_in_waits_for_its_own_bmc_only(io_globals, monkeypatch):
    # pyghmi's _poller waits for a packet from any BMC: N threads logging in woke each other N times.
    monkeypatch.setattr(pyghmi_compat, "LOGIN_WAIT_CAP", 30.0)
    sess = _LoggingIn()
    out = {}

    def login_loop_iteration():
        pyghmi_compat._THREAD.logging_in = sess
        out['polled'] = S._poller(30)

    worker = threading.Thread(target=login_loop_iteration, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not S.ioqueue and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [entry[2] for entry in S.ioqueue] == [ADDR]          # directed at its BMC, not at any packet
    worker.join(0.2)
    assert worker.is_alive()
    # Another thread processes the last packet of this login: the waiting thread is woken at once.
    S.Session._sync_login(sess, {'success': True})
    worker.join(5.0)
    assert not worker.is_alive() and not out['polled']


def test_a_thread_not_logging_in_keeps_pyghmis_wait_for_any_packet(io_globals):
    def poll():
        pyghmi_compat._THREAD.logging_in = None
        return S._poller(30)

    S.sessionqueue.append(_QueuedSession([(b'pkt', ADDR)]))
    assert _returns_within(poll, 1.0)
    S.sessionqueue.clear()
    assert not _returns_within(poll, 0.2)
    assert [entry[2] for entry in S.ioqueue] == [None]
    S.ioqueue[0][1].set()


def test_a_login_already_over_does_not_wait(io_globals):
    sess = _LoggingIn()
    sess.logging = False

    def login_loop_iteration():
        pyghmi_compat._THREAD.logging_in = sess
        return S._poller(30)

    assert _returns_within(login_loop_iteration, 1.0)


def test_pyghmis_own_io_wait_still_sleeps_through_a_queued_packet(io_globals):
    # The quirk itself, in the installed pyghmi: if this starts returning, the fix may be obsolete.
    S.Session.bmc_handlers[ADDR] = {47001: _QueuedSession([(b'pkt', ADDR)])}
    original = S._io_wait._ingot_original
    assert not _returns_within(lambda: original(30, myaddr=ADDR), 0.2)


# ---------------------------------------------------------------- receive mode (quirk 6)
@pytest.fixture
def udp_pair():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(('127.0.0.1', 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(('127.0.0.1', 0))
    yield rx, tx
    rx.close()
    tx.close()


def test_recv_on_a_blocking_socket_with_no_data_returns_none_at_once(udp_pair):
    rx = udp_pair[0]
    rx.setblocking(True)
    start = time.monotonic()
    # a blocking receive would wait for the deadline (30 s) and raise: returning None well before it is 'at once'
    assert run_with_deadline(lambda: S._io_recvfrom(rx, 3000), 30.0) is None
    assert time.monotonic() - start < 10.0
    assert rx.getblocking() is True  # the fix never touches the shared socket's mode


def test_recv_on_a_blocking_socketpair_returns_none_at_once():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.setblocking(True)
        assert run_with_deadline(lambda: S._io_recvfrom(a, 3000), 1.0) is None
    finally:
        a.close()
        b.close()


def test_recv_returns_a_waiting_datagram(udp_pair):
    rx, tx = udp_pair
    rx.setblocking(True)
    tx.sendto(b'\x06\x00\xff\x07rest', rx.getsockname())
    select.select([rx], [], [], 1.0)
    assert run_with_deadline(lambda: S._io_recvfrom(rx, 3000), 1.0) == (b'\x06\x00\xff\x07rest', tx.getsockname())
    assert run_with_deadline(lambda: S._io_recvfrom(rx, 3000), 1.0) is None


def test_recv_unwraps_an_eventlet_style_socket(udp_pair):
    rx, tx = udp_pair

    class Green:
        fd = rx
    tx.sendto(b'data', rx.getsockname())
    select.select([rx], [], [], 1.0)
    assert S._io_recvfrom(Green(), 3000) == (b'data', tx.getsockname())


def test_pyghmis_own_recv_still_changes_the_socket_mode(udp_pair):
    # The quirk itself: pyghmi 1.6.19 flips the shared socket to non-blocking on every receive
    # (and _io_sendto flips it back from another thread).
    rx = udp_pair[0]
    rx.setblocking(True)
    assert S._io_recvfrom._ingot_original(rx, 3000) is None
    assert rx.getblocking() is False


# ---------------------------------------------------------------- warm-up before fork
def test_warm_up_opens_no_socket_session_or_thread(monkeypatch):
    # It runs in Ansible's controller before it forks: a thread, socket or session made there would be
    # inherited by every worker in a state that no longer works (no I/O thread in the child).
    threads = set(threading.enumerate())
    sockets = list(S.iosockets)
    handlers = dict(S.Session.bmc_handlers)
    opened = []
    real_socket = socket.socket
    monkeypatch.setattr(socket, 'socket', lambda *a, **k: opened.append(a) or real_socket(*a, **k))
    pyghmi_compat.warm_up()
    assert set(threading.enumerate()) == threads
    assert S.iosockets == sockets and S.Session.bmc_handlers == handlers and not opened


def _fresh_python(body):
    """Run the code ``body`` in a fresh interpreter that imports this collection; return what it printed."""
    root = os.path.abspath(os.path.join(os.path.dirname(pyghmi_compat.__file__), '..', '..', '..', '..', '..'))
    code = ('from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder\n'
            '_AnsibleCollectionFinder(paths=[%r])._install()\n' % root) + body
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_bmc_action_plugin_warms_up_when_ansible_loads_it():
    # In a fresh interpreter: the plugin's module-level code is what runs in Ansible's controller.
    printed = _fresh_python(
        'from ansible_collections.ingot.metal.plugins.module_utils import pyghmi_compat\n'
        'calls = []\n'
        'pyghmi_compat.warm_up = lambda *a, **k: calls.append(a)\n'
        'from ansible_collections.ingot.metal.plugins.plugin_utils import bmc_action\n'
        'print(len(calls))\n')
    assert printed.strip() == '1'


# ---------------------------------------------------------------- the clock
def test_pyghmis_clock_is_time_monotonic_everywhere_it_is_read():
    from pyghmi.ipmi.private import util
    assert pyghmi_compat.is_fixed(util._monotonic_time) and pyghmi_compat.is_fixed(S._monotonic_time)
    # os.times()[4] counts clock ticks (10 ms) from another origin: it would be neither this close nor this fine
    for dummy in range(3):
        assert abs(S._monotonic_time() - time.monotonic()) < 0.002
        assert abs(util._monotonic_time() - time.monotonic()) < 0.002
    assert S._monotonic_time._ingot_original() % 0.01 < 1e-6 or S._monotonic_time._ingot_original() % 0.01 > 0.01 - 1e-6


# ---------------------------------------------------------------- imports deferred
def test_importing_the_client_leaves_pyghmis_oem_code_and_redfish_client_until_used():
    printed = _fresh_python(
        'import json, sys\n'
        'from ansible_collections.ingot.metal.plugins.module_utils import bmc, pyghmi_compat\n'
        'out = {"lenovo_at_import": "pyghmi.ipmi.oem.lenovo.handler" in sys.modules,\n'
        '       "https_at_import": "pyghmi.util.webclient" in sys.modules}\n'
        'handler, known = bmc.ipmi_command.get_oem_handler({"manufacturer_id": 0, "product_id": 0}, None)\n'
        'from pyghmi.ipmi.oem import lookup\n'
        'out["generic"] = type(handler).__module__ == "pyghmi.ipmi.oem.generic" and not known\n'
        'out["real_lookup"] = 20301 in lookup.oemmap and sys.modules["pyghmi.ipmi.oem.lookup"] is lookup\n'
        'out["redfish"] = pyghmi_compat.loaded(bmc.redfish_command).Command.__module__\n'
        'out["applied"] = pyghmi_compat.applied().get("deferred_oem_lookup")\n'
        'print(json.dumps(out))\n')
    assert json.loads(printed) == {'lenovo_at_import': False, 'https_at_import': False, 'generic': True,
                                   'real_lookup': True, 'redfish': 'pyghmi.redfish.command', 'applied': True}


# ---------------------------------------------------------------- locks
def test_pyghmis_protect_is_the_lock_itself_and_still_excludes():
    from pyghmi.ipmi.private import util
    lock = threading.RLock()
    assert pyghmi_compat.is_fixed(util.protect) and util.protect(lock) is lock
    entered = threading.Event()
    with util.protect(lock):
        other = threading.Thread(target=lambda: (lock.acquire(), entered.set(), lock.release()), daemon=True)
        other.start()
        assert not entered.wait(0.2)      # held while inside the block
    assert entered.wait(5.0)              # released at its end
    # every use of protect in the pinned pyghmi is `with util.protect(...)`: none as a decorator
    root = os.path.dirname(os.path.dirname(os.path.dirname(util.__file__)))
    for folder, dummy, files in os.walk(root):
        for name in files:
            if name.endswith('.py'):
                with open(os.path.join(folder, name)) as handle:
                    for line in handle:
                        if 'protect(' in line and 'util.protect(' in line:
                            assert line.strip().startswith('with util.protect('), line


# ---------------------------------------------------------------- lock order of a retry
def _retrying_session():
    """A bare session whose next ``_timedout`` resends its last payload (pyghmi's plain retry branch)."""
    sess = bare_session()
    sess.lastpayload = b'last'
    sess.timeout = 0
    sess.maxtimeout = 5
    sess.sessioncontext = 'ESTABLISHED'
    sess.nowait = False
    return sess


def _retry_against_a_sender(timedout, monkeypatch):
    """This thread holds WAITING_SESSIONS (as wait_for_rsp and awaitresponse do) and calls ``timedout``, whose
    resend takes KEEPALIVE_SESSIONS, while another thread sends: it holds KEEPALIVE_SESSIONS and wants
    WAITING_SESSIONS (as send_payload -> _xmit_packet). Returns what each got, within 3 s each."""
    got = {}
    sender_has_keepalive = threading.Event()
    retry_resends = threading.Event()

    def resend(self, *args, **kwargs):
        got['waiting_held_while_resending'] = S.WAITING_SESSIONS._is_owned()
        retry_resends.set()
        got['retry'] = S.KEEPALIVE_SESSIONS.acquire(timeout=3)
        if got['retry']:
            S.KEEPALIVE_SESSIONS.release()
    monkeypatch.setattr(S.Session, 'send_payload', resend)

    def sender():
        with S.KEEPALIVE_SESSIONS:
            sender_has_keepalive.set()
            retry_resends.wait(3)
            got['sender'] = S.WAITING_SESSIONS.acquire(timeout=3)
            if got['sender']:
                S.WAITING_SESSIONS.release()
    t = threading.Thread(target=sender)
    t.start()
    assert sender_has_keepalive.wait(3)
    with S.WAITING_SESSIONS:
        with S.WAITING_SESSIONS:     # held twice, as wait_for_rsp inside awaitresponse may
            timedout(_retrying_session())
            got['waiting_held_after'] = S.WAITING_SESSIONS._is_owned()
    t.join(10)
    return got


def test_a_retry_lets_go_of_the_waiting_lock_while_it_resends(monkeypatch):
    got = _retry_against_a_sender(S.Session._timedout, monkeypatch)
    assert got == {'waiting_held_while_resending': False, 'retry': True, 'sender': True,
                   'waiting_held_after': True}
    assert not S.WAITING_SESSIONS._is_owned() and S.WAITING_SESSIONS.acquire(blocking=False)
    S.WAITING_SESSIONS.release()


def test_pyghmis_own_retry_still_deadlocks_against_a_sender(monkeypatch):
    """The quirk is still there: pyghmi's own _timedout resends holding WAITING_SESSIONS, so each thread waits
    for the lock the other holds. Here each gives up after 3 s (pyghmi's threads wait forever): the first to
    give up lets go of its lock and the other may then get it, but never both in time."""
    got = _retry_against_a_sender(S.Session._timedout._ingot_original, monkeypatch)
    assert got['waiting_held_while_resending'] is True
    assert not (got['retry'] and got['sender']), got
