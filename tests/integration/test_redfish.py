# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The BMC modules over Redfish, in real playbooks, against sushy-tools' emulator."""

import base64
import json
import time
import urllib.request

import pytest

from ingot_lab.runner import run_playbook

pytestmark = pytest.mark.timeout(300)


def system(sushy):
    """The emulated system as the emulator itself reports it (the real state)."""
    auth = base64.b64encode(('%s:%s' % (sushy['user'], sushy['password'])).encode()).decode()

    def get(path):
        req = urllib.request.Request('https://127.0.0.1:%d%s' % (sushy['port'], path),
                                     headers={'Authorization': 'Basic ' + auth})
        with urllib.request.urlopen(req, context=sushy['context'], timeout=5) as r:
            return json.load(r)

    member = get('/redfish/v1/Systems')['Members'][0]['@odata.id']
    return get(member)


def inventory(sushy, **extra):
    host = {'bmc_host': sushy['host'], 'bmc_port': sushy['port'], 'bmc_protocol': 'redfish',
            'bmc_user': sushy['user'], 'bmc_password': sushy['password'], 'bmc_ca_path': sushy['cert']}
    host.update(extra)
    return {'all': {'hosts': {'rf1': host}}}


def play(*tasks):
    return [{'hosts': 'all', 'gather_facts': False, 'tasks': [dict(t, delegate_to='localhost') for t in tasks]}]


def test_info_reads_what_the_emulator_reports(sushy):
    r = run_playbook(play({'name': 'info', 'ingot.metal.bmc_info': {}}), inventory(sushy))
    assert r.status == 'successful', r.stdout
    info = r.one('info').result['bmc_info']
    real = system(sushy)
    assert info['power'] == real['PowerState'].lower()
    assert info['guid'] == real['UUID']
    assert info['fru']['manufacturer'] == real.get('Manufacturer')
    assert isinstance(info['sensors'], list)


def test_power_is_declarative_and_idempotent(sushy):
    inv = inventory(sushy)
    for state in ('on', 'off', 'on'):
        task = {'name': 'power', 'ingot.metal.bmc_power': {'state': state, 'method': 'hard', 'wait_timeout': 60}}
        r = run_playbook(play(task), inv, diff=True)
        assert r.status == 'successful', r.stdout
        assert r.one('power').result['power'] == state
        assert system(sushy)['PowerState'].lower() == state
        again = run_playbook(play(task), inv)
        assert again.status == 'successful', again.stdout
        assert again.count('changed') == 0, 'second run of state=%s changed something' % state


