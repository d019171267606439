# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test doubles for the provisioner client, its modules and the inventory plugin.

* :class:`FakeProvisioner` is the provisioner API of docs/provisioner-api.md
  in memory (registry, state machine, allocations, images, events) behind a
  replacement for ``open_url``: the real ``ProvisionerClient`` (retries, error
  mapping, paging) runs on top of it. Faults are injected per request.
* :func:`run_module` runs a module's ``main()`` with arguments, check mode and
  diff, and returns its result (the ``AnsibleExitJson`` / ``AnsibleFailJson``
  pattern).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import io
import json
import socket
import uuid

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import parse_qs, unquote, urlparse

TOKEN = 'adm1n-t0ken-s3cret'
URL = 'http://provisioner.test:8080'

# The node lifecycle, action -> {state: new state}: the actions and states of the service's state machine
# (test_state_contract.py fails when the two differ). Every state change of the fake goes through it.
TRANSITIONS = {
    'enroll': {'discovered': 'ready'},                  # POST /nodes/{id}/enroll
    'allocate': {'ready': 'allocated'},                 # POST /allocations
    'deploy': {'allocated': 'deploying', 'deploy_failed': 'deploying'},
    'release': {'allocated': 'ready', 'deploying': 'releasing', 'deployed': 'releasing', 'deploy_failed': 'releasing',
                'release_failed': 'releasing'},         # POST /nodes/{id}/release {"wipe": true}
    'release_nowipe': {'allocated': 'ready'},           # POST /nodes/{id}/release {"wipe": false}
    'agent_succeeded': {'deploying': 'deployed', 'releasing': 'ready'},         # finish(ok=True)
    'agent_failed': {'deploying': 'deploy_failed', 'releasing': 'release_failed'},  # finish(ok=False)
    'timeout': {'deploying': 'deploy_failed', 'releasing': 'release_failed'},   # expire()
}
# States whose node is deleted without force.
DELETABLE = ('discovered', 'ready')


class FakeResponse:
    def __init__(self, status, body):
        self.status = status
        self._body = body

    def getcode(self):
        return self.status

    def read(self):
        return self._body

    def close(self):
        pass


class Refused(Exception):
    pass


