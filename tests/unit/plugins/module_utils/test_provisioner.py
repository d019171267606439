# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ProvisionerClient: requests, retries and backoff, error mapping, paging, wait_for, comparison helpers.

``open_url`` is replaced by the in-memory provisioner of ``provisioner_fake.py``
(or, for transport failures, by functions that raise what urllib raises);
everything else is the real code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import socket
import ssl

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import SSLValidationError

from ansible_collections.ingot.metal.plugins.module_utils import provisioner as p
from ansible_collections.ingot.metal.plugins.module_utils.provisioner import ProvisionerClient, ProvisionerError
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import (
    TOKEN, URL, VirtualTime, install,
)


@pytest.fixture
def fake(monkeypatch):
    return install(monkeypatch)


def client(**kwargs):
    args = dict(token=TOKEN, retries=3, timeout=5)
    args.update(kwargs)
    return ProvisionerClient(URL, **args)


def assert_clean(err):
    for text in (str(err), err.message, repr(err), err.hint or ''):
        assert TOKEN not in text


# ---------------------------------------------------------------- requests
def test_request_sends_token_json_and_query(fake, monkeypatch):
    seen = {}
    real = fake.open_url

    def spy(url, data=None, headers=None, method=None, **kwargs):
        seen.update(url=url, data=data, headers=headers, method=method, kwargs=kwargs)
        return real(url, data=data, headers=headers, method=method, **kwargs)

    monkeypatch.setattr(p, 'open_url', spy)
    fake.add_node('n1')
    c = client()
    c.delete_node('n1', force=True)
    assert seen['method'] == 'DELETE'
    assert seen['url'] == URL + '/api/v1/nodes/n1?force=true'
    assert seen['headers']['Authorization'] == 'Bearer ' + TOKEN
    assert seen['kwargs']['timeout'] == 5.0
    assert seen['kwargs']['use_netrc'] is False        # a ~/.netrc must never replace the bearer token
    fake.add_node('n3')
    c.update_node('n3', {'pool': 'rack3'})
    assert json.loads(seen['data'].decode()) == {'pool': 'rack3'}
    assert seen['headers']['Content-Type'] == 'application/json'


def test_names_are_quoted_in_paths(fake):
    fake.add_node('odd name/1')
    node = client().get_node('odd name/1')
    assert node['name'] == 'odd name/1'
    assert fake.paths()[-1] == '/api/v1/nodes/odd%20name%2F1'


def test_missing_or_bad_url_is_clear():
    with pytest.raises(ProvisionerError) as e:
        ProvisionerClient(None)
    assert e.value.kind == p.INVALID and 'INGOT_PROVISIONER_URL' in str(e.value)
    with pytest.raises(ProvisionerError) as e:
        ProvisionerClient('10.0.0.1:8080')
    assert 'not an http:// or https:// URL' in str(e.value)


def test_connection_options_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv('INGOT_PROVISIONER_URL', 'http://from-env:1')
    monkeypatch.setenv('INGOT_PROVISIONER_TOKEN', 'tok-from-env')
    res = ArgumentSpecValidator(p.argument_spec()).validate({'validate_certs': False})
    assert not res.error_messages
    c = p.client_from_params(res.validated_parameters)
    assert (c.url, c.token, c.validate_certs, c.timeout, c.retries) == ('http://from-env:1', 'tok-from-env', False, 30.0, 3)
    assert 'tok-from-env' in res._no_log_values


# ---------------------------------------------------------------- error mapping
def test_wrong_token_is_auth_and_never_retried(fake):
    c = ProvisionerClient(URL, token='wrong-token-123', retries=3)
    with pytest.raises(ProvisionerError) as e:
        c.list_nodes()
    assert e.value.kind == p.AUTH and e.value.status == 401
    assert 'refused the credentials while listing nodes' in str(e.value)
    assert 'provisioner_token' in str(e.value)
    assert len(fake.requests) == 1


def test_not_found_names_the_node(fake):
    with pytest.raises(ProvisionerError) as e:
        client().update_node('ghost', {'pool': 'x'})
    err = e.value
    assert err.kind == p.NOT_FOUND and err.status == 404 and err.code == 'not_found'
    assert str(err).startswith('the provisioner refused updating node ghost (pool): node ghost is not registered '
                               '[HTTP 404, not_found]')
    assert 'node_info' in err.hint
    assert len(fake.requests) == 1


