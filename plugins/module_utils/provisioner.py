# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One HTTP client for the provisioner API (docs/provisioner-api.md).

Requests go through ``ansible.module_utils.urls.open_url`` (no ``requests``),
each bounded by a socket timeout; connection failures and 5xx answers are
retried with jittered exponential backoff, 4xx answers never are. Every
failure becomes a :class:`ProvisionerError` whose message names what was
asked (the node, the allocation, the image), what the service said and what
to do. :func:`wait_for` polls with a bounded timeout and reports progress.

The comparison logic of the modules (what a node record would need to
change, whether a node satisfies allocation constraints) lives here as pure
functions. No ``AnsibleModule`` in here: the modules and the inventory plugin
all use this client.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import random
import socket
import ssl
import threading
import time

from ansible.module_utils.common.parameters import env_fallback
from ansible.module_utils.six.moves.http_client import HTTPException
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import quote, urlencode
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.ingot.metal.plugins.module_utils._secrets import mask_secrets

# Error kinds, stable strings the modules return as ``error_kind``.
AUTH = 'auth'
UNREACHABLE = 'unreachable'
TIMEOUT = 'timeout'
CERTIFICATE = 'certificate'
PROTOCOL = 'protocol'
INVALID = 'invalid'
NOT_FOUND = 'not_found'
CONFLICT = 'conflict'
ILLEGAL_TRANSITION = 'illegal_transition'
NO_NODE_AVAILABLE = 'no_node_available'
SERVER = 'server'
FAILED = 'failed'

# The node states of the provisioner's lifecycle: the one place the modules and the inventory take them from.
# The service's state machine has the same names (tests/unit/plugins/module_utils/test_state_contract.py).
DISCOVERED = 'discovered'
READY = 'ready'
ALLOCATED = 'allocated'
DEPLOYING = 'deploying'
DEPLOYED = 'deployed'
DEPLOY_FAILED = 'deploy_failed'
RELEASING = 'releasing'
RELEASE_FAILED = 'release_failed'
STATES = (DISCOVERED, READY, ALLOCATED, DEPLOYING, DEPLOYED, DEPLOY_FAILED, RELEASING, RELEASE_FAILED)
# States a node is deleted from without force.
REMOVABLE = (DISCOVERED, READY)
# States a deploy starts from.
DEPLOYABLE = (ALLOCATED, DEPLOY_FAILED)
# States a release (with wipe) starts from; releasing is already on its way back.
RELEASABLE = (ALLOCATED, DEPLOYING, DEPLOYED, DEPLOY_FAILED, RELEASE_FAILED)
# An allocation is held while its node is in one of these states.
HELD = (ALLOCATED, DEPLOYING, DEPLOYED, DEPLOY_FAILED)
IMAGE_FORMATS = ('tar', 'tar.gz', 'raw')
BMC_PROTOCOLS = ('ipmi', 'redfish')

# The connection options of every provisioner module, documented once in the
# ingot.metal.provisioner doc fragment.
PROVISIONER_CONNECTION_SPEC = dict(
    provisioner_url=dict(type='str', fallback=(env_fallback, ['INGOT_PROVISIONER_URL'])),
    provisioner_token=dict(type='str', no_log=True, fallback=(env_fallback, ['INGOT_PROVISIONER_TOKEN'])),
    provisioner_validate_certs=dict(type='bool', default=True, aliases=['validate_certs']),
    provisioner_ca_path=dict(type='path'),
    provisioner_timeout=dict(type='float', default=30.0),
    provisioner_retries=dict(type='int', default=3),
)

# The waiting options of the modules that can follow a transition.
WAIT_SPEC = dict(
    wait=dict(type='bool', default=True),
    wait_timeout=dict(type='int', default=900),
    wait_interval=dict(type='float', default=2.0),
)

