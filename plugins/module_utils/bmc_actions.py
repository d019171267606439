# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the BMC modules do, shared by the modules and their action plugins.

Each operation reads the BMC, compares with what was asked, acts only on a
difference (never in check mode) and returns ``changed`` with a before/after
diff. ``execute`` runs one operation against one BMC or, in the fleet form,
against every BMC of ``bmcs`` concurrently inside one task.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pickle
import socket
import sys
import threading
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.ingot.metal.plugins.module_utils.bmc import (
    BMC_CONNECTION_SPEC,
    BMC_FLEET_ITEM_SPEC,
    BMC_FLEET_SPEC,
    BOOT_DEVICES,
    DEFAULT_PORTS,
    HAS_PYGHMI,
    INVALID,
    PYGHMI_IMPORT_ERROR,
    TIMEOUT,
    UNREACHABLE,
    UNSUPPORTED,
    BmcError,
    PowerWaitTimeout,
    check_connection_numbers,
    check_number,
    client_from_params,
    fleet_item_params,
)

POWER_SPEC = dict(
    state=dict(type='str', required=True, choices=['on', 'off', 'restarted', 'status']),
    method=dict(type='str', default='graceful', choices=['graceful', 'hard']),
    graceful_timeout=dict(type='int', default=300),
    force_after_timeout=dict(type='bool', default=True),
    wait=dict(type='bool', default=True),
    wait_timeout=dict(type='int', default=120),
)

BOOT_SPEC = dict(
    device=dict(type='str', required=True, choices=list(BOOT_DEVICES)),
    persistent=dict(type='bool', default=False),
    uefi=dict(type='bool'),
)

INFO_SECTIONS = ['device', 'guid', 'power', 'boot', 'fru', 'macs', 'sensors']
INFO_SPEC = dict(
    gather=dict(type='list', elements='str', default=['all'], choices=['all'] + INFO_SECTIONS),
)

SPECS = {'power': POWER_SPEC, 'boot': BOOT_SPEC, 'info': INFO_SPEC}
READ_ONLY = {'power': False, 'boot': False, 'info': True}


def argument_spec(op):
    spec = dict(BMC_CONNECTION_SPEC)
    spec.update(BMC_FLEET_SPEC)
    spec.update(SPECS[op])
    return spec


ARG_RULES = dict(
    mutually_exclusive=[['bmc_host', 'bmcs']],
    required_one_of=[['bmc_host', 'bmcs']],
)


# Options of the operations that are timeouts or counts: option -> (minimum, strict, maximum).
OPERATION_NUMBERS = {
    'power': {'graceful_timeout': (0, False, None), 'wait_timeout': (0, False, None)},
    'boot': {},
    'info': {},
}


def check_numbers(op, params, owner):
    """Refuse out-of-range timeouts and counts before any BMC is contacted."""
    check_connection_numbers(owner, params)
    check_number(owner, 'bmc_concurrency', params.get('bmc_concurrency'), 1, False, 1024)
    check_number(owner, 'bmc_processes', params.get('bmc_processes'), 0, False, MAX_PROCESSES)
    for option, (minimum, strict, maximum) in OPERATION_NUMBERS[op].items():
        check_number(owner, option, params.get(option), minimum, strict, maximum)


# ---------------------------------------------------------------- operations
def _power_off(client, params, actions):
    """Turn the machine off as asked; returns True when it had to be forced."""
    if params['method'] == 'hard':
        client.power('off')
        actions.append('hard off')
        if params['wait']:
            client.wait_power('off', params['wait_timeout'])
        return False
    client.power('shutdown')
    actions.append('soft off (ACPI)')
    try:
        client.wait_power('off', params['graceful_timeout'])
        return False
    except PowerWaitTimeout:
        # The BMC answered all along and the machine stayed on: the OS did not shut down.
        if not params['force_after_timeout']:
            raise BmcError(client.name, TIMEOUT,
                           'the OS did not shut down within graceful_timeout=%s s' % params['graceful_timeout'],
                           'raise graceful_timeout, set force_after_timeout=true, or use method=hard')
    except BmcError as e:
        # The BMC stopped answering: nothing says the OS did not shut down, so never force it off.
        raise BmcError(client.name, e.kind if e.kind != TIMEOUT else UNREACHABLE,
                       'stopped answering while waiting for the graceful shutdown (soft off was sent); '
                       'the machine was not forced off: %s' % e.message.replace('BMC %s: ' % client.name, '', 1),
                       'check the BMC, then run again: a machine already off is left as it is')
    client.power('off')
    actions.append('hard off after graceful_timeout')
    client.wait_power('off', params['wait_timeout'])
    return True


