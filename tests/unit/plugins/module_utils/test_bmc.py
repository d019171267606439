# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BmcClient: retries, deadline, error mapping, secrets, boot devices, FRU, certificates.

pyghmi's ``Command`` classes are replaced by the fakes of ``tests/unit/fakes.py``
(the ``lab`` fixture); everything else is the real code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json
import os
import socket
import ssl
import threading
import time

import pytest

from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi import command as pyghmi_ipmi_command
from pyghmi.ipmi import fru as pyghmi_fru
from pyghmi.redfish.oem import generic as pyghmi_redfish_generic
from pyghmi.util import webclient as pyghmi_webclient

from ansible_collections.ingot.metal.plugins.module_utils import bmc, pyghmi_compat
from ansible_collections.ingot.metal.plugins.module_utils.bmc import (
    AUTH, CERTIFICATE, INSECURE, INVALID, PROTOCOL, TIMEOUT, UNREACHABLE, UNSUPPORTED,
    BOOT_DEVICES, BmcClient, BmcError, fleet_item_params, run_with_deadline,
)
from ansible_collections.ingot.metal.tests.unit.fakes import encode_fru

PASSWORD = 'Tr0ub4dor&3'
HOST = '10.0.0.21'


def make_client(**kwargs):
    args = dict(host=HOST, user='admin', password=PASSWORD, retries=2, timeout=5.0)
    args.update(kwargs)
    return BmcClient(**args)


def machine(lab, **kwargs):
    """A fake BMC at HOST that knows admin / PASSWORD."""
    kwargs.setdefault('password', PASSWORD)
    return lab.add(HOST, **kwargs)


class RecordingTime:
    """Stands in for the ``time`` module inside bmc.py: real clock, recorded (not slept) backoff."""

    def __init__(self):
        self.sleeps = []

    monotonic = staticmethod(time.monotonic)

    def sleep(self, seconds):
        self.sleeps.append(seconds)


@pytest.fixture
def backoff(monkeypatch):
    clock = RecordingTime()
    monkeypatch.setattr(bmc, 'time', clock)
    return clock


def assert_clean(err, client=None, password=PASSWORD):
    """The message names the BMC and never contains the password."""
    name = client.name if client is not None else err.bmc
    assert str(err).startswith('BMC %s: ' % name), str(err)
    assert err.message == str(err)
    for text in (str(err), err.message, err.hint or '', repr(err)):
        assert password not in text


# ---------------------------------------------------------------- construction
def test_client_defaults_port_and_name_by_protocol():
    ipmi = BmcClient(HOST)
    redfish = BmcClient(HOST, protocol='redfish')
    assert (ipmi.port, ipmi.name) == (623, '10.0.0.21:623')
    assert (redfish.port, redfish.name) == (443, '10.0.0.21:443')
    assert BmcClient(HOST, port=6230, name='node1').name == 'node1'


def test_client_without_host_is_invalid():
    with pytest.raises(BmcError) as e:
        BmcClient(None, name='node7')
    assert e.value.kind == INVALID
    assert str(e.value).startswith('BMC node7: ')


def test_ipmi_client_logs_in_under_its_own_session_policy(monkeypatch):
    """The cipher policy is the entry's own, not the last one set for (host, port)."""
    seen = []

    def command(**kwargs):
        policy = pyghmi_compat._THREAD.policy
        seen.append((kwargs['port'], policy))
        return object()

    monkeypatch.setattr(bmc.ipmi_command, 'Command', command)
    a = BmcClient('10.0.0.31', cipher_suite=17, allow_ipmi15=True, min_command_interval=0)
    b = BmcClient('10.0.0.31', cipher_suite=3, min_command_interval=0)   # same BMC, another entry
    a.call('testing', lambda c: None)
    b.call('testing', lambda c: None)
    assert seen == [(623, {'hash': 256, 'allow_ipmi15': True}), (623, {'hash': 1, 'allow_ipmi15': False})]
    assert ('10.0.0.31', 623) not in pyghmi_compat._POLICY
    assert getattr(pyghmi_compat._THREAD, 'policy', None) is None