def test_illegal_transition_keeps_the_services_words(fake):
    fake.add_node('n1', state='ready')
    fake.add_image('debian-12')
    with pytest.raises(ProvisionerError) as e:
        client().deploy('n1', 'debian-12')
    err = e.value
    assert err.kind == p.ILLEGAL_TRANSITION
    assert 'deploying image debian-12 to node n1' in str(err)
    assert 'node n1 is ready; cannot deploy it' in str(err)
    assert err.result()['error_kind'] == 'illegal_transition' and err.result()['status'] == 409
    assert len(fake.requests) == 1


def test_no_node_available_names_the_constraints(fake):
    with pytest.raises(ProvisionerError) as e:
        client().allocate('ci', 'builder1', {'pool': 'rack3', 'tags': ['ssd'], 'min_cpus': 8})
    err = e.value
    assert err.kind == p.NO_NODE_AVAILABLE
    assert "allocating a node as 'builder1' for owner 'ci' with pool=rack3, tags=ssd, min_cpus=8" in str(err)
    assert 'relax the constraints' in str(err)


def test_validation_errors_are_readable(fake):
    with pytest.raises(ProvisionerError) as e:
        client().create_node({'name': 'n1', 'macs': []})
    assert e.value.kind == p.INVALID and e.value.status == 422
    assert 'macs: field required' in str(e.value)


def test_the_token_never_appears_even_if_the_service_echoes_it(fake, monkeypatch):
    def echo(url, **kwargs):
        raise HTTPError(url, 400, 'bad', {}, io.BytesIO(json.dumps({'detail': 'bad header Bearer %s' % TOKEN}).encode()))

    monkeypatch.setattr(p, 'open_url', echo)
    with pytest.raises(ProvisionerError) as e:
        client().health()
    assert_clean(e.value)
    assert '********' in str(e.value)


def test_an_answer_that_is_not_json(fake):
    fake.faults = ['garbage']
    with pytest.raises(ProvisionerError) as e:
        client().health()
    assert e.value.kind == p.PROTOCOL and 'not JSON' in str(e.value)


def test_error_body_that_is_not_json(monkeypatch):
    def html(url, **kwargs):
        raise HTTPError(url, 404, 'Not Found', {}, io.BytesIO(b'<h1>nginx says no</h1>'))

    monkeypatch.setattr(p, 'open_url', html)
    with pytest.raises(ProvisionerError) as e:
        client().get_image('x')
    assert '<h1>nginx says no</h1>' in str(e.value) and e.value.kind == p.NOT_FOUND


@pytest.mark.parametrize('exc, kind', [
    (SSLValidationError('certificate verify failed: self signed'), p.CERTIFICATE),
    (URLError(ssl.SSLCertVerificationError(1, 'certificate verify failed')), p.CERTIFICATE),
    (URLError(socket.gaierror(-2, 'Name or service not known')), p.UNREACHABLE),
])
def test_transport_failures(monkeypatch, exc, kind):
    calls = []

    def boom(url, **kwargs):
        calls.append(url)
        raise exc

    monkeypatch.setattr(p, 'open_url', boom)
    monkeypatch.setattr(p, 'time', VirtualTime())
    with pytest.raises(ProvisionerError) as e:
        ProvisionerClient(URL, token=TOKEN, retries=2, sleep=lambda s: None).list_nodes()
    assert e.value.kind == kind
    assert URL in str(e.value)
    if kind == p.CERTIFICATE:
        assert len(calls) == 1 and 'provisioner_ca_path' in str(e.value)


# ---------------------------------------------------------------- retries
def make_sleeper():
    sleeps = []
    return sleeps, sleeps.append


def test_get_is_retried_on_5xx_and_refusal_with_growing_backoff(fake):
    fake.add_node('n1')
    fake.faults = [503, 'refused', 500]
    sleeps, sleep = make_sleeper()
    node = ProvisionerClient(URL, token=TOKEN, retries=3, backoff=0.5, sleep=sleep).get_node('n1')
    assert node['name'] == 'n1'
    assert len(fake.requests) == 4
    assert len(sleeps) == 3
    # jittered exponential backoff: 0.5, 1, 2 scaled by [0.5, 1)
    for i, s in enumerate(sleeps):
        assert 0.25 * 2 ** i <= s <= 0.5 * 2 ** i