def test_boot_persistent_and_check_mode(sushy):
    inv = inventory(sushy)
    task = {'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'pxe', 'persistent': True}}
    r = run_playbook(play(task), inv)
    assert r.status == 'successful', r.stdout
    boot = system(sushy)['Boot']
    assert boot['BootSourceOverrideTarget'] == 'Pxe'
    assert boot['BootSourceOverrideEnabled'] == 'Continuous'
    assert run_playbook(play(task), inv).count('changed') == 0

    cd = {'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'cdrom', 'persistent': True}}
    r = run_playbook(play(cd), inv, check=True, diff=True)
    assert r.status == 'successful', r.stdout
    res = r.one('boot')
    assert res.status == 'changed'
    assert res.result['diff']['after']['device'] == 'cdrom'
    assert system(sushy)['Boot']['BootSourceOverrideTarget'] == 'Pxe', 'check mode wrote to the BMC'


def test_fingerprint_pinning(sushy, tls_cert):
    good = inventory(sushy, bmc_ca_path=None, bmc_cert_fingerprint=tls_cert[2])
    r = run_playbook(play({'name': 'info', 'ingot.metal.bmc_info': {'gather': ['power']}}), good)
    assert r.status == 'successful', r.stdout
    bad = inventory(sushy, bmc_ca_path=None, bmc_cert_fingerprint='00' * 32)
    r = run_playbook(play({'name': 'info', 'ingot.metal.bmc_info': {'gather': ['power']}}), bad)
    res = r.one('info')
    assert res.status == 'failed'
    assert res.result['error_kind'] == 'certificate'
    assert 'rf1' in res.result['msg']


def test_untrusted_certificate_is_refused_by_default(sushy):
    r = run_playbook(play({'name': 'info', 'ingot.metal.bmc_info': {'gather': ['power']}}),
                     inventory(sushy, bmc_ca_path=None))
    res = r.one('info')
    assert res.status == 'failed'
    assert res.result['error_kind'] == 'certificate'
    assert 'bmc_validate_certs' in res.result['msg']


def test_wrong_password_is_clear_and_never_printed(sushy):
    wrong = 'Wr0ng-pass-XYZZY-77'
    r = run_playbook(play({'name': 'power', 'ingot.metal.bmc_power': {'state': 'on'}}),
                     inventory(sushy, bmc_password=wrong), verbosity=3)
    res = r.one('power')
    assert res.status == 'failed'
    assert res.result['error_kind'] == 'auth'
    assert 'rf1' in res.result['msg'] and 'bmc_password' in res.result['msg']
    assert wrong not in r.stdout


def test_garbage_answer_fails_clearly_within_timeout(garbage_https):
    inv = {'all': {'hosts': {'junk': {'bmc_host': garbage_https['host'], 'bmc_port': garbage_https['port'],
                                      'bmc_protocol': 'redfish', 'bmc_user': 'someone', 'bmc_password': 'Garbage-pw-1',
                                      'bmc_validate_certs': False, 'bmc_timeout': 10}}}}
    start = time.monotonic()
    r = run_playbook(play({'name': 'info', 'ingot.metal.bmc_info': {'gather': ['power']}}), inv)
    elapsed = time.monotonic() - start
    res = r.one('info')
    assert res.status == 'failed'
    assert res.result['error_kind'] == 'protocol', res.result
    assert 'junk' in res.result['msg'] and 'Redfish' in res.result['msg']
    assert elapsed < 10 + 15, 'the failure took %.1f s' % elapsed


def get_json(sushy, path):
    auth = base64.b64encode(('%s:%s' % (sushy['user'], sushy['password'])).encode()).decode()
    req = urllib.request.Request('https://127.0.0.1:%d%s' % (sushy['port'], path),
                                 headers={'Authorization': 'Basic ' + auth})
    with urllib.request.urlopen(req, context=sushy['context'], timeout=5) as r:
        return json.load(r)


def test_a_service_with_several_systems_needs_and_takes_bmc_system_id(sushy_multi):
    """Pick one system of a multi-system Redfish service, by id or by path."""
    first, second = sushy_multi['systems']
    task = {'name': 'power', 'ingot.metal.bmc_power': {'state': 'on', 'method': 'hard', 'wait_timeout': 60}}

    r = run_playbook(play(task), inventory(sushy_multi))
    res = r.one('power')
    assert res.status == 'failed'
    assert res.result['error_kind'] == 'invalid', res.result
    assert 'rf1' in res.result['msg'] and 'bmc_system_id' in res.result['msg']

    r = run_playbook(play(task), inventory(sushy_multi, bmc_system_id=second))
    assert r.status == 'successful', r.stdout
    assert r.one('power').result['power'] == 'on'
    assert get_json(sushy_multi, '/redfish/v1/Systems/%s' % second)['PowerState'] == 'On'
    assert get_json(sushy_multi, '/redfish/v1/Systems/%s' % first)['PowerState'] == 'Off'

    info = {'name': 'info', 'ingot.metal.bmc_info': {'gather': ['guid', 'power']}}
    r = run_playbook(play(info), inventory(sushy_multi, bmc_system_id='/redfish/v1/Systems/%s' % first))
    assert r.status == 'successful', r.stdout
    assert r.one('info').result['bmc_info'] == {'guid': first, 'power': 'off'}

    # the fleet form: one entry per system of the same service
    fleet = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [{
        'name': 'info', 'ingot.metal.bmc_info': {
            'gather': ['guid'], 'bmc_protocol': 'redfish', 'bmc_user': sushy_multi['user'],
            'bmc_password': sushy_multi['password'], 'bmc_ca_path': sushy_multi['cert'],
            'bmcs': [{'name': 'blade%d' % i, 'host': sushy_multi['host'], 'port': sushy_multi['port'],
                      'system_id': uuid} for i, uuid in enumerate((first, second), 1)]}}]}]
    r = run_playbook(fleet, {'all': {'hosts': {}}})
    assert r.status == 'successful', r.stdout
    got = r.one('info').result['bmcs']
    assert got['blade1']['bmc_info']['guid'] == first and got['blade2']['bmc_info']['guid'] == second