def op_power(client, params, check_mode):
    before = client.get_power()
    state = params['state']
    result = {'changed': False, 'actions': [], 'forced': False}
    if state == 'status':
        # Only read: never a change, never an action.
        result['power'] = before
        result['diff'] = {'before': {'power': before}, 'after': {'power': before}}
        return result
    if state == 'on' and before != 'on':
        result['changed'] = True
        if not check_mode:
            client.power('on')
            result['actions'].append('on')
            if params['wait']:
                client.wait_power('on', params['wait_timeout'])
    elif state == 'off' and before != 'off':
        result['changed'] = True
        if not check_mode:
            result['forced'] = _power_off(client, params, result['actions'])
    elif state == 'restarted':
        result['changed'] = True
        if not check_mode:
            if before == 'on' and params['method'] == 'hard':
                client.power('cycle')
                result['actions'].append('power cycle')
                if params['wait']:
                    time.sleep(0.2)
                    client.wait_power('on', params['wait_timeout'])
            else:
                if before == 'on':
                    result['forced'] = _power_off(client, params, result['actions'])
                client.power('on')
                result['actions'].append('on')
                if params['wait']:
                    client.wait_power('on', params['wait_timeout'])
    if check_mode or not result['changed']:
        after = before if not result['changed'] else ('off' if state == 'off' else 'on')
    elif params['wait'] or result['forced'] or (state == 'off' and params['method'] == 'graceful'):
        after = 'off' if state == 'off' else 'on'
    else:
        after = client.get_power()
    result['power'] = after
    result['diff'] = {'before': {'power': before}, 'after': {'power': after}}
    return result


def op_boot(client, params, check_mode):
    before = client.get_boot()
    want_uefi = params.get('uefi')
    if want_uefi is None:
        # Keep the current mode; when the BMC does not say (None), leave it to the BMC.
        want_uefi = before.get('uefi')
    desired = {'device': params['device'], 'persistent': params['persistent'], 'uefi': want_uefi}
    if desired['device'] == 'default':
        changed = before['device'] != 'default'
        desired = {'device': 'default', 'persistent': before['persistent'] if not changed else True,
                   'uefi': before.get('uefi')}
    else:
        changed = (before['device'] != desired['device'] or before['persistent'] != desired['persistent']
                   or (want_uefi is not None and bool(before.get('uefi')) != want_uefi))
    after = desired if changed else before
    if changed and not check_mode:
        client.set_boot(desired['device'], persistent=desired['persistent'], uefi=desired['uefi'])
        # Some BMCs (Redfish ones especially) apply a change a moment later: read back until it shows.
        settle = time.monotonic() + min(client.timeout, 15.0)
        after = client.get_boot()
        while _boot_differs(after, desired) and time.monotonic() < settle:
            time.sleep(0.5)
            after = client.get_boot()
        _check_boot_kept(client.name, desired, after)
    return {'changed': changed, 'boot': after, 'diff': {'before': dict(before), 'after': dict(after)}}


def _boot_differs(after, desired):
    """What of the read-back differs from what was set: device, persistent, uefi (when both say)."""
    diff = []
    if after.get('device') != desired['device']:
        diff.append('device')
    elif desired['device'] != 'default':
        if bool(after.get('persistent')) != bool(desired['persistent']):
            diff.append('persistent')
        if desired.get('uefi') is not None and after.get('uefi') is not None \
                and bool(after['uefi']) != bool(desired['uefi']):
            diff.append('uefi')
    return diff