# ---------------------------------------------------------------- retries
RETRYABLE = [
    pytest.param(pyghmi_exc.IpmiException('timeout'), id='ipmi-timeout'),
    pytest.param(pyghmi_exc.IpmiException('Session no longer connected'), id='session-lost'),
    pytest.param(ConnectionRefusedError(111, 'Connection refused'), id='connection-refused'),
    pytest.param(socket.timeout('timed out'), id='socket-timeout'),
    pytest.param(OSError(113, 'No route to host'), id='no-route'),
]


@pytest.mark.parametrize('failure', RETRYABLE)
def test_call_retries_a_lost_exchange_then_succeeds(lab, backoff, failure):
    m = machine(lab, power='on')
    m.login_errors = [failure, failure]
    client = make_client(retries=2)
    assert client.get_power() == 'on'
    assert m.logins == 3
    assert len(backoff.sleeps) == 2


@pytest.mark.parametrize('failure', RETRYABLE)
def test_call_gives_up_after_the_retries_with_the_kind_of_the_last_failure(lab, backoff, failure):
    m = machine(lab)
    m.login_error = failure
    client = make_client(retries=2)
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind == UNREACHABLE
    assert '(after 3 attempts)' in str(e.value)
    assert m.logins == 3
    assert_clean(e.value, client)


def test_call_backs_off_exponentially_with_jitter_and_a_cap(lab, backoff, monkeypatch):
    machine(lab).login_error = pyghmi_exc.IpmiException('timeout')
    monkeypatch.setattr(bmc.random, 'random', lambda: 1.0)  # the top of the jitter range
    with pytest.raises(BmcError):
        make_client(retries=6, timeout=60).get_power()
    assert backoff.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0])

    backoff.sleeps[:] = []
    monkeypatch.setattr(bmc.random, 'random', lambda: 0.0)  # the bottom: half the step
    with pytest.raises(BmcError):
        make_client(retries=3, timeout=60).get_power()
    assert backoff.sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_call_retries_zero_means_one_attempt(lab, backoff):
    m = machine(lab)
    m.login_error = pyghmi_exc.IpmiException('timeout')
    with pytest.raises(BmcError) as e:
        make_client(retries=0).get_power()
    assert m.logins == 1
    assert backoff.sleeps == []
    assert 'attempts' not in str(e.value)


@pytest.mark.parametrize('text', ['Incorrect password provided', 'Unauthorized name in RAKP2'])
def test_auth_failures_are_never_retried(lab, backoff, text):
    m = machine(lab)
    m.login_error = pyghmi_exc.IpmiException(text)
    client = make_client(retries=5)
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind == AUTH
    assert m.logins == 1
    assert backoff.sleeps == []
    assert "user 'admin'" in str(e.value)
    assert 'bmc_password' in e.value.hint
    assert_clean(e.value, client)


def test_wrong_credentials_against_the_fake_bmc_are_auth_failures(lab, backoff):
    machine(lab, user='admin', password='right')
    with pytest.raises(BmcError) as e:
        make_client(password='wrong').get_power()
    assert e.value.kind == AUTH
    with pytest.raises(BmcError) as e:
        make_client(user='nobody', password='right').get_power()
    assert e.value.kind == AUTH


def test_a_failed_exchange_drops_the_session_and_logs_in_again(lab, backoff):
    m = machine(lab, power='off')
    client = make_client()
    assert client.get_power() == 'off'
    m.errors['xraw_command'] = pyghmi_exc.IpmiException('Session no longer connected')
    with pytest.raises(BmcError):
        client.get_power()
    del m.errors['xraw_command']
    assert client.get_power() == 'off'
    # one login; three attempts on the broken session, the first reusing it; one login again
    assert m.logins == 1 + 2 + 1


# ---------------------------------------------------------------- deadline
def test_run_with_deadline_returns_the_result_and_raises_the_error():
    assert run_with_deadline(lambda: 42, 1.0) == 42
    with pytest.raises(KeyError):
        run_with_deadline(lambda: {}['missing'], 1.0)


def test_run_with_deadline_gives_up_on_a_function_that_never_returns():
    never = threading.Event()
    start = time.monotonic()
    try:
        with pytest.raises(bmc._Deadline):
            run_with_deadline(never.wait, 0.2)
        # generous: it proves the call was given up (it never returns), not how fast on a busy machine
        assert time.monotonic() - start < 10.0
    finally:
        never.set()