def test_retries_are_bounded_and_said(fake):
    fake.faults = [503] * 10
    sleeps, sleep = make_sleeper()
    with pytest.raises(ProvisionerError) as e:
        ProvisionerClient(URL, token=TOKEN, retries=2, sleep=sleep).list_nodes()
    assert len(fake.requests) == 3
    assert e.value.kind == p.SERVER and e.value.status == 503
    assert '(after 3 attempts)' in str(e.value)
    assert str(e.value).endswith('(look at the provisioner service log)')


def test_4xx_is_never_retried(fake):
    fake.faults = [409]
    with pytest.raises(ProvisionerError) as e:
        ProvisionerClient(URL, token=TOKEN, retries=5, sleep=lambda s: None).get_node('x')
    assert e.value.status == 409 and len(fake.requests) == 1


def test_a_post_is_retried_only_when_it_cannot_have_been_applied(fake):
    fake.add_image('debian-12')
    fake.add_node('n1', state='allocated', owner='ci', allocation_name='b1')
    # 500 on a deploy: it may have been applied; not sent again.
    fake.faults = [500]
    with pytest.raises(ProvisionerError) as e:
        ProvisionerClient(URL, token=TOKEN, retries=3, sleep=lambda s: None).deploy('n1', 'debian-12')
    assert e.value.status == 500 and len(fake.paths('POST')) == 1
    # A timeout while deploying: not sent again either.
    fake.faults = ['timeout']
    with pytest.raises(ProvisionerError) as e:
        ProvisionerClient(URL, token=TOKEN, retries=3, sleep=lambda s: None).deploy('n1', 'debian-12')
    assert e.value.kind == p.TIMEOUT and 'did not answer within' in str(e.value)
    assert len(fake.paths('POST')) == 2
    # Refused, 502, 503: it never reached the application; sent again.
    fake.faults = ['refused', 502, 503]
    node = ProvisionerClient(URL, token=TOKEN, retries=3, sleep=lambda s: None).deploy('n1', 'debian-12')
    assert node['state'] == 'deploying' and len(fake.paths('POST')) == 6


def test_allocation_is_idempotent_so_it_is_retried_after_a_timeout(fake):
    fake.add_node('n1')
    fake.faults = ['timeout']
    node, created = ProvisionerClient(URL, token=TOKEN, retries=1, sleep=lambda s: None).allocate('ci', 'b1')
    assert node['owner'] == 'ci' and created
    node, created = client().allocate('ci', 'b1')
    assert not created and node['name'] == 'n1'


# ---------------------------------------------------------------- paging
def test_list_nodes_pages_concurrently_without_duplicates(fake):
    for i in range(950):
        fake.add_node('n%04d' % i, pool='rack3' if i % 2 else 'rack4')
    nodes = client().list_nodes(page_size=100, concurrency=4)
    assert [n['name'] for n in nodes] == ['n%04d' % i for i in range(950)]
    gets = [q for m, path, q, b in fake.requests if path == '/api/v1/nodes']
    assert sorted(int(q['offset']) for q in gets) == list(range(0, 950, 100))
    assert all(q['limit'] == '100' for q in gets)


def test_list_nodes_follows_a_service_that_caps_the_page(fake):
    fake.max_limit = 64
    for i in range(200):
        fake.add_node('n%03d' % i)
    nodes = client().list_nodes(page_size=1000, state='ready')
    assert len(nodes) == 200 and len(set(n['id'] for n in nodes)) == 200
    assert all(q.get('state') == 'ready' for m, path, q, b in fake.requests)


def test_a_failing_page_fails_the_listing(fake):
    for i in range(300):
        fake.add_node('n%03d' % i)
    fake.faults = [None, 404]
    with pytest.raises(ProvisionerError) as e:
        client().list_nodes(page_size=100, concurrency=1)
    assert e.value.status == 404


# ---------------------------------------------------------------- waiting
def test_wait_for_returns_when_done_and_reports_progress():
    clock = VirtualTime()
    values = iter(['a', 'b', 'c', 'done'])
    seen = []
    value, waited = p.wait_for(lambda: next(values), lambda v: v == 'done', 60, 'x', progress=seen.append,
                               interval=1, clock=clock.monotonic, sleep=clock.sleep)
    assert value == 'done' and seen == ['a', 'b', 'c', 'done']
    assert clock.sleeps == [1, 1.5, 2.25]
    assert waited == sum(clock.sleeps)