class FakeProvisioner:
    """The provisioner's admin API in memory, reached through :meth:`open_url`."""

    def __init__(self, token=TOKEN, url=URL):
        self.token = token
        self.url = url
        self.nodes = {}          # id -> record
        self.images = {}         # name -> entry
        self.events = {}         # id -> [event]
        self.requests = []       # (method, path, query, body)
        self.faults = []         # consumed one per request: int status, 'refused', 'timeout', 'garbage'
        self.on_poll = None      # called with the node record on every GET of one node
        self.max_limit = 1000
        self._event_id = 0
        self._clock = 0

    # ------------------------------------------------------------ setup helpers
    def add_node(self, name, state='ready', **fields):
        node = {
            'id': str(uuid.uuid4()), 'name': name, 'macs': ['02:00:00:00:%02x:%02x' % (len(self.nodes) // 256,
                                                                                       len(self.nodes) % 256)],
            'state': state, 'maintenance': False, 'maintenance_reason': None, 'pool': 'default', 'tags': [],
            'facts': {'cpus': 4, 'memory_mib': 8192, 'disk_gib': 100},
            'bmc': {'address': '127.0.0.1', 'port': 6230 + len(self.nodes), 'protocol': 'ipmi'},
            'owner': None, 'allocation_name': None, 'image': None, 'ip_address': None, 'ssh_host_keys': {},
            'docker_url': None, 'last_error': None, 'created_at': self._now(), 'updated_at': self._now(),
            'state_changed_at': self._now(),
        }
        node.update(fields)
        self.nodes[node['id']] = node
        self.events[node['id']] = []
        self._event(node, 'registered', 'node %s registered' % name)
        return node

    def node(self, name):
        for node in self.nodes.values():
            if node['name'] == name or node['id'] == name:
                return node
        return None

    def add_image(self, name, **fields):
        entry = {'name': name, 'url': 'http://provisioner.test:8080/images/%s.tar.gz' % name,
                 'sha256': 'a' * 64, 'format': 'tar.gz', 'size': 1000}
        entry.update(fields)
        self.images[name] = entry
        return entry

    def finish(self, name, ok=True, message=None, ip_address='10.0.3.31'):
        """The deploy agent reports the end of a deploy or a wipe."""
        node = self.node(name)
        if node['state'] not in TRANSITIONS['agent_succeeded' if ok else 'agent_failed']:
            return      # no agent runs in that state: its report changes nothing
        if node['state'] == 'deploying':
            if ok:
                self._transition(node, 'agent_succeeded', 'deploy succeeded')
                node['ip_address'] = ip_address
            else:
                node['last_error'] = message or 'sha256 mismatch'
                self._transition(node, 'agent_failed', 'deploy failed: %s' % node['last_error'])
        elif ok:
            node.update(owner=None, allocation_name=None, image=None, ip_address=None, ssh_host_keys={})
            self._transition(node, 'agent_succeeded', 'wipe done')
        else:
            node['last_error'] = message or 'wipe failed'
            self._transition(node, 'agent_failed', 'wipe failed')

    def expire(self, name):
        """The service's deploy or release timeout runs out for the node (nothing happens in another state)."""
        node = self.node(name)
        if node['state'] in TRANSITIONS['timeout']:
            node['last_error'] = 'timed out'
            self._transition(node, 'timeout', 'timed out')

    def report(self, name, message, bytes_written):
        node = self.node(name)
        self._event(node, 'progress', message, {'bytes_written': bytes_written})

    def paths(self, method=None):
        return [p for m, p, q, b in self.requests if method is None or m == method]

    def writes(self):
        return [(m, p) for m, p, q, b in self.requests if m != 'GET']

    # ------------------------------------------------------------ internals
    def _now(self):
        self._clock += 1
        return '2026-01-05T10:%02d:%02dZ' % (self._clock // 60 % 60, self._clock % 60)

    def _event(self, node, kind, message, data=None):
        self._event_id += 1
        self.events[node['id']].append({'id': self._event_id, 'time': self._now(), 'kind': kind,
                                        'message': message, 'data': data or {}})

    def _set_state(self, node, state, message):
        old = node['state']
        node['state'] = state
        node['state_changed_at'] = node['updated_at'] = self._now()
        self._event(node, 'transition', '%s -> %s: %s' % (old, state, message))

    class _Answer(Exception):
        def __init__(self, status, body=None):
            super(FakeProvisioner._Answer, self).__init__(status)
            self.status = status
            self.body = body

    def _error(self, status, code, detail):
        return self._Answer(status, {'detail': detail, 'code': code})

    def _find(self, ident):
        node = self.node(unquote(ident))
        if node is None:
            raise self._error(404, 'not_found', 'node %s is not registered' % unquote(ident))
        return node

    def _transition(self, node, verb, message=None):
        table = TRANSITIONS[verb]
        if node['state'] not in table:
            raise self._error(409, 'illegal_transition', 'node %s is %s; cannot %s it (allowed from: %s)'
                              % (node['name'], node['state'], verb, ', '.join(sorted(table))))
        self._set_state(node, table[node['state']], message or verb)

    # ------------------------------------------------------------ open_url
    def open_url(self, url, data=None, headers=None, method=None, **kwargs):
        parsed = urlparse(url)
        path = parsed.path
        query = dict((k, v[0]) for k, v in parse_qs(parsed.query).items())
        body = json.loads(data.decode('utf-8')) if data else None
        method = (method or ('POST' if data else 'GET')).upper()
        self.requests.append((method, path, query, body))
        if self.faults:
            fault = self.faults.pop(0)
            if fault == 'refused':
                raise URLError(ConnectionRefusedError(111, 'Connection refused'))
            if fault == 'timeout':
                raise socket.timeout('timed out')
            if fault == 'garbage':
                return FakeResponse(200, b'<html>not json')
            if isinstance(fault, int):
                raise HTTPError(url, fault, 'fault', {}, io.BytesIO(b'{"detail": "injected", "code": "fault"}'))
        headers = headers or {}
        try:
            if not path.startswith('/api/v1/health') and headers.get('Authorization') != 'Bearer %s' % self.token:
                raise self._error(401, 'unauthorized', 'missing or wrong admin token')
            status, answer = self._route(method, path, query, body)
        except self._Answer as a:
            if a.status >= 400:
                raise HTTPError(url, a.status, 'error', {}, io.BytesIO(json.dumps(a.body).encode('utf-8')))
            status, answer = a.status, a.body
        return FakeResponse(status, b'' if answer is None else json.dumps(answer).encode('utf-8'))

    def _route(self, method, path, query, body):
        parts = [p for p in path.split('/') if p][2:] if path.startswith('/api/v1') else None
        if parts is None:
            raise self._error(404, 'not_found', 'no such path %s' % path)
        if parts == ['health']:
            return 200, {'status': 'ok', 'version': 'fake'}
        if parts == ['nodes'] and method == 'GET':
            return 200, self._list(query)
        if parts == ['nodes'] and method == 'POST':
            return 201, self._create(body)
        if parts == ['allocations'] and method == 'POST':
            return self._allocate(body)
        if len(parts) == 2 and parts[0] == 'nodes':
            node = self._find(parts[1])
            if method == 'GET':
                if self.on_poll:
                    self.on_poll(node)
                return 200, copy.deepcopy(node)
            if method == 'PATCH':
                return 200, self._patch(node, body)
            if method == 'DELETE':
                if node['state'] not in DELETABLE and query.get('force') != 'true':
                    raise self._error(409, 'illegal_transition', 'node %s is %s; only discovered or ready nodes are '
                                      'deleted without force' % (node['name'], node['state']))
                del self.nodes[node['id']]
                return 204, None
        if len(parts) == 3 and parts[0] == 'nodes':
            node = self._find(parts[1])
            verb = parts[2]
            if verb == 'events' and method == 'GET':
                since = query.get('since')
                items = [e for e in self.events[node['id']] if since is None or e['id'] > int(since)]
                return 200, {'items': copy.deepcopy(items)}
            if verb == 'enroll' and method == 'POST':
                self._transition(node, 'enroll')
                for key in ('pool', 'tags'):
                    if (body or {}).get(key) is not None:
                        node[key] = body[key]
                return 200, copy.deepcopy(node)
            if verb == 'release' and method == 'POST':
                self._transition(node, 'release' if (body or {}).get('wipe', True) else 'release_nowipe')
                if node['state'] == 'ready':
                    node.update(owner=None, allocation_name=None)
                return 200, copy.deepcopy(node)
            if verb == 'deploy' and method == 'POST':
                if body.get('image') not in self.images:
                    raise self._error(422, 'invalid', 'image %s is not in the catalog' % body.get('image'))
                self._transition(node, 'deploy')
                node['image'] = body['image']
                node['last_error'] = None
                node['ssh_host_keys'] = {'ed25519': 'ssh-ed25519 AAAAfake%s' % node['name']}
                # what the deploy was given, as the service's single-node answers carry it
                node['ssh_keys'] = list(body.get('ssh_keys') or [])
                node['user_data_sha256'] = (hashlib.sha256(body['user_data'].encode('utf-8')).hexdigest()
                                            if body.get('user_data') else None)
                node['hostname'] = body.get('hostname') or node.get('allocation_name') or node['name']
                return 200, copy.deepcopy(node)
        if parts == ['images'] and method == 'GET':
            return 200, {'items': [copy.deepcopy(i) for i in sorted(self.images.values(), key=lambda i: i['name'])]}
        if parts == ['images'] and method == 'POST':
            if body.get('name') in self.images:
                raise self._error(409, 'conflict', 'image %s exists' % body['name'])
            if body.get('format') not in ('tar', 'tar.gz', 'raw'):
                raise self._Answer(422, {'detail': [{'loc': ['body', 'format'], 'msg': 'bad format'}]})
            self.images[body['name']] = dict(body)
            return 201, dict(body)
        if len(parts) == 2 and parts[0] == 'images':
            name = unquote(parts[1])
            if method == 'PUT':
                created = name not in self.images
                self.images[name] = dict(body)
                return (201 if created else 200), dict(body)
            if name not in self.images:
                raise self._error(404, 'not_found', 'image %s is not in the catalog' % name)
            if method == 'GET':
                return 200, dict(self.images[name])
            if method == 'DELETE':
                del self.images[name]
                return 204, None
        raise self._error(405, 'invalid', '%s %s is not allowed' % (method, path))

    def _list(self, query):
        nodes = sorted(self.nodes.values(), key=lambda n: n['name'])
        for key in ('state', 'pool', 'owner'):
            if query.get(key):
                nodes = [n for n in nodes if n.get(key) == query[key]]
        limit = min(int(query.get('limit', 100)), self.max_limit)
        offset = int(query.get('offset', 0))
        return {'items': copy.deepcopy(nodes[offset:offset + limit]), 'total': len(nodes)}

    def _create(self, body):
        if not body.get('name') or not body.get('macs'):
            raise self._Answer(422, {'detail': [{'loc': ['body', 'macs'], 'msg': 'field required'}]})
        for node in self.nodes.values():
            if node['name'] == body['name']:
                raise self._error(409, 'conflict', 'a node named %s is already registered' % body['name'])
            clash = set(node['macs']) & set(body['macs'])
            if clash:
                raise self._error(409, 'conflict', 'MAC %s is already registered to node %s'
                                  % (sorted(clash)[0], node['name']))
        fields = dict((k, v) for k, v in body.items() if k != 'name')
        fields.setdefault('state', 'ready')
        return copy.deepcopy(self.add_node(body['name'], **fields))

    def _patch(self, node, body):
        allowed = ('pool', 'tags', 'facts', 'bmc', 'macs', 'maintenance', 'maintenance_reason', 'docker_url')
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise self._Answer(422, {'detail': [{'loc': ['body', unknown[0]], 'msg': 'extra fields not permitted'}]})
        node.update(body)
        node['updated_at'] = self._now()
        return copy.deepcopy(node)

    def _allocate(self, body):
        for node in self.nodes.values():
            if node['owner'] == body['owner'] and node['allocation_name'] == body['name'] \
                    and node['state'] in ('allocated', 'deploying', 'deployed', 'deploy_failed'):
                return 200, copy.deepcopy(node)
        for node in sorted(self.nodes.values(), key=lambda n: n['name']):
            facts = node['facts'] or {}
            if node['state'] != 'ready' or node['maintenance']:
                continue
            if body.get('pool') and node['pool'] != body['pool']:
                continue
            if body.get('tags') and not set(body['tags']) <= set(node['tags']):
                continue
            if any(body.get(k) is not None and facts.get(f, 0) < body[k]
                   for k, f in (('min_cpus', 'cpus'), ('min_memory_mib', 'memory_mib'), ('min_disk_gib', 'disk_gib'))):
                continue
            self._transition(node, 'allocate')
            node.update(owner=body['owner'], allocation_name=body['name'])
            return 201, copy.deepcopy(node)
        wanted = ', '.join('%s=%s' % (k, body[k]) for k in sorted(body) if k not in ('owner', 'name'))
        raise self._error(409, 'no_node_available', 'no ready node matches %s for %s/%s'
                          % (wanted or 'no constraints', body['owner'], body['name']))


# ---------------------------------------------------------------- modules
def run_module(main, args, check=False, diff=False, monkeypatch=None):
    """Run a module's ``main()`` with check mode and diff as asked; returns its result as Ansible would print it
    (after AnsibleModule's no_log filtering), ``failed`` set when it failed.

    Built on the shared helpers of ``tests/unit/plugins/modules/utils.py``.
    """
    import pytest
    from ansible_collections.ingot.metal.tests.unit.plugins.modules.utils import (
        AnsibleExitJson, AnsibleFailJson, capture_module_results, set_module_args,
    )

    from ansible.module_utils import basic

    capture_module_results(monkeypatch)
    # Where AnsibleModule puts warnings depends on whether controller code was imported in this process
    # (Display then) and they would stay in a process-wide list for the next module run: record them here,
    # as text, instead.
    warnings = []

    def warn(self, warning, *a, **k):
        warnings.append(str(warning))

    monkeypatch.setattr(basic.AnsibleModule, 'warn', warn)
    args = dict(args)
    args.setdefault('_ansible_check_mode', check)
    args.setdefault('_ansible_diff', diff)
    with set_module_args(args):
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as e:
            main()
    result = dict(e.value.result)
    result['warnings'] = warnings
    if isinstance(e.value, AnsibleFailJson):
        result['failed'] = True
    return result


# ---------------------------------------------------------------- fixtures
class VirtualTime:
    """Stands in for the ``time`` module of module_utils/provisioner.py: sleeping advances a virtual clock."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def install(monkeypatch):
    """A FakeProvisioner behind ``open_url`` and a virtual clock; connection options in the environment."""
    from ansible_collections.ingot.metal.plugins.module_utils import provisioner as provisioner_utils

    fake = FakeProvisioner()
    clock = VirtualTime()
    monkeypatch.setattr(provisioner_utils, 'open_url', fake.open_url)
    monkeypatch.setattr(provisioner_utils, 'time', clock)
    monkeypatch.setenv('INGOT_PROVISIONER_URL', URL)
    monkeypatch.setenv('INGOT_PROVISIONER_TOKEN', TOKEN)
    fake.clock = clock
    return fake