def test_run_with_deadline_reuses_its_threads():
    first = run_with_deadline(threading.current_thread, 5.0)
    assert run_with_deadline(threading.current_thread, 5.0) is first   # (an ident may be reused; a Thread is not)
    assert run_with_deadline(threading.current_thread, 5.0, name='bmc-node7').name == 'bmc-node7'


def test_run_with_deadline_never_hands_a_call_to_a_thread_still_busy_with_one_it_gave_up():
    never = threading.Event()
    try:
        with pytest.raises(bmc._Deadline):
            run_with_deadline(never.wait, 0.1)
        assert run_with_deadline(lambda: 42, 5.0) == 42   # another thread: the first one still waits
    finally:
        never.set()


def _run_with_deadline_in_a_forked_child(seconds=30):
    """Fork; the child calls run_with_deadline once. True when it got the result, False when it failed or hung."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if run_with_deadline(lambda: 42, 5.0) == 42 else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + seconds
    done, status = os.waitpid(pid, os.WNOHANG)
    while not done and time.monotonic() < deadline:
        time.sleep(0.05)
        done, status = os.waitpid(pid, os.WNOHANG)
    if not done:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return False
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_run_with_deadline_works_in_a_forked_child_after_the_parent_used_it():
    # Ansible forks its workers from a process that may have used it (the inventory plugin): the
    # parent's idle threads are not in the child.
    run_with_deadline(lambda: None, 5.0)
    assert _run_with_deadline_in_a_forked_child()


def test_run_with_deadline_works_in_a_child_forked_while_another_thread_held_its_lock():
    pool = bmc._RUNNERS
    holding, release = threading.Event(), threading.Event()

    def hold():
        with pool._lock:
            holding.set()
            release.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    assert holding.wait(5)
    try:
        assert _run_with_deadline_in_a_forked_child(), 'the child hung on a lock held at the fork'
    finally:
        release.set()


def test_call_gives_up_at_the_deadline_with_kind_timeout(lab):
    machine(lab)
    never = threading.Event()
    client = make_client(timeout=0.3)
    start = time.monotonic()
    try:
        with pytest.raises(BmcError) as e:
            client.call('reading the power state', lambda c: never.wait())
    finally:
        never.set()
    elapsed = time.monotonic() - start
    assert e.value.kind == TIMEOUT
    assert 0.25 <= elapsed < 10.0   # given up (the call never returns); no tight bound on a busy machine
    assert 'within 0.3 s while reading the power state' in str(e.value)
    assert 'bmc_timeout' in e.value.hint
    assert_clean(e.value, client)


def test_a_login_that_never_returns_times_out(lab):
    machine(lab).hang = True
    client = make_client(timeout=0.3, retries=5)
    start = time.monotonic()
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind == TIMEOUT
    assert time.monotonic() - start < 10.0   # the login never returns: given up, not waited for
    assert client._cmd is None


def test_the_deadline_bounds_the_retries_too(lab):
    m = machine(lab)
    m.login_error = pyghmi_exc.IpmiException('timeout')
    client = make_client(timeout=0.4, retries=100)
    start = time.monotonic()
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind == TIMEOUT
    assert time.monotonic() - start < 10.0
    assert 1 < m.logins < 100   # the deadline, not the retry count, ended it


# ---------------------------------------------------------------- error mapping
class _CertError(ssl.SSLCertVerificationError):
    def __init__(self):
        super(_CertError, self).__init__(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')
        self.verify_message = 'self-signed certificate'


def _bad_json():
    try:
        json.loads('<html>%s</html>' % PASSWORD)
    except ValueError as e:
        return e


# (exception whose text carries the password where it can, kind, retryable)
CLASSIFY = [
    pytest.param(pyghmi_exc.IpmiException('Incorrect password provided (%s)' % PASSWORD), AUTH, False, id='auth-password'),
    pytest.param(pyghmi_exc.IpmiException('Unauthorized name in RAKP2'), AUTH, False, id='auth-name'),
    pytest.param(pyghmi_exc.PyghmiException('/redfish/v1/SessionService/Sessions:401 Unauthorized'), AUTH, False,
                 id='auth-redfish-401'),
    pytest.param(pyghmi_exc.IpmiException('timeout'), UNREACHABLE, True, id='unreachable-timeout'),
    pytest.param(pyghmi_exc.IpmiException('Session no longer connected'), UNREACHABLE, True, id='unreachable-session'),
    pytest.param(pyghmi_exc.IpmiException(None), UNREACHABLE, True, id='unreachable-no-reason'),
    pytest.param(ConnectionRefusedError(111, 'Connection refused'), UNREACHABLE, True, id='unreachable-refused'),
    pytest.param(OSError(113, 'No route to host %s' % PASSWORD), UNREACHABLE, True, id='unreachable-oserror'),
    pytest.param(pyghmi_exc.IpmiException('Invalid command %s' % PASSWORD, code=0xc1), UNSUPPORTED, False,
                 id='unsupported-0xc1'),
    pytest.param(pyghmi_exc.IpmiException('Invalid data field in request', code=0xcc), UNSUPPORTED, False,
                 id='unsupported-0xcc'),
    pytest.param(pyghmi_exc.IpmiException('No Cipher suite match with proposed security algorithms in RAKP2'),
                 UNSUPPORTED, False, id='unsupported-cipher-suite'),
    pytest.param(pyghmi_exc.IpmiException(pyghmi_compat.IPMI15_REFUSED), INSECURE, False, id='insecure-ipmi15'),
    pytest.param(ValueError('not a number: %s' % PASSWORD), PROTOCOL, False, id='protocol-valueerror'),
    pytest.param(_bad_json(), PROTOCOL, False, id='protocol-garbage-json'),
    pytest.param(pyghmi_exc.PyghmiException('Redfish not ready'), PROTOCOL, False, id='protocol-redfish-not-ready'),
    pytest.param(pyghmi_exc.UnrecognizedCertificate('Unknown certificate', b'der'), CERTIFICATE, False,
                 id='certificate-pinned'),
    pytest.param(_CertError(), CERTIFICATE, False, id='certificate-untrusted'),
    pytest.param(RuntimeError('something odd: %s' % PASSWORD), PROTOCOL, False, id='other'),
]


@pytest.mark.parametrize('exc, kind, retryable', CLASSIFY)
def test_classify(exc, kind, retryable):
    client = make_client()
    got_kind, message, hint, got_retryable = client._classify(exc, 'reading the power state')
    assert (got_kind, got_retryable) == (kind, retryable)
    assert PASSWORD not in message
    assert PASSWORD not in (hint or '')


@pytest.mark.parametrize('exc, kind, retryable', CLASSIFY)
def test_every_failure_names_the_bmc_and_never_the_password(lab, backoff, exc, kind, retryable):
    machine(lab).login_error = exc
    client = make_client(retries=0, name='node1 (10.0.0.21:623)')
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind == kind
    assert e.value.bmc == 'node1 (10.0.0.21:623)'
    assert_clean(e.value, client)


def test_the_ipmi15_refusal_reaches_the_user_unchanged(lab, backoff):
    machine(lab).login_error = pyghmi_exc.IpmiException(pyghmi_compat.IPMI15_REFUSED)
    with pytest.raises(BmcError) as e:
        make_client().get_power()
    assert e.value.kind == INSECURE
    assert 'bmc_allow_ipmi15=true' in str(e.value)


def test_unsupported_names_the_completion_code(lab, backoff):
    machine(lab).errors['xraw_command'] = pyghmi_exc.IpmiException('Invalid command', code=0xc1)
    with pytest.raises(BmcError) as e:
        make_client().device_id()
    assert e.value.kind == UNSUPPORTED
    assert 'completion code 0xc1' in str(e.value)
    assert 'reading the device id' in str(e.value)


def test_a_401_inside_another_word_is_not_an_auth_failure():
    exc = pyghmi_exc.PyghmiException('/redfish/v1/Chassis/1401/Sensors:{"error": "Internal Server Error"}')
    assert make_client(protocol='redfish')._classify(exc, 'reading the sensors')[0] != AUTH


def test_pyghmi_unsupported_functionality_is_unsupported():
    exc = pyghmi_exc.UnsupportedFunctionality('Retrieving sensors is not implemented for this platform')
    assert make_client(protocol='redfish')._classify(exc, 'reading the sensors')[0] == UNSUPPORTED


def test_password_in_a_bytes_repr_is_hidden_too(lab, backoff):
    machine(lab).login_error = ValueError("bad frame from password=b'%s'" % PASSWORD)
    with pytest.raises(BmcError) as e:
        make_client().get_power()
    assert_clean(e.value)


# ---------------------------------------------------------------- reads through the fake pyghmi
def test_power_reads_and_requests(lab):
    m = machine(lab, power='off')
    client = make_client()
    assert client.get_power() == 'off'
    client.power('on')
    assert client.get_power() == 'on'
    sent = [c[3] for c in m.calls if c[0] == 'xraw_command' and c[1:3] == (0, 2)]
    assert sent == [(1,)]
    for action, code in (('shutdown', 5), ('cycle', 2), ('reset', 3), ('off', 0)):
        client.power(action)
        assert [c[3] for c in m.calls if c[0] == 'xraw_command' and c[1:3] == (0, 2)][-1] == (code,)
    assert client.get_power() == 'off'


def test_wait_power_polls_until_the_state_is_reached(lab):
    machine(lab, power='on')
    client = make_client()
    assert client.wait_power('on', 5) < 0.1


def test_wait_power_times_out_with_a_clear_error(lab):
    machine(lab, power='on')
    client = make_client()
    with pytest.raises(BmcError) as e:
        client.wait_power('off', 0.2, interval=0.05)
    assert e.value.kind == TIMEOUT
    assert "power did not reach 'off' within 0.2 s" in str(e.value)


def test_device_id_and_guid(lab):
    m = machine(lab)
    client = make_client()
    assert client.device_id() == {
        'device_id': 0x20, 'device_revision': 1, 'firmware_version': '1.02', 'ipmi_version': '2.0',
        'manufacturer_id': 0x000157, 'product_id': 0x1234}
    assert client.guid() == str(m.guid)


def test_sensors(lab):
    machine(lab)
    sensors = make_client().sensors()
    assert sensors[0] == {'name': 'CPU Temp', 'type': 'Temperature', 'value': 41.0, 'unit': '°C',
                          'health': '0', 'states': []}
    assert [s['name'] for s in sensors] == ['CPU Temp', 'Fan 1']


def test_close_logs_out_once(lab):
    m = machine(lab)
    client = make_client()
    client.get_power()
    client.close()
    client.close()
    assert [c for c in m.calls if c[0] == 'logout'] == [('logout',)]
    assert client._cmd is None


# ---------------------------------------------------------------- boot devices
def test_boot_devices_map_both_ways():
    for device in BOOT_DEVICES:
        assert bmc._BOOT_FROM_PYGHMI[bmc._BOOT_TO_PYGHMI[device]] == device


def test_every_name_sent_to_pyghmi_is_one_pyghmi_accepts():
    for name in bmc._BOOT_TO_PYGHMI.values():
        assert name in pyghmi_ipmi_command.boot_devices
        assert name in pyghmi_redfish_generic.boot_devices_write


def test_every_name_pyghmi_reports_maps_to_ours():
    ipmi_names = [v for k, v in pyghmi_ipmi_command.boot_devices.items() if isinstance(k, int)]
    for name in ipmi_names + ['default']:
        assert bmc._BOOT_FROM_PYGHMI[name] in BOOT_DEVICES + ('usb',)
    known = set(BOOT_DEVICES + ('usb',))
    for name in pyghmi_redfish_generic.boot_devices_read.values():
        if name != 'sdcard':
            assert bmc._BOOT_FROM_PYGHMI[name] in known, name


@pytest.mark.parametrize('device, uefi', [('pxe', True), ('disk', False), ('cdrom', True), ('bios', False)])
def test_get_and_set_boot_over_ipmi(lab, device, uefi):
    m = machine(lab)
    client = make_client()
    assert client.get_boot() == {'device': 'default', 'persistent': True, 'uefi': None}
    client.set_boot(device, persistent=True, uefi=uefi)
    assert [c for c in m.calls if c[0] == 'set_bootdev'] == [('set_bootdev', bmc._BOOT_TO_PYGHMI[device], True, uefi)]
    assert client.get_boot() == {'device': device, 'persistent': True, 'uefi': uefi}


def test_set_boot_ipmi_sends_a_bool_for_uefi(lab):
    m = machine(lab)
    make_client().set_boot('pxe', persistent=False, uefi=None)
    assert [c for c in m.calls if c[0] == 'set_bootdev'] == [('set_bootdev', 'network', False, False)]


def test_set_boot_refuses_an_unknown_device_without_contacting_the_bmc(lab):
    m = machine(lab)
    with pytest.raises(BmcError) as e:
        make_client().set_boot('floppy')
    assert e.value.kind == INVALID
    assert 'pxe, disk, cdrom, bios, default' in e.value.hint
    assert m.calls == []


def test_an_unknown_boot_device_number_is_reported_as_is(monkeypatch):
    class Command:
        def get_bootdev(self):
            return {'bootdev': 9, 'persistent': False, 'uefimode': False}  # pyghmi: a number it has no name for
    client = make_client()
    monkeypatch.setattr(client, '_new_command', Command)
    assert client.get_boot() == {'device': '9', 'persistent': False, 'uefi': False}


# ---------------------------------------------------------------- FRU
def pyghmi_fru_info(product_extra=(), board_extra=()):
    """What pyghmi 1.6.19 makes of a FRU device 0: decoded by pyghmi's own parser."""
    raw = encode_fru(['Ingot', 'Lab Server', 'LS-1', '1.0', 'SN-0001', 'ASSET-7'],
                     ['Ingot Boards', 'LB-1', 'BSN-0001', 'LB'],
                     product_extra=product_extra, board_extra=board_extra)
    return pyghmi_fru.FRU(rawdata=raw).info