def test_wait_for_is_bounded():
    clock = VirtualTime()
    with pytest.raises(ProvisionerError) as e:
        p.wait_for(lambda: 'deploying', lambda v: False, 30, 'the deploy of image x to node n1',
                   describe=lambda v: 'node n1 is %s' % v, interval=2, clock=clock.monotonic, sleep=clock.sleep)
    assert e.value.kind == p.TIMEOUT
    assert str(e.value).startswith('the deploy of image x to node n1 did not finish within 30 s; node n1 is deploying')
    assert sum(clock.sleeps) == pytest.approx(30)      # never sleeps past the deadline
    assert max(clock.sleeps) <= 10


def test_wait_for_stops_on_failure():
    clock = VirtualTime()
    with pytest.raises(ProvisionerError) as e:
        p.wait_for(lambda: 'deploy_failed', lambda v: v == 'deployed', 30, 'x',
                   failed=lambda v: 'it failed: %s' % v if v == 'deploy_failed' else None,
                   clock=clock.monotonic, sleep=clock.sleep)
    assert str(e.value) == 'it failed: deploy_failed' and clock.sleeps == []


# ---------------------------------------------------------------- comparison
NODE = {'name': 'n1', 'macs': ['02:00:00:00:00:01', '02:00:00:00:00:02'], 'pool': 'rack3', 'tags': ['ssd', 'gpu'],
        'facts': {'cpus': 4, 'memory_mib': 8192}, 'bmc': {'address': '10.0.0.1', 'port': 623, 'protocol': 'ipmi'},
        'maintenance': False, 'maintenance_reason': None, 'docker_url': None}


def test_node_changes_nothing_when_equal_up_to_order_and_case():
    desired = {'macs': ['02-00-00-00-00-02', '02:00:00:00:00:01'.upper()], 'tags': ['gpu', 'ssd', 'ssd'],
               'pool': 'rack3', 'facts': {'cpus': 4}, 'bmc': {'port': 623, 'address': None}, 'maintenance': False,
               'maintenance_reason': None, 'docker_url': None}
    assert p.node_changes(NODE, desired) == {}


def test_node_changes_only_what_differs_and_merges_dicts():
    desired = {'macs': None, 'tags': ['ssd'], 'pool': None, 'facts': {'cpus': 8, 'gpus': 1}, 'bmc': {'port': 6230},
               'maintenance': True, 'maintenance_reason': 'DIMM', 'docker_url': 'tcp://10.0.3.31:2376'}
    assert p.node_changes(NODE, desired) == {
        'tags': ['ssd'], 'facts': {'cpus': 8, 'memory_mib': 8192, 'gpus': 1},
        'bmc': {'address': '10.0.0.1', 'port': 6230, 'protocol': 'ipmi'},
        'maintenance': True, 'maintenance_reason': 'DIMM', 'docker_url': 'tcp://10.0.3.31:2376'}


def test_an_empty_docker_url_clears_it():
    assert p.node_changes(dict(NODE, docker_url='tcp://x:2376'), {'docker_url': ''}) == {'docker_url': None}
    assert p.node_changes(NODE, {'docker_url': ''}) == {}


@pytest.mark.parametrize('constraints, ok', [
    ({}, True), ({'pool': 'rack3'}, True), ({'pool': 'rack4'}, False), ({'tags': ['ssd']}, True),
    ({'tags': ['ssd', 'nvme']}, False), ({'min_cpus': 4}, True), ({'min_cpus': 5}, False),
    ({'min_memory_mib': 8192}, True), ({'min_disk_gib': 1}, False),
])
def test_satisfies(constraints, ok):
    assert p.satisfies(dict(NODE, state='ready'), constraints) is ok


def test_a_node_in_maintenance_or_not_ready_never_satisfies():
    assert not p.satisfies(dict(NODE, state='ready', maintenance=True), {})
    assert not p.satisfies(dict(NODE, state='allocated'), {})


def test_describe_node():
    assert p.describe_node(dict(NODE, state='deploy_failed', last_error='sha256 mismatch')) == \
        'node n1 is deploy_failed, last error: sha256 mismatch'
    assert p.describe_node(dict(NODE, state='ready', maintenance=True, maintenance_reason='DIMM')) == \
        'node n1 is ready (maintenance: DIMM)'