# open_url answers >= 400 with HTTPError; these are worth another attempt.
_RETRY_ALWAYS = (502, 503, 504)           # the request never reached the application
_IDEMPOTENT_METHODS = ('GET', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')

_HINTS = {
    AUTH: 'check provisioner_token (or INGOT_PROVISIONER_TOKEN): it must be the admin token of the service',
    NOT_FOUND: 'check the name; ingot.metal.node_info and ingot.metal.image_info list what is registered',
    CONFLICT: 'a node with this name or one of these MACs is already registered; '
              'choose another name, or manage the existing node',
    ILLEGAL_TRANSITION: 'the registry refuses this in the node\'s current state; see its state and events '
                        '(ingot.metal.node_info with events=true), or wait for the running transition to end',
    NO_NODE_AVAILABLE: 'register or enroll more nodes, release nodes, relax the constraints, '
                       'take nodes out of maintenance, or set wait=true to wait for one',
    INVALID: 'fix the parameters of the task',
}


class ProvisionerError(Exception):
    """A failure talking to the provisioner, with a message meant for the user."""

    def __init__(self, message, kind=FAILED, status=None, code=None, hint=None, detail=None):
        self.kind = kind
        self.status = status
        self.code = code
        self.hint = hint
        self.detail = detail
        self.partial = {}  # what the module had done before it failed (changed, node, events)
        self.base = message
        self.message = self._compose()
        super(ProvisionerError, self).__init__(self.message)

    def _compose(self):
        return self.base + (' (%s)' % self.hint if self.hint else '')

    def add_note(self, text):
        """Append to the message, before the hint."""
        self.base += text
        self.message = self._compose()
        self.args = (self.message,)

    def result(self):
        """The keys a module passes to ``fail_json``: the message, the kind, and what was done before."""
        out = dict(self.partial)
        out.update(msg=self.message, error_kind=self.kind)
        if self.status is not None:
            out['status'] = self.status
        if self.code:
            out['error_code'] = self.code
        return out


def _detail_text(detail):
    """FastAPI gives ``detail`` as a string, or a list of validation errors."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = '.'.join(str(p) for p in item.get('loc', ()) if p not in ('body', 'query', 'path'))
                parts.append('%s: %s' % (loc, item.get('msg')) if loc else str(item.get('msg')))
            else:
                parts.append(str(item))
        return '; '.join(parts)
    if isinstance(detail, dict):
        return json.dumps(detail, sort_keys=True)
    return str(detail)


def _kind_for(status, code):
    if code in (ILLEGAL_TRANSITION, NO_NODE_AVAILABLE, CONFLICT, NOT_FOUND):
        return code
    if status in (401, 403):
        return AUTH
    if status == 404:
        return NOT_FOUND
    if status == 409:
        return CONFLICT
    if status in (400, 405, 413, 415, 422):
        return INVALID
    if status is not None and status >= 500:
        return SERVER
    return FAILED


class ProvisionerClient:
    """The admin API of one provisioner."""

    def __init__(self, url, token=None, validate_certs=True, ca_path=None, timeout=30.0, retries=3,
                 backoff=0.5, max_backoff=5.0, opener=None, sleep=None):
        if not url:
            raise ProvisionerError('no provisioner URL given', INVALID,
                                   hint='set provisioner_url or the environment variable INGOT_PROVISIONER_URL')
        url = str(url).strip().rstrip('/')
        if not url.startswith(('http://', 'https://')):
            raise ProvisionerError('provisioner_url %r is not an http:// or https:// URL' % url, INVALID,
                                   hint='for example http://10.0.0.1:8080')
        self.url = url
        self.token = token or None
        self.validate_certs = validate_certs is not False
        self.ca_path = ca_path
        self.timeout = float(timeout if timeout is not None else 30.0)
        self.retries = max(0, int(retries if retries is not None else 3))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._open = opener or open_url
        self._sleep = sleep or time.sleep

    # ------------------------------------------------------------ plumbing
    def _error(self, message, kind, status=None, code=None, hint=None, detail=None):
        return ProvisionerError(mask_secrets(str(message), [self.token]), kind, status=status, code=code,
                                hint=hint, detail=detail)

    def _headers(self, has_body):
        headers = {'Accept': 'application/json', 'User-Agent': 'ingot.metal'}
        if has_body:
            headers['Content-Type'] = 'application/json'
        if self.token:
            headers['Authorization'] = 'Bearer %s' % self.token
        return headers

    def _http_error(self, e, what):
        status = e.code
        body = b''
        try:
            body = e.read() or b''
        except Exception:
            pass
        detail, code = None, None
        try:
            data = json.loads(body.decode('utf-8')) if body else None
        except (ValueError, UnicodeDecodeError):
            data = None
        if isinstance(data, dict):
            detail = data.get('detail')
            code = data.get('code')
        text = _detail_text(detail) if detail not in (None, '') else (
            body.decode('utf-8', 'replace').strip()[:300] or (e.reason or 'no explanation given'))
        kind = _kind_for(status, code)
        if status in (401, 403):
            message = 'the provisioner at %s refused the credentials while %s: %s' % (self.url, what, text)
        elif kind == SERVER:
            message = 'the provisioner at %s failed while %s: HTTP %s %s' % (self.url, what, status, text)
        else:
            message = 'the provisioner refused %s: %s' % (what, text)
        message += ' [HTTP %s%s]' % (status, ', %s' % code if code else '')
        hint = _HINTS.get(kind)
        if kind == SERVER:
            hint = 'look at the provisioner service log'
        return self._error(message, kind, status=status, code=code, hint=hint, detail=detail)

    def _transport_error(self, e, what):
        """(error, retryable_always, retryable_if_idempotent) for a failure before any HTTP answer."""
        reason = getattr(e, 'reason', e)
        if isinstance(e, SSLValidationError) or isinstance(reason, ssl.SSLCertVerificationError) \
                or 'certificate verify failed' in str(e).lower():
            return (self._error('the provisioner at %s has a TLS certificate that is not trusted (while %s): %s'
                                % (self.url, what, reason), CERTIFICATE,
                                hint='set provisioner_ca_path to its CA, or provisioner_validate_certs=false for a lab'),
                    False, False)
        if isinstance(reason, ConnectionRefusedError) or 'connection refused' in str(reason).lower():
            return (self._error('the provisioner at %s refused the connection while %s' % (self.url, what),
                                UNREACHABLE, hint='check provisioner_url and that the service is running'),
                    True, True)
        if isinstance(reason, (socket.timeout, TimeoutError)) or 'timed out' in str(reason).lower():
            return (self._error('the provisioner at %s did not answer within %.0f s while %s'
                                % (self.url, self.timeout, what), TIMEOUT,
                                hint='check that the service is healthy, or raise provisioner_timeout'),
                    False, True)
        if isinstance(reason, socket.gaierror):
            return (self._error('cannot resolve the provisioner address in %s (while %s): %s'
                                % (self.url, what, reason), UNREACHABLE, hint='check provisioner_url'),
                    True, True)
        return (self._error('cannot reach the provisioner at %s while %s: %s' % (self.url, what, reason),
                            UNREACHABLE, hint='check provisioner_url and the network'),
                False, True)

    def _attempt(self, method, url, data, what, idempotent):
        """One HTTP exchange; returns (status, body) or raises (error, retryable)."""
        try:
            resp = self._open(url, data=data, headers=self._headers(data is not None), method=method,
                              timeout=self.timeout, validate_certs=self.validate_certs, ca_path=self.ca_path,
                              follow_redirects='safe', use_netrc=False, http_agent='ingot.metal')
            try:
                status = resp.getcode() if hasattr(resp, 'getcode') else resp.status
                body = resp.read()
            finally:
                close = getattr(resp, 'close', None)
                if close:
                    close()
            return status, body
        except HTTPError as e:
            err = self._http_error(e, what)
            retry = e.code in _RETRY_ALWAYS or (e.code >= 500 and idempotent)
            raise _Attempt(err, retry)
        except (URLError, UrlsConnectionError, HTTPException, OSError) as e:
            err, always, if_idempotent = self._transport_error(e, what)
            raise _Attempt(err, always or (idempotent and if_idempotent))

    def call(self, method, path, body=None, query=None, what=None, idempotent=None):
        """Send one request with retries; returns ``(status, decoded JSON or None)``."""
        method = method.upper()
        what = what or '%s %s' % (method, path)
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        url = self.url + path
        if query:
            pairs = [(k, v) for k, v in query.items() if v is not None]
            if pairs:
                url += '?' + urlencode([(k, str(v).lower() if isinstance(v, bool) else v) for k, v in pairs])
        data = json.dumps(body).encode('utf-8') if body is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                status, raw = self._attempt(method, url, data, what, idempotent)
                break
            except _Attempt as a:
                if not a.retry or attempt > self.retries:
                    if attempt > 1:
                        a.error.add_note(' (after %d attempts)' % attempt)
                    raise a.error
            delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
            self._sleep(delay * (0.5 + random.random() / 2))
        if status == 204 or not raw:
            return status, None
        try:
            return status, json.loads(raw.decode('utf-8') if isinstance(raw, bytes) else raw)
        except (ValueError, UnicodeDecodeError):
            raise self._error('the provisioner at %s answered %s with something that is not JSON: %r'
                              % (self.url, what, raw[:200]), PROTOCOL,
                              hint='check that provisioner_url points at the provisioner service')

    def request(self, method, path, body=None, query=None, what=None, idempotent=None):
        return self.call(method, path, body=body, query=query, what=what, idempotent=idempotent)[1]

    # ------------------------------------------------------------ health
    def health(self):
        return self.request('GET', '/api/v1/health', what='checking its health')

    # ------------------------------------------------------------ nodes
    def list_nodes(self, state=None, pool=None, owner=None, page_size=1000, concurrency=4):
        """Every node matching the filters, fetched in pages (the pages after the first concurrently)."""
        query = {'state': state, 'pool': pool, 'owner': owner}
        what = 'listing nodes%s' % _describe_filters(query)
        first = self.request('GET', '/api/v1/nodes', query=dict(query, limit=page_size, offset=0), what=what)
        items, total = _page(first, what, self)
        if total is None:
            # No total to plan with: page on sequentially until a short page.
            while items and len(items) % page_size == 0:
                more = _page(self.request('GET', '/api/v1/nodes', what=what,
                                          query=dict(query, limit=page_size, offset=len(items))), what, self)[0]
                if not more:
                    break
                items.extend(more)
            return items
        if not items or len(items) >= total:
            return items
        # The service may cap the page size: step by what it gave.
        offsets = list(range(len(items), total, len(items)))
        pages = {}
        errors = []
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not offsets or errors:
                        return
                    offset = offsets.pop(0)
                try:
                    got = self.request('GET', '/api/v1/nodes', query=dict(query, limit=page_size, offset=offset),
                                       what=what)
                    page_items = _page(got, what, self)[0]
                except ProvisionerError as e:
                    with lock:
                        errors.append(e)
                    return
                with lock:
                    pages[offset] = page_items

        threads = [threading.Thread(target=worker, name='ingot-provisioner-page-%d' % i)
                   for i in range(max(1, min(concurrency, len(offsets))))]
        for t in threads:
            t.daemon = True
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        seen = set(n.get('id') for n in items)
        for offset in sorted(pages):
            for node in pages[offset]:
                # The registry may change between pages: never list a node twice.
                if node.get('id') not in seen:
                    seen.add(node.get('id'))
                    items.append(node)
        return items

    def get_node(self, ident, missing_ok=False):
        try:
            return self.request('GET', '/api/v1/nodes/%s' % _q(ident), what='reading node %s' % ident)
        except ProvisionerError as e:
            if missing_ok and e.status == 404:
                return None
            raise

    def create_node(self, body):
        return self.request('POST', '/api/v1/nodes', body=body, what='registering node %s' % body.get('name'))

    def update_node(self, ident, changes):
        return self.request('PATCH', '/api/v1/nodes/%s' % _q(ident), body=changes,
                            what='updating node %s (%s)' % (ident, ', '.join(sorted(changes))))

    def delete_node(self, ident, force=False):
        return self.request('DELETE', '/api/v1/nodes/%s' % _q(ident), query={'force': True} if force else None,
                            what='deleting node %s%s' % (ident, ' (forced)' if force else ''))

    def enroll_node(self, ident, pool=None, tags=None):
        body = dict((k, v) for k, v in (('pool', pool), ('tags', tags)) if v is not None)
        return self.request('POST', '/api/v1/nodes/%s/enroll' % _q(ident), body=body,
                            what='enrolling node %s' % ident, idempotent=False)

    def node_events(self, ident, since=None):
        data = self.request('GET', '/api/v1/nodes/%s/events' % _q(ident), query={'since': since},
                            what='reading the events of node %s' % ident)
        return (data or {}).get('items', []) if isinstance(data, dict) else (data or [])

    # ------------------------------------------------------------ allocations
    def allocate(self, owner, name, constraints=None):
        """Returns ``(node, created)``; ``created`` is False when (owner, name) already had a node."""
        body = {'owner': owner, 'name': name}
        body.update(dict((k, v) for k, v in (constraints or {}).items() if v not in (None, [])))
        # Idempotent by (owner, name) in the contract: safe to send again after a lost answer.
        status, node = self.call('POST', '/api/v1/allocations', body=body, idempotent=True,
                                 what='allocating a node as %r for owner %r%s'
                                      % (name, owner, describe_constraints(constraints)))
        return node, status == 201

    def release(self, ident, wipe=True):
        return self.request('POST', '/api/v1/nodes/%s/release' % _q(ident), body={'wipe': bool(wipe)},
                            what='releasing node %s%s' % (ident, ' (wipe)' if wipe else ''), idempotent=False)

    # ------------------------------------------------------------ deploy
    def deploy(self, ident, image, ssh_keys=None, user_data=None, hostname=None):
        body = {'image': image, 'ssh_keys': list(ssh_keys or [])}
        if user_data is not None:
            body['user_data'] = user_data
        if hostname:
            body['hostname'] = hostname
        return self.request('POST', '/api/v1/nodes/%s/deploy' % _q(ident), body=body,
                            what='deploying image %s to node %s' % (image, ident), idempotent=False)

    # ------------------------------------------------------------ images
    def list_images(self):
        data = self.request('GET', '/api/v1/images', what='listing images')
        return (data or {}).get('items', []) if isinstance(data, dict) else (data or [])

    def get_image(self, name, missing_ok=False):
        try:
            return self.request('GET', '/api/v1/images/%s' % _q(name), what='reading image %s' % name)
        except ProvisionerError as e:
            if missing_ok and e.status == 404:
                return None
            raise

    def create_image(self, body):
        return self.request('POST', '/api/v1/images', body=body, what='registering image %s' % body.get('name'),
                            idempotent=False)

    def put_image(self, body):
        """Create or replace image ``body['name']`` in one request (the old entry stays if it is refused)."""
        return self.request('PUT', '/api/v1/images/%s' % _q(body['name']), body=body,
                            what='registering image %s' % body['name'])

    def delete_image(self, name):
        return self.request('DELETE', '/api/v1/images/%s' % _q(name), what='deleting image %s' % name)


class _Attempt(Exception):
    def __init__(self, error, retry):
        super(_Attempt, self).__init__(str(error))
        self.error = error
        self.retry = retry


def _q(ident):
    return quote(str(ident), safe='')


def _page(data, what, client):
    if isinstance(data, dict) and isinstance(data.get('items'), list):
        return list(data['items']), data.get('total')
    if isinstance(data, list):
        return list(data), None
    raise client._error('the provisioner at %s answered %s with an unexpected document (no "items" list)'
                        % (client.url, what), PROTOCOL, hint='check that provisioner_url points at the provisioner')


def _describe_filters(query):
    parts = ['%s=%s' % (k, v) for k, v in sorted(query.items()) if v is not None]
    return (' (%s)' % ', '.join(parts)) if parts else ''


def node_ident(node):
    """How a node is named to the API (which takes a name or an id): the name reads better in every message."""
    return node.get('name') or node['id']


def client_from_params(params):
    """Build a client from the ``provisioner_*`` module options (or plugin options of the same names)."""
    return ProvisionerClient(
        params.get('provisioner_url'), token=params.get('provisioner_token'),
        validate_certs=params.get('provisioner_validate_certs'), ca_path=params.get('provisioner_ca_path'),
        timeout=params.get('provisioner_timeout'), retries=params.get('provisioner_retries'))


def argument_spec(spec=None, wait=False):
    """A module's argument spec: the connection options, the wait options if asked, then its own."""
    out = dict(PROVISIONER_CONNECTION_SPEC)
    if wait:
        out.update(WAIT_SPEC)
    out.update(spec or {})
    return out


def run_module(module, operation):
    """Run ``operation(client, params, check_mode)`` inside a module and exit with its result.

    ``module`` is the caller's AnsibleModule (duck-typed: nothing here imports
    it). A ProvisionerError becomes ``fail_json`` with its message, kind and
    whatever the operation had done before; the diff is returned only with
    ``--diff``; ``warnings`` in the result are passed to ``module.warn``.
    """
    try:
        client = client_from_params(module.params)
        result = operation(client, module.params, module.check_mode)
    except ProvisionerError as e:
        failure = e.result()
        if not module._diff:
            failure.pop('diff', None)
        module.fail_json(**failure)
    for warning in result.pop('warnings', None) or []:
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)