def test_pyghmi_names_the_custom_fields_product_extra():
    # The contract _normalise_fru has to read: pyghmi's keys, not ipmitool's labels.
    info = pyghmi_fru_info(product_extra=['MAC:02:00:0A:FB:00:11'])
    assert info['product_extra'] == ['MAC:02:00:0A:FB:00:11']
    assert 'Product Extra' not in info


def test_normalise_fru_fields():
    fru = bmc._normalise_fru(pyghmi_fru_info())
    assert fru['manufacturer'] == 'Ingot'
    assert fru['product'] == 'Lab Server'
    assert fru['serial'] == 'SN-0001'
    assert fru['part_number'] == 'LS-1'
    assert fru['version'] == '1.0'
    assert fru['asset_tag'] == 'ASSET-7'
    assert fru['board'] == {'manufacturer': 'Ingot Boards', 'product': 'LB-1', 'serial': 'BSN-0001',
                            'part_number': 'LB'}
    assert fru['macs'] == []


def test_normalise_fru_of_an_empty_fru():
    fru = bmc._normalise_fru({})
    assert fru['macs'] == [] and fru['extra'] == []
    assert fru['manufacturer'] is None and fru['board']['serial'] is None


def test_normalise_fru_falls_back_to_the_board_area():
    fru = bmc._normalise_fru({'Board manufacturer': b'Ingot ', 'Board product name': 'LB-1',
                              'Board serial number': 'BSN-1', 'Board model': 'LB'})
    assert (fru['manufacturer'], fru['product'], fru['serial'], fru['part_number']) == ('Ingot', 'LB-1', 'BSN-1', 'LB')