def _check_boot_kept(name, desired, after):
    diff = _boot_differs(after, desired)
    if not diff:
        return
    if 'device' in diff:
        raise BmcError(name, UNSUPPORTED,
                       'accepted boot device %s but now reports %s' % (desired['device'], after['device']),
                       'this BMC may not honour boot overrides')
    if 'persistent' in diff:
        kept = 'every boot (persistent)' if after.get('persistent') else 'the next boot only'
        asked = 'every boot (persistent)' if desired['persistent'] else 'the next boot only'
        raise BmcError(name, UNSUPPORTED,
                       'accepted boot device %s for %s but kept it for %s' % (desired['device'], asked, kept),
                       'this BMC does not keep that kind of override: set persistent=%s and set the device '
                       'before each boot, or set the boot order in its firmware setup'
                       % ('false' if desired['persistent'] else 'true'))
    raise BmcError(name, UNSUPPORTED,
                   'accepted boot device %s in %s mode but reports %s mode'
                   % (desired['device'], 'UEFI' if desired['uefi'] else 'legacy BIOS',
                      'UEFI' if after['uefi'] else 'legacy BIOS'),
                   'this BMC does not switch the boot mode: leave uefi unset or set the mode in its firmware setup')


def op_info(client, params, check_mode):
    wanted = params.get('gather') or ['all']
    sections = INFO_SECTIONS if 'all' in wanted else [s for s in INFO_SECTIONS if s in wanted]
    info = {}
    unsupported = []
    readers = {
        'device': client.device_id,
        'guid': client.guid,
        'power': client.get_power,
        'boot': client.get_boot,
        'fru': client.fru,
        'sensors': client.sensors,
    }
    for section in sections:
        try:
            if section == 'macs':
                info['macs'] = client.macs(fru=info.get('fru'))
            else:
                info[section] = readers[section]()
        except BmcError as e:
            if e.kind not in (UNSUPPORTED,):
                raise
            info[section] = None
            unsupported.append(section)
    if isinstance(info.get('fru'), dict):
        info['fru'] = dict((k, v) for k, v in info['fru'].items() if k != 'macs')
    return {'changed': False, 'bmc_info': info, 'unsupported': unsupported}


OPERATIONS = {'power': op_power, 'boot': op_boot, 'info': op_info}


def protect_fleet_secrets(module):
    """Register the passwords given inside ``bmcs`` entries as no_log values of ``module``.

    ``bmcs`` is a list of raw elements (dicts or host names), so AnsibleModule cannot know that an
    entry's ``password`` is a secret.
    """
    for item in module.params.get('bmcs') or []:
        if isinstance(item, dict) and item.get('password') not in (None, ''):
            module.no_log_values.add(str(item['password']))


# ---------------------------------------------------------------- execution
def _run_one(op, params, check_mode, name):
    client = client_from_params(params, name=name)
    try:
        return OPERATIONS[op](client, params, check_mode)
    finally:
        client.close()


_ITEM_VALIDATOR = ArgumentSpecValidator(BMC_FLEET_ITEM_SPEC)


def _validate_item(item, index):
    if not isinstance(item, dict):
        raise BmcError('bmcs[%d]' % index, INVALID,
                       'each bmcs entry must be a dict (host, port, user, password, ...) or, with the action '
                       'plugin on the controller, an inventory host name; got %s' % type(item).__name__)
    res = _ITEM_VALIDATOR.validate(item)
    if res.error_messages:
        raise BmcError(item.get('name') or item.get('host') or 'bmcs[%d]' % index, INVALID,
                       '; '.join(res.error_messages), 'fix this bmcs entry')
    return res.validated_parameters


def _address(merged, resolved):
    """Which BMC an entry reaches: (IP address, port), the port defaulted by protocol.

    A name is resolved (once per task, ``resolved`` is the cache) so that a BMC given by name and by
    address is still one BMC; a name that does not resolve stays as written (its login fails later).
    """
    protocol = merged.get('bmc_protocol') or 'ipmi'
    port = merged.get('bmc_port') or DEFAULT_PORTS.get(protocol)
    host = str(merged.get('bmc_host') or '').strip().lower().rstrip('.')
    if host not in resolved:
        try:
            found = socket.getaddrinfo(host, None, 0, socket.SOCK_DGRAM)
            addrs = sorted(set(a[4][0] for a in found), key=lambda a: (':' in a, a))
            resolved[host] = addrs[0] if addrs else host
        except (socket.error, UnicodeError, ValueError):
            resolved[host] = host
    return (resolved[host], port)