# ---------------------------------------------------------------- waiting
def wait_for(poll, until, timeout, what, failed=None, describe=None, progress=None, interval=2.0,
             max_interval=10.0, clock=None, sleep=None):
    """Call ``poll()`` until ``until(value)`` is true; return ``(value, seconds waited)``.

    ``failed(value)`` may return a message that ends the wait with an error;
    ``progress(value)`` is called after every poll; ``describe(value)`` says
    where things stood when the time ran out. Polling backs off gently from
    ``interval`` to ``max_interval`` and never sleeps past the deadline.
    """
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    start = clock()
    deadline = start + max(0.0, float(timeout))
    step = max(0.05, float(interval))
    while True:
        value = poll()
        if progress is not None:
            progress(value)
        if until(value):
            return value, clock() - start
        if failed is not None:
            message = failed(value)
            if message:
                raise ProvisionerError(message, FAILED)
        now = clock()
        if now >= deadline:
            where = describe(value) if describe else repr(value)
            raise ProvisionerError('%s did not finish within %s s; %s' % (what, timeout, where), TIMEOUT,
                                   hint='raise wait_timeout, or look at the node\'s events')
        sleep(min(step, max(0.0, deadline - now)))
        step = min(step * 1.5, max_interval)


# ---------------------------------------------------------------- comparison
def normalise_mac(mac):
    return str(mac).strip().lower().replace('-', ':')