def test_normalise_fru_extracts_macs_from_product_extra_custom_fields():
    fru = bmc._normalise_fru(pyghmi_fru_info(product_extra=['MAC:02:00:0A:FB:00:11', 'MAC:02:00:0a:fb:00:12']))
    assert fru['macs'] == ['02:00:0a:fb:00:11', '02:00:0a:fb:00:12']
    assert fru['extra'] == ['MAC:02:00:0A:FB:00:11', 'MAC:02:00:0a:fb:00:12']


def test_normalise_fru_macs_are_lower_cased_and_deduplicated_across_areas():
    fru = bmc._normalise_fru(pyghmi_fru_info(
        product_extra=['MAC:02:00:0A:FB:00:11', 'note: no mac here', 'MAC:02:00:0a:fb:00:11'],
        board_extra=['MAC:02:00:0A:FB:00:11', 'MAC:02:00:0A:FB:00:13']))
    assert fru['macs'] == ['02:00:0a:fb:00:11', '02:00:0a:fb:00:13']
    assert 'note: no mac here' in fru['extra']


def test_normalise_fru_ignores_longer_hex_strings():
    fru = bmc._normalise_fru(pyghmi_fru_info(product_extra=['WWN:50:01:43:80:12:34:56:78', 'MAC:02:00:0a:fb:00:11']))
    assert fru['macs'] == ['02:00:0a:fb:00:11']