def _run_groups(op, groups, concurrency, check_mode):
    """Run ``op`` on every entry of ``groups`` (lists of (name, params) that reach one BMC) in at most
    ``concurrency`` threads of this process; returns name -> result."""
    results = {}
    lock = threading.Lock()
    # Entries that reach the same BMC (address and port) under different names run one after the
    # other in one worker: a BMC never gets two of our sessions or commands at once.
    pending = list(reversed(groups))

    def run(name, merged):
        try:
            res = _run_one(op, merged, check_mode, name)
            res['failed'] = False
        except BmcError as e:
            res = {'changed': False, 'failed': True, 'msg': e.message, 'error_kind': e.kind}
        except Exception as e:  # a bug must not lose the other BMCs' results
            res = {'changed': False, 'failed': True, 'msg': 'BMC %s: internal error: %r' % (name, e),
                   'error_kind': 'internal'}
        with lock:
            results[name] = res

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                group = pending.pop()
            for name, merged in group:
                run(name, merged)

    threads = [threading.Thread(target=worker, name='bmc-fleet-%d' % i)
               for i in range(max(1, min(concurrency, len(pending) or 1)))]
    for t in threads:
        t.daemon = True
        t.start()
    for t in threads:
        t.join()
    return results


#: The automatic number of processes of a fleet gives each about this many BMCs at least: below it, the fork
#: and the new process's first session cost more than a second core saves.
BMCS_PER_PROCESS = 50
MAX_PROCESSES = 64


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fleet_processes(asked, groups):
    """How many processes drive ``groups`` BMCs (see the ``bmc_processes`` option): ``asked``, or for 0 (None)
    one per BMCS_PER_PROCESS, at most one per usable core; never more than there are BMCs. 1 when this process
    cannot fork, or already has IPMI sessions (pyghmi's I/O thread and its tables would not be right in a
    child)."""
    if groups <= 1 or not hasattr(os, 'fork'):
        return 1
    count = int(asked or 0)
    if count <= 0:
        count = min(_usable_cores(), groups // BMCS_PER_PROCESS)
    count = max(1, min(count, groups, MAX_PROCESSES))
    if count > 1 and _pyghmi_sessions_started():
        return 1
    return count


def _pyghmi_sessions_started():
    session = sys.modules.get('pyghmi.ipmi.private.session')
    return session is not None and getattr(session, 'iothread', None) is not None


def _child_run(op, groups, concurrency, check_mode, write_fd):
    """In a forked child: run the share, send its results to the parent, end without running anything of the
    parent's (no atexit, no buffered output of the parent flushed twice)."""
    code = 0
    try:
        try:
            data = pickle.dumps(_run_groups(op, groups, concurrency, check_mode), pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            data = pickle.dumps({'__error__': repr(e)}, pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _read_all(fd):
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except InterruptedError:  # pragma: no cover - retried by Python itself since 3.5
            continue
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


def _run_in_processes(op, groups, concurrency, count, check_mode):
    """Split ``groups`` over ``count`` processes: this one and ``count - 1`` forked children, each with its
    share of the concurrency; returns (name -> result of every entry, a child's lost results included as
    failures; how many processes ran)."""
    shares = [groups[i::count] for i in range(count)]
    per_share = max(1, -(-concurrency // count))
    children = []
    try:
        for share in shares[1:]:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                _child_run(op, share, per_share, check_mode, write_fd)
            os.close(write_fd)
            children.append((pid, read_fd, share))
    except OSError:
        # Could not fork (limits): the shares not handed to a child (children took shares[1:] in order) run here.
        mine = [g for share in [shares[0]] + shares[len(children) + 1:] for g in share]
        results = _run_groups(op, mine, concurrency, check_mode)
    else:
        results = _run_groups(op, shares[0], per_share, check_mode)
    for pid, read_fd, share in children:
        data = _read_all(read_fd)
        os.close(read_fd)
        _pid, status = os.waitpid(pid, 0)
        try:
            got = pickle.loads(data) if data else None
        except Exception:
            got = None
        if isinstance(got, dict) and '__error__' not in got:
            results.update(got)
            continue
        if os.WIFSIGNALED(status):
            how = 'was killed by signal %d' % os.WTERMSIG(status)
        elif isinstance(got, dict):
            how = 'failed: %s' % got['__error__']
        else:
            how = 'ended (exit status %d) without a result' % os.WEXITSTATUS(status)
        for group in share:
            for name, _merged in group:
                results[name] = {
                    'changed': False, 'failed': True, 'error_kind': 'internal',
                    'msg': 'BMC %s: the process of the fleet that drove it (pid %d) %s, so whether it was '
                           'changed is unknown (check the controller\'s memory and logs, then run the task '
                           'again: it only changes what still differs)' % (name, pid, how)}
    return results, len(children) + 1


def _fleet(op, params, check_mode):
    items = params['bmcs']
    resolved = {}
    groups = {}
    order = []
    errors = {}
    seen = {}
    for index, item in enumerate(items):
        try:
            valid = _validate_item(item, index)
        except BmcError as e:
            errors['bmcs[%d]' % index] = e
            continue
        name = valid.get('name') or '%s:%s' % (valid['host'], valid.get('port') or '')
        name = name.rstrip(':')
        if name in seen:
            errors['%s (bmcs[%d])' % (name, index)] = BmcError(
                name, INVALID, 'bmcs[%d] has the same name as bmcs[%d]' % (index, seen[name]),
                'give each bmcs entry its own name')
            continue
        seen[name] = index
        merged = dict(params)
        merged.update(fleet_item_params(valid, params))
        key = _address(merged, resolved)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((name, merged))
    pending = [groups[key] for key in order]
    concurrency = params.get('bmc_concurrency') or 32
    count = fleet_processes(params.get('bmc_processes'), len(pending))
    if count > 1:
        results, count = _run_in_processes(op, pending, concurrency, count, check_mode)
    else:
        results = _run_groups(op, pending, concurrency, check_mode)
    for name, e in errors.items():
        results[name] = {'changed': False, 'failed': True, 'msg': e.message, 'error_kind': e.kind}
    diffs = dict((n, r.pop('diff')) for n, r in results.items() if 'diff' in r)
    failed = sorted(n for n, r in results.items() if r.get('failed'))
    out = {
        'changed': any(r.get('changed') for r in results.values()),
        'bmcs': results,
        'failed_bmcs': failed,
        'processes': count,
        'summary': {'total': len(results), 'changed': sum(1 for r in results.values() if r.get('changed')),
                    'failed': len(failed)},
    }
    if failed:
        shown = '; '.join(results[n]['msg'] for n in failed[:10])
        more = '' if len(failed) <= 10 else ' (and %d more, see failed_bmcs)' % (len(failed) - 10)
        out['failed'] = True
        out['msg'] = '%d of %d BMCs failed: %s%s' % (len(failed), len(results), shown, more)
    if not READ_ONLY[op]:
        out['diff'] = {
            'before': dict((n, d['before']) for n, d in sorted(diffs.items())),
            'after': dict((n, d['after']) for n, d in sorted(diffs.items())),
        }
    return out


def execute(op, params, check_mode=False, name=None):
    """Run ``op`` ('power', 'boot' or 'info'); returns a module result dict."""
    try:
        check_numbers(op, params, name or params.get('bmc_host') or 'the task')
    except BmcError as e:
        return {'changed': False, 'failed': True, 'msg': e.message, 'error_kind': e.kind}
    if params.get('bmcs') is not None:
        return _fleet(op, params, check_mode)
    try:
        result = _run_one(op, params, check_mode, name)
    except BmcError as e:
        return {'changed': False, 'failed': True, 'msg': e.message, 'error_kind': e.kind}
    if READ_ONLY[op]:
        result.pop('diff', None)
    return result


def run_module(op):
    """The whole ``main()`` of the BMC module of ``op`` ('power', 'boot' or 'info'), run as a module process.

    (On the controller the action plugin runs :func:`execute` in its own process instead, without this.)
    """
    module = AnsibleModule(argument_spec=argument_spec(op), supports_check_mode=True, **ARG_RULES)
    protect_fleet_secrets(module)
    if not HAS_PYGHMI:
        module.fail_json(msg=missing_required_lib('pyghmi'), exception=PYGHMI_IMPORT_ERROR)
    result = execute(op, module.params, module.check_mode)
    if not module._diff:
        result.pop('diff', None)
    if result.get('failed'):
        module.fail_json(**result)
    module.exit_json(**result)
