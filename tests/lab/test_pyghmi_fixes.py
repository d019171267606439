"""The run-time fixes of pyghmi 1.6.19 as the lab applies them (plugins/module_utils/pyghmi_compat.py,
loaded by path by ingot_lab.load_pyghmi_compat; the quirk numbers are that module's).

Each quirk has a check that the patch is in place and a behavioural check that fails without it.
pyghmi's module state is per process, so the in-process checks run in fresh interpreters."""

import time

import pytest

from lab_helpers import run_python
from ingot_lab.rmcp import RmcpClient, RmcpError

SERVER_ATTRIBUTES = [
    ('ServerSession', '__init__'),
    ('ServerSession', 'create_open_session_response'),
    ('ServerSession', '_got_rmcp_openrequest'),
    ('ServerSession', '_got_rakp1'),
    ('ServerSession', '_got_rakp3'),
    ('ServerSession', 'close_server_session'),
    ('ServerSession', 'sessionless_data'),
    ('ServerSession', '_handle_ipmi_packet'),
    ('ServerSession', 'process_pktqueue'),
    ('IpmiServer', 'process_pktqueue'),
]


SHARED_FUNCTIONS = ('_io_wait', '_poller', '_io_recvfrom', '_io_graball')


def test_pinned_version_every_fix_applied_and_idempotent():
    result = run_python('''
        import json
        from pyghmi.ipmi.private import session as S, serversession as SS
        from pyghmi.ipmi import bmc
        from ingot_lab import apply_pyghmi_compat, load_pyghmi_compat
        compat = load_pyghmi_compat()
        first = apply_pyghmi_compat(compat.GROUPS)
        functions = {n: getattr(S, n) for n in %r}
        classes = {c + '.' + a: getattr(SS, c).__dict__[a] for c, a in %r}
        second = apply_pyghmi_compat(compat.GROUPS)
        attrs = {c + '.' + a: compat.is_fixed(getattr(SS, c).__dict__[a]) for c, a in %r}
        attrs['Bmc.listen'] = compat.is_fixed(bmc.Bmc.__dict__['listen'].__func__)
        print(json.dumps({
            'version': compat.pyghmi_version(), 'first': first, 'second': second,
            'shared_fixed': {n: compat.is_fixed(f) for n, f in functions.items()},
            'same_functions': (all(getattr(S, n) is f for n, f in functions.items())
                               and all(getattr(SS, k.split('.')[0]).__dict__[k.split('.')[1]] is f
                                       for k, f in classes.items())),
            'attrs': attrs}))
    ''' % (SHARED_FUNCTIONS, SERVER_ATTRIBUTES, SERVER_ATTRIBUTES))
    assert result['version'] == '1.6.19', 'pyghmi changed: re-validate the fixes, then update PYGHMI_TESTED_VERSIONS'
    assert 'untested' not in result['first']
    assert all(result['shared_fixed'].values()), result['shared_fixed']
    assert all(result['attrs'].values()), result['attrs']
    server = [k for k in result['first'] if k.startswith('server:')]
    assert len(server) == len(SERVER_ATTRIBUTES) + 1
    assert result['second'] == result['first']                  # nothing patched twice
    assert result['same_functions']


def test_other_pyghmi_versions_are_left_alone():
    result = run_python('''
        import json, warnings
        from ingot_lab import apply_pyghmi_compat, load_pyghmi_compat
        compat = load_pyghmi_compat()
        compat.pyghmi_version = lambda: '9.9.9'
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            report = apply_pyghmi_compat(compat.GROUPS)
        from pyghmi.ipmi.private import session as S, serversession as SS
        print(json.dumps({'report': report, 'wait': compat.is_fixed(S._io_wait),
                          'open': compat.is_fixed(SS.ServerSession.create_open_session_response),
                          'warnings': [str(w.message) for w in caught]}))
    ''')
    assert result['report'] == {'version': '9.9.9', 'untested': True}
    assert (result['wait'], result['open']) == (False, False)
    assert len(result['warnings']) == 1 and 'pyghmi 9.9.9 is installed' in result['warnings'][0]
    assert 'tested on pyghmi 1.6.19 only' in result['warnings'][0]