def test_ipmi_macs_come_from_the_fru(lab):
    machine(lab)  # product_extra: MAC:02:00:0A:FB:00:11, MAC:02:00:0a:fb:00:12
    client = make_client()
    assert client.macs() == ['02:00:0a:fb:00:11', '02:00:0a:fb:00:12']


def test_redfish_macs_are_the_host_nic_macs(lab):
    m = machine(lab, protocol='redfish')
    m.host_macs = ['02:00:0A:FB:00:21', '02:00:0a:fb:00:22']
    m.bmc_nics = ['eth0']
    client = make_client(protocol='redfish', validate_certs=False)
    assert client.macs() == ['02:00:0a:fb:00:21', '02:00:0a:fb:00:22']


def test_redfish_fru_from_the_system_resource(lab):
    machine(lab, protocol='redfish')
    fru = make_client(protocol='redfish', validate_certs=False).fru()
    assert fru == {'manufacturer': 'Ingot', 'product': 'Lab Server', 'serial': 'SN-10.0.0.21',
                   'part_number': 'LS-1', 'extra': []}


# ---------------------------------------------------------------- fleet entries
def test_fleet_item_params_merges_an_entry_over_the_task_options():
    defaults = {'bmc_user': 'admin', 'bmc_password': 'shared', 'bmc_port': None, 'bmc_protocol': 'ipmi',
                'state': 'on', 'bmcs': [{'host': 'x'}], 'bmc_concurrency': 8}
    item = {'name': 'node2', 'host': '10.0.0.22', 'port': 6230, 'password': None, 'user': 'root'}
    assert fleet_item_params(item, defaults) == {
        'bmc_user': 'root', 'bmc_password': 'shared', 'bmc_port': 6230, 'bmc_protocol': 'ipmi',
        'bmc_host': '10.0.0.22', 'bmc_concurrency': 8}