def _norm_list(values, normalise=None):
    out = []
    for v in values or []:
        v = normalise(v) if normalise else str(v)
        if v not in out:
            out.append(v)
    return out


def node_changes(current, desired):
    """The PATCH body that brings ``current`` (a node record) to ``desired`` (module options).

    Only options that are set are compared. MACs and tags compare as sets;
    facts and bmc compare the keys given, and are sent merged with the
    current ones so that nothing else is lost.
    """
    changes = {}
    if desired.get('macs') is not None:
        want = _norm_list(desired['macs'], normalise_mac)
        have = _norm_list(current.get('macs'), normalise_mac)
        if set(want) != set(have):
            changes['macs'] = want
    if desired.get('tags') is not None:
        want = _norm_list(desired['tags'])
        if set(want) != set(_norm_list(current.get('tags'))):
            changes['tags'] = want
    for key in ('pool', 'maintenance', 'maintenance_reason'):
        if desired.get(key) is not None and desired[key] != current.get(key):
            changes[key] = desired[key]
    if desired.get('docker_url') is not None:
        want = desired['docker_url'] or None
        if want != current.get('docker_url'):
            changes['docker_url'] = want
    for key in ('facts', 'bmc'):
        want = dict((k, v) for k, v in (desired.get(key) or {}).items() if v is not None)
        have = current.get(key) or {}
        if want and any(have.get(k) != v for k, v in want.items()):
            merged = dict(have)
            merged.update(want)
            changes[key] = merged
    return changes