LOST_WAKEUP = '''
    import json, time
    from pyghmi.ipmi.private import session as S
    from ingot_lab import apply_pyghmi_compat, load_pyghmi_compat
    compat = load_pyghmi_compat()
    if %r:
        apply_pyghmi_compat(('client', 'io'))
    S.Session._assignsocket()          # starts pyghmi's IO thread
    time.sleep(0.1)
    S.sessionqueue.append(object())    # a packet queued just before the waiter registers
    started = time.monotonic()
    S._io_wait(1.0)
    waited = time.monotonic() - started
    started = time.monotonic()
    polled = bool(S._poller(1.0))
    print(json.dumps({'waited': waited, 'poll': time.monotonic() - started, 'polled': polled,
                      'fixed': compat.is_fixed(S._io_wait)}))
'''


def test_quirk5_lost_wakeup():
    fixed = run_python(LOST_WAKEUP % True)
    assert fixed['fixed'] and fixed['polled']
    assert fixed['waited'] < 0.2 and fixed['poll'] < 0.2
    stock = run_python(LOST_WAKEUP % False)                 # the check does see the quirk
    assert not stock['fixed'] and stock['waited'] > 0.8


def test_quirk6_receive_never_depends_on_the_socket_mode():
    result = run_python('''
        import json, socket, threading, time
        from pyghmi.ipmi.private import session as S
        from ingot_lab import apply_pyghmi_compat, load_pyghmi_compat
        compat = load_pyghmi_compat()
        apply_pyghmi_compat(('client', 'io'))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(('127.0.0.1', 0))
        sock.setblocking(True)         # as _io_sendto leaves it, from another thread
        out = {}
        worker = threading.Thread(target=lambda: out.update(result=S._io_recvfrom(sock, 100)), daemon=True)
        worker.start()
        worker.join(1.0)
        print(json.dumps({'returned': not worker.is_alive(), 'result': out.get('result'),
                          'still_blocking': sock.getblocking(), 'fixed': compat.is_fixed(S._io_recvfrom)}))
    ''')
    # stock pyghmi flips the socket to non-blocking itself: the race of quirk 6
    assert result == {'returned': True, 'result': None, 'still_blocking': True, 'fixed': True}


def test_quirk7_packets_for_a_vanished_session_go_to_the_bmc():
    result = run_python('''
        import collections, json, socket
        from pyghmi.ipmi import bmc
        from pyghmi.ipmi.private import serversession as SS
        from ingot_lab import apply_pyghmi_compat
        from ingot_lab.probe import auth_cap_request, is_auth_cap_response
        apply_pyghmi_compat(('client', 'io', 'server'))
        server = bmc.Bmc({'admin': 'pw'}, port=0, address='127.0.0.1')
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(('127.0.0.1', 0))
        client.settimeout(2)
        # a ServerSession whose client address is no longer registered, with a packet queued
        sess = SS.ServerSession.__new__(SS.ServerSession, None, None, None, None, None, None, None)
        sess.bmc = server
        sess.pktqueue = collections.deque([(auth_cap_request(), client.getsockname(), server.serversocket, True)])
        sess.process_pktqueue()        # stock: AttributeError, no attribute 'sessionless_data'
        reply = client.recv(512)
        print(json.dumps({'answered': is_auth_cap_response(reply),
                          'has_sessionless_data': 'sessionless_data' in SS.ServerSession.__dict__}))
    ''')
    assert result == {'answered': True, 'has_sessionless_data': True}


def test_quirk7_a_raising_handler_is_logged_not_fatal(lab, bmc):
    # an Open Session Request too short to parse raises inside pyghmi's handler
    with RmcpClient(bmc.host, bmc.port, timeout=0.3) as client:
        with pytest.raises(RmcpError):
            client.exchange(client._v2_packet(0x10, b'\x01\x00\x00\x00\x01\x02\x03'), lambda d: True)
    assert 'RMCP+ Open Session Request too short' in lab.logs()
    assert bmc.ipmitool('power', 'status').returncode == 0