def test_fleet_item_params_leaves_the_defaults_alone():
    defaults = {'bmc_user': 'admin'}
    fleet_item_params({'host': 'h', 'user': 'other'}, defaults)
    assert defaults == {'bmc_user': 'admin'}


# ---------------------------------------------------------------- Redfish certificates
DER = b'0\x82\x01\x0a certificate bytes'


def test_pinned_fingerprint_accepts_the_matching_certificate_only():
    digest = hashlib.sha256(DER).hexdigest().upper()
    colons = ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))
    for fingerprint in (digest, colons, ' %s ' % digest.lower()):
        verify = make_client(protocol='redfish', cert_fingerprint=fingerprint)._verify_callback()
        assert verify(DER) is True
        assert verify(DER + b'x') is False
        assert verify(b'') is False


def test_pinned_fingerprint_still_applies_with_validate_certs_false():
    verify = make_client(protocol='redfish', validate_certs=False,
                         cert_fingerprint=hashlib.sha256(DER).hexdigest())._verify_callback()
    assert verify(DER) is True
    assert verify(b'another certificate') is False


def test_validate_certs_false_accepts_any_certificate():
    verify = make_client(protocol='redfish', validate_certs=False)._verify_callback()
    assert verify(DER) is True
    assert verify(b'anything') is True


def test_default_policy_is_pyghmis_standard_verification():
    assert make_client(protocol='redfish')._verify_callback() is None
    # and None does mean CA + hostname verification in pyghmi's web client
    conn = pyghmi_webclient.SecureHTTPConnection('bmc.example', 443, verifycallback=None)
    assert conn.cert_reqs == ssl.CERT_REQUIRED


def test_redfish_login_gets_the_verify_callback(lab):
    machine(lab, protocol='redfish', power='on')
    fingerprint = hashlib.sha256(HOST.encode('ascii')).hexdigest()  # the fake BMC presents its host as "DER"
    client = make_client(protocol='redfish', cert_fingerprint=fingerprint)
    assert client.get_power() == 'on'
    assert lab.commands[0][1]['verifycallback'](HOST.encode('ascii')) is True