def diff_of(before, after, keys):
    """``{'before': ..., 'after': ...}`` restricted to ``keys``, for Ansible's ``--diff``."""
    return {'before': dict((k, (before or {}).get(k)) for k in keys),
            'after': dict((k, (after or {}).get(k)) for k in keys)}


def describe_constraints(constraints):
    parts = []
    for key in ('pool', 'tags', 'min_cpus', 'min_memory_mib', 'min_disk_gib'):
        value = (constraints or {}).get(key)
        if value not in (None, []):
            parts.append('%s=%s' % (key, ','.join(value) if isinstance(value, list) else value))
    return (' with %s' % ', '.join(parts)) if parts else ''


def satisfies(node, constraints):
    """Whether a ready node could be allocated under ``constraints`` (used to predict in check mode)."""
    if node.get('state') != READY or node.get('maintenance'):
        return False
    c = constraints or {}
    if c.get('pool') and node.get('pool') != c['pool']:
        return False
    if c.get('tags') and not set(c['tags']) <= set(node.get('tags') or []):
        return False
    facts = node.get('facts') or {}
    for key, fact in (('min_cpus', 'cpus'), ('min_memory_mib', 'memory_mib'), ('min_disk_gib', 'disk_gib')):
        if c.get(key) is not None:
            have = facts.get(fact)
            if not isinstance(have, (int, float)) or have < c[key]:
                return False
    return True


def describe_node(node):
    """One line on where a node stands, for progress and timeout messages."""
    if not node:
        return 'the node is gone'
    text = 'node %s is %s' % (node.get('name'), node.get('state'))
    if node.get('maintenance'):
        text += ' (maintenance%s)' % (': %s' % node['maintenance_reason'] if node.get('maintenance_reason') else '')
    if node.get('last_error'):
        text += ', last error: %s' % node['last_error']
    return text