def test_quirk1_cipher_suites(lab, bmc):
    with RmcpClient(bmc.host, bmc.port) as client:
        assert client.open_request(17)[1] == 0x11            # no cipher suite match
        assert client.open_request(0)[1] == 0x11
        assert client.open_request(3)[1] == 0x00
        session = client.open_session(bmc.user, bmc.password, suite=3)
        assert client.open_request(17)[1] == 0x11            # a refused proposal leaves the session alone
        assert session.command(0x00, 0x01)[0] == 0
        again = client.open_session(bmc.user, bmc.password)   # a new one from the same address replaces it
        assert again.command(0x00, 0x01)[0] == 0
        again.close()


def test_rakp_answers(lab, bmc):
    with RmcpClient(bmc.host, bmc.port) as client:
        with pytest.raises(RmcpError) as err:
            client.open_session('nobody', 'x')
        assert err.value.status == 0x0D                        # unauthorized name
        with pytest.raises(RmcpError) as err:
            client.open_session(bmc.user, bmc.password, rakp3_password='wrong')
        assert err.value.status == 0x0F                        # invalid integrity check value
        with pytest.raises(RmcpError) as err:
            client.open_session(bmc.user, 'wrong')
        assert err.value.status is None                        # the client saw the bad RAKP2 HMAC
        session = client.open_session(bmc.user, bmc.password, set_privilege=False)
        code, data = session.command(0x06, 0x3B, [0])          # "present level": stock raised here
        assert (code, data) == (0, bytes([2]))
        session.close()


def _active_sessions(session):
    code, data = session.command(0x06, 0x3D, [0])
    assert code == 0
    return data[2] & 0x3F


def test_quirk8_close_session_frees_it(lab, bmc):
    with RmcpClient(bmc.host, bmc.port) as a, RmcpClient(bmc.host, bmc.port) as b:
        first = a.open_session(bmc.user, bmc.password)
        second = b.open_session(bmc.user, bmc.password)
        assert _active_sessions(first) == 2
        assert second.close() == 0
        assert _active_sessions(first) == 1
        assert bmc.ipmitool('power', 'status').returncode == 0  # ipmitool closes its session too
        assert _active_sessions(first) == 1
        first.close()
        a.sock.settimeout(0.3)
        with pytest.raises(RmcpError):                          # a closed session is gone
            first.command(0x00, 0x01)


def test_quirk8_idle_sessions_expire(lab, bmc):
    lab.set_session_timeout(0.5)
    try:
        with RmcpClient(bmc.host, bmc.port) as a:
            a.open_session(bmc.user, bmc.password)            # abandoned, never closed
        time.sleep(1.6)                                      # timeout + one housekeeping round + margin
        with RmcpClient(bmc.host, bmc.port) as b:
            session = b.open_session(bmc.user, bmc.password)
            assert _active_sessions(session) == 1
            session.close()
    finally:
        lab.set_session_timeout(60)


def test_relogin_from_one_address_keeps_its_sessions_on_other_bmcs(lab, bmc):
    other = lab.unused.pop(0)
    with RmcpClient(bmc.host, bmc.port) as a:
        b = RmcpClient(other.host, other.port, sock=a.sock)    # one UDP socket, two BMCs
        session_a = a.open_session(bmc.user, bmc.password)
        session_b = b.open_session(other.user, other.password)
        assert a.sessionless_command(0x06, 0x38, [0x8E, 0x04])[0] == 0   # start of a re-login to A
        # stock pyghmi dropped every session of this address, on every BMC of the process
        assert session_b.command(0x00, 0x01)[0] == 0
        assert session_a.command(0x00, 0x01)[0] == 0


def test_server_process_runs_with_fixes_and_epoll(lab):
    for record in lab.server_records():
        assert record['pyghmi']['fixes_applied'] is True
        assert record['pyghmi']['io_worker'] == 'epoll'
        assert {'lost_wakeup', 'recv_dontwait', 'session_policy', 'graball',
                'server:ServerSession.close_server_session'} <= set(record['pyghmi']['fixes'])