def test_redfish_certificate_mismatch_is_a_certificate_error_not_retried(lab, backoff):
    m = machine(lab, protocol='redfish')
    client = make_client(protocol='redfish', cert_fingerprint='00' * 32, retries=3)
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind == CERTIFICATE
    assert 'bmc_cert_fingerprint' in e.value.hint
    assert m.logins == 1
    assert_clean(e.value, client)


@pytest.fixture(scope='module')
def tls_server(tmp_path_factory):
    """A local TLS server with a self-signed certificate for 127.0.0.1, and that certificate's files."""
    pytest.importorskip('cryptography')
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    def self_signed(cn):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    d = tmp_path_factory.mktemp('tls')
    key, cert = self_signed('bmc')
    other = self_signed('another-ca')[1]
    (d / 'key.pem').write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    (d / 'cert.pem').write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / 'other.pem').write_bytes(other.public_bytes(serialization.Encoding.PEM))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(d / 'cert.pem'), str(d / 'key.pem'))
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield {'port': listener.getsockname()[1], 'ca': str(d / 'cert.pem'), 'other_ca': str(d / 'other.pem'),
           'der': cert.public_bytes(serialization.Encoding.DER)}
    stop.set()
    listener.close()


def test_ca_path_trusted_certificate_is_pinned_for_pyghmi(tls_server):
    client = BmcClient('127.0.0.1', port=tls_server['port'], protocol='redfish', ca_path=tls_server['ca'], timeout=5)
    verify = client._verify_callback()
    assert verify(tls_server['der']) is True
    assert verify(DER) is False


def test_ca_path_untrusted_certificate_is_a_certificate_error(tls_server):
    client = BmcClient('127.0.0.1', port=tls_server['port'], protocol='redfish', ca_path=tls_server['other_ca'],
                       timeout=5, password=PASSWORD)
    with pytest.raises(BmcError) as e:
        client._verify_callback()
    assert e.value.kind == CERTIFICATE
    assert tls_server['other_ca'] in str(e.value)
    assert_clean(e.value, client)


def test_ca_path_with_nothing_listening_is_unreachable(tls_server):
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    client = BmcClient('127.0.0.1', port=port, protocol='redfish', ca_path=tls_server['ca'], timeout=2)
    with pytest.raises(BmcError) as e:
        client._verify_callback()
    assert e.value.kind == UNREACHABLE
    assert 'cannot open HTTPS to 127.0.0.1:%d' % port in str(e.value)


def test_a_missing_ca_file_is_reported_as_such_and_not_retried(lab, backoff, tmp_path):
    m = machine(lab, protocol='redfish')
    missing = str(tmp_path / 'no-such-ca.pem')
    client = make_client(protocol='redfish', ca_path=missing, retries=3)
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind in (INVALID, CERTIFICATE)
    assert missing in str(e.value)
    assert backoff.sleeps == []
    assert m.logins == 0


def test_a_login_that_finishes_after_the_deadline_is_logged_out(monkeypatch):
    """The session of a late login is ended, not left holding a BMC session slot."""
    logged_out = threading.Event()
    made = []

    class Session:
        def logout(self):
            logged_out.set()
            return {'success': True}

    class Command:
        def __init__(self, **kwargs):
            time.sleep(0.6)             # the login finishes, but after the caller's deadline
            self.ipmi_session = Session()
            made.append(self)

    monkeypatch.setattr(bmc.ipmi_command, 'Command', Command)
    client = make_client(timeout=0.2, retries=0, min_command_interval=0)
    with pytest.raises(BmcError) as e:
        client.get_power()
    assert e.value.kind == TIMEOUT
    assert logged_out.wait(5.0), 'the late session was never logged out'
    assert len(made) == 1 and client._cmd is None


def test_a_command_that_finishes_after_the_deadline_logs_its_session_out(monkeypatch):
    logged_out = threading.Event()

    class Session:
        def logout(self):
            logged_out.set()

    class Command:
        def __init__(self, **kwargs):
            self.ipmi_session = Session()

        def xraw_command(self, **kwargs):
            time.sleep(0.6)
            return {'data': b'\x01'}

    monkeypatch.setattr(bmc.ipmi_command, 'Command', Command)
    client = make_client(timeout=0.2, retries=0, min_command_interval=0)
    with pytest.raises(BmcError):
        client.get_power()
    assert logged_out.wait(5.0)
    assert client._cmd is None
