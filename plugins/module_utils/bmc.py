# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One BMC client over pyghmi, for IPMI 2.0 (lanplus) and Redfish.

Every call is bounded by a deadline that the caller owns (a pyghmi login
cannot be trusted to return on its own), lost packets are retried with
backoff, and every failure becomes a :class:`BmcError` whose message names
the BMC, what was asked and what to do. No ``AnsibleModule`` in here: the
modules, the action plugins and the inventory plugin all use this class.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import traceback
import uuid

from ansible_collections.ingot.metal.plugins.module_utils import pyghmi_compat
from ansible_collections.ingot.metal.plugins.module_utils._secrets import mask_secrets

PYGHMI_IMPORT_ERROR = None
try:
    from pyghmi import exceptions as pyghmi_exc
    # pyghmi's OEM code (two thirds of importing pyghmi) only on the first OEM lookup, and its Redfish client
    # only when a Redfish BMC is used: Ansible's controller imports this for every play with a BMC task.
    with pyghmi_compat.deferred_oem_lookup():
        from pyghmi.ipmi import command as ipmi_command
    redfish_command = pyghmi_compat.lazy_module('pyghmi.redfish.command')
    HAS_PYGHMI = True
except ImportError:  # pragma: no cover - exercised by the modules' error path
    HAS_PYGHMI = False
    PYGHMI_IMPORT_ERROR = traceback.format_exc()

if HAS_PYGHMI:
    pyghmi_compat.apply()

# Error kinds, stable strings the modules return as ``error_kind``.
AUTH = 'auth'
UNREACHABLE = 'unreachable'
TIMEOUT = 'timeout'
UNSUPPORTED = 'unsupported'
INSECURE = 'insecure'
PROTOCOL = 'protocol'
INVALID = 'invalid'
CERTIFICATE = 'certificate'

BOOT_DEVICES = ('pxe', 'disk', 'cdrom', 'bios', 'default')
_BOOT_TO_PYGHMI = {'pxe': 'network', 'disk': 'hd', 'cdrom': 'optical', 'bios': 'setup', 'default': 'default'}
_BOOT_FROM_PYGHMI = {
    'network': 'pxe', 'net': 'pxe', 'pxe': 'pxe', 'http': 'pxe',
    'hd': 'disk', 'safe': 'disk',
    'optical': 'cdrom', 'cd': 'cdrom', 'cdrom': 'cdrom', 'dvd': 'cdrom',
    'setup': 'bios', 'default': 'default', 'floppy': 'usb', 'usb': 'usb',
}

DEFAULT_PORTS = {'ipmi': 623, 'redfish': 443}

# Connection options shared by every BMC module; documented once in the
# ingot.metal.bmc doc fragment.
BMC_CONNECTION_SPEC = dict(
    bmc_host=dict(type='str'),
    bmc_port=dict(type='int'),
    bmc_user=dict(type='str'),
    bmc_password=dict(type='str', no_log=True),
    bmc_protocol=dict(type='str', default='ipmi', choices=['ipmi', 'redfish']),
    bmc_cipher_suite=dict(type='int', default=3, choices=[3, 17]),
    bmc_allow_ipmi15=dict(type='bool', default=False),
    bmc_timeout=dict(type='float', default=20.0),
    bmc_retries=dict(type='int', default=2),
    bmc_validate_certs=dict(type='bool', default=True),
    bmc_ca_path=dict(type='path'),
    bmc_cert_fingerprint=dict(type='str'),
    bmc_system_id=dict(type='str'),
    bmc_min_command_interval=dict(type='float', default=0.1),
)

# One BMC of a fleet: the connection options without their ``bmc_`` prefix.
BMC_FLEET_ITEM_SPEC = dict(
    name=dict(type='str'),
    host=dict(type='str', required=True),
    port=dict(type='int'),
    user=dict(type='str'),
    password=dict(type='str', no_log=True),
    protocol=dict(type='str', choices=['ipmi', 'redfish']),
    cipher_suite=dict(type='int', choices=[3, 17]),
    allow_ipmi15=dict(type='bool'),
    timeout=dict(type='float'),
    retries=dict(type='int'),
    validate_certs=dict(type='bool'),
    ca_path=dict(type='path'),
    cert_fingerprint=dict(type='str'),
    system_id=dict(type='str'),
    min_command_interval=dict(type='float'),
)

BMC_FLEET_SPEC = dict(
    bmcs=dict(type='list', elements='raw'),
    bmc_concurrency=dict(type='int', default=32),
    bmc_processes=dict(type='int', default=0),
)


class BmcError(Exception):
    """A failure talking to one BMC, with a message meant for the user."""

    def __init__(self, bmc, kind, message, hint=None):
        self.bmc = bmc
        self.kind = kind
        self.hint = hint
        text = 'BMC %s: %s' % (bmc, message)
        if hint:
            text += ' (%s)' % hint
        super(BmcError, self).__init__(text)
        self.message = text


class PowerWaitTimeout(BmcError):
    """The BMC kept answering, but its power state did not reach the one waited for in time."""


class _Deadline(Exception):
    pass


def check_number(owner, option, value, minimum=0.0, strict=False, maximum=None):
    """Refuse a timeout, count or interval out of its range (``None`` passes: the default applies)."""
    if value is None:
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float('nan')
    low_ok = number > minimum if strict else number >= minimum
    if not (math.isfinite(number) and low_ok and (maximum is None or number <= maximum)):
        want = '%s %s' % ('greater than' if strict else 'at least', ('%g' % minimum))
        if maximum is not None:
            want += ' and at most %g' % maximum
        raise BmcError(owner, INVALID, '%s=%r is out of range: it must be a finite number %s' % (option, value, want),
                       'fix %s' % option)


# Option -> (minimum, strict, maximum) of the numbers every BMC client takes.
CONNECTION_NUMBERS = {
    'bmc_timeout': (0.0, True, None),
    'bmc_retries': (0, False, 100),
    'bmc_port': (1, False, 65535),
    'bmc_min_command_interval': (0.0, False, 60.0),
}


def check_connection_numbers(owner, params):
    for option, (minimum, strict, maximum) in CONNECTION_NUMBERS.items():
        check_number(owner, option, params.get(option), minimum, strict, maximum)


def redfish_system_url(system_id):
    """The URL of a Redfish ComputerSystem from the registry's ``system_id`` (an id or a path)."""
    if not system_id:
        return None
    system_id = str(system_id).strip()
    if system_id.startswith('/'):
        return system_id
    return '/redfish/v1/Systems/' + system_id.strip('/')


class _CommandPacer:
    """The minimum interval between commands to one BMC (address and port), across every client of
    this process: the BMC's own protection, as Ironic's ``min_command_interval``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next = {}

    def reset(self):
        with self._lock:
            self._next.clear()

    def wait(self, key, interval, deadline):
        if not interval or interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(key, 0.0))
            self._next[key] = start + interval
        if start > now:
            _pause(max(0.0, min(start, deadline) - now))


PACER = _CommandPacer()
if hasattr(os, 'register_at_fork'):
    # A forked child (the fleet form's processes) starts with its own lock: another thread may hold this one.
    os.register_at_fork(after_in_child=lambda: setattr(PACER, '_lock', threading.Lock()))
# The pacer's own sleep (not ``time.sleep`` looked up at call time: that one is the retry backoff's).
_pause = time.sleep


class _Runner:
    """A daemon thread that runs the functions :func:`run_with_deadline` hands it, one at a time.

    Starting a thread costs about as much CPU as a whole IPMI exchange (0.1-0.3 ms), and every BMC call
    needs one; a runner is reused for the next call once it is done, so a fleet starts about as many
    threads as it runs BMCs at once, not one per call.
    """

    def __init__(self, pool):
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._job = None
        self.thread = threading.Thread(target=self._loop, name='bmc-call')
        self.thread.daemon = True
        self.thread.start()

    def submit(self, fn, name):
        box = {}
        done = threading.Event()
        with self._cond:
            self._job = (fn, box, done, name)
            self._cond.notify()
        return box, done

    def _loop(self):
        me = self.thread
        while True:
            with self._cond:
                while self._job is None:
                    self._cond.wait()
                fn, box, done, name = self._job
            me.name = name
            try:
                box['result'] = fn()
            except BaseException as e:  # handed to the caller
                box['error'] = e
            fn = None
            with self._cond:
                self._job = None
            keep = self._pool.release(self)
            done.set()
            if not keep:
                return


class _RunnerPool:
    """Idle runners of this process (a forked child starts with none: its parent's threads are not in it)."""

    MAX_IDLE = 64

    def __init__(self):
        self._reset()
        if hasattr(os, 'register_at_fork'):
            # A child has one thread: none of these runners, and a lock another thread held stays held.
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self):
        self._lock = threading.Lock()
        self._idle = []

    def acquire(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Runner(self)

    def release(self, runner):
        """Keep ``runner`` for the next call; False when enough are idle (it then ends)."""
        with self._lock:
            if len(self._idle) >= self.MAX_IDLE:
                return False
            self._idle.append(runner)
            return True


_RUNNERS = _RunnerPool()


def run_with_deadline(fn, timeout, name='bmc-call'):
    """Run ``fn()`` in a daemon thread and give up after ``timeout`` seconds.

    The thread is left behind when it overruns; being a daemon it never
    keeps the process alive. Threads are reused from call to call (see
    :class:`_Runner`); one that overran is reused only once ``fn`` returned.
    """
    box, done = _RUNNERS.acquire().submit(fn, name)
    if not done.wait(max(0.0, timeout)):
        raise _Deadline()
    if 'error' in box:
        raise box['error']
    return box.get('result')


class BmcClient:
    """A session to one BMC over IPMI 2.0 or Redfish."""

    def __init__(self, host, user=None, password=None, port=None, protocol='ipmi',
                 cipher_suite=3, allow_ipmi15=False, timeout=20.0, retries=2,
                 validate_certs=True, ca_path=None, cert_fingerprint=None, name=None, system_id=None,
                 min_command_interval=None):
        if not HAS_PYGHMI:
            raise BmcError(name or host, UNSUPPORTED,
                           'the Python library pyghmi is not installed on the controller',
                           'pip install pyghmi==1.6.19')
        if (protocol or 'ipmi') == 'ipmi' and pyghmi_compat.applied().get('untested'):
            # Unpatched, pyghmi would fall back to IPMI 1.5 against bmc_allow_ipmi15=false: refuse.
            raise BmcError(name or host, UNSUPPORTED, 'IPMI not attempted: ' + pyghmi_compat.untested_message())
        if not host:
            raise BmcError(name or '?', INVALID, 'no BMC address given', 'set bmc_host')
        check_connection_numbers(name or host, {
            'bmc_timeout': timeout, 'bmc_retries': retries, 'bmc_port': port,
            'bmc_min_command_interval': min_command_interval})
        self.host = host
        self.protocol = protocol or 'ipmi'
        self.port = int(port or DEFAULT_PORTS[self.protocol])
        self.user = user or ''
        self.password = password or ''
        self.name = name or ('%s:%s' % (host, self.port))
        self.cipher_suite = int(cipher_suite or 3)
        self.allow_ipmi15 = bool(allow_ipmi15)
        self.timeout = float(timeout if timeout is not None else 20.0)
        self.retries = int(retries if retries is not None else 2)
        self.validate_certs = validate_certs is not False
        self.ca_path = ca_path
        self.cert_fingerprint = cert_fingerprint
        self.sysurl = redfish_system_url(system_id)
        self.min_command_interval = float(min_command_interval if min_command_interval is not None else 0.1)
        self._cmd = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ plumbing
    def _fail(self, kind, message, hint=None):
        raise BmcError(self.name, kind, mask_secrets(str(message), [self.password]), hint)

    def _new_command(self):
        if self.protocol == 'ipmi':
            # The policy is this session's own (two entries of one BMC may differ), see pyghmi_compat.
            with pyghmi_compat.session_policy(self.cipher_suite, self.allow_ipmi15):
                return ipmi_command.Command(
                    bmc=self.host, userid=self.user.encode('utf-8'),
                    password=self.password.encode('utf-8'), port=self.port)
        kwargs = {'port': self.port}
        if self.sysurl:
            kwargs['sysurl'] = self.sysurl
        command = pyghmi_compat.loaded(redfish_command)
        return command.Command(self.host, self.user, self.password, self._verify_callback(), **kwargs)

    def _logout(self, cmd):
        """End a session, best effort and bounded."""
        if cmd is None or self.protocol != 'ipmi':
            return
        try:
            run_with_deadline(cmd.ipmi_session.logout, 2.0)
        except Exception:
            pass

    def _attempt(self, fn, box):
        """One attempt of :meth:`call`, in the deadline's thread. When the caller gave up on it
        (``box['abandoned']``), a session this attempt opened is logged out once it is done,
        so a login that finished late never holds one of the BMC's few session slots."""
        cmd = self._cmd
        try:
            if cmd is None:
                cmd = self._new_command()
                with box['lock']:
                    abandoned = box['abandoned']
                    if not abandoned:
                        self._cmd = cmd
                if abandoned:
                    late, cmd = cmd, None
                    self._logout(late)
                    return None
            return fn(cmd)
        finally:
            with box['lock']:
                late = cmd if box['abandoned'] else None
            # The caller dropped this session when it gave up: end it here, once the BMC answered.
            self._logout(late)

    def _verify_callback(self):
        """Certificate policy for Redfish, as a pyghmi ``verifycallback``.

        ``None`` makes pyghmi verify against the system CAs with hostname
        checking. A CA file is checked here with the standard library, and the
        leaf certificate it accepted is then pinned for pyghmi's connection.
        """
        if self.cert_fingerprint:
            want = self.cert_fingerprint.replace(':', '').strip().lower()
            return lambda der: hashlib.sha256(der).hexdigest() == want
        if not self.validate_certs:
            return lambda der: True
        if not self.ca_path:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.ca_path)
        except (OSError, ssl.SSLError) as e:
            raise BmcError(self.name, INVALID, 'cannot read the CA file bmc_ca_path=%s: %s' % (self.ca_path, e),
                           'give a readable PEM file of the CA that signed the BMC certificate')
        try:
            with socket.create_connection((self.host, self.port), timeout=min(self.timeout, 10)) as raw:
                with ctx.wrap_socket(raw, server_hostname=self.host) as tls:
                    pinned = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
        except ssl.SSLCertVerificationError as e:
            self._fail(CERTIFICATE, 'its TLS certificate is not trusted by %s: %s' % (self.ca_path, e.verify_message),
                       'fix the BMC certificate, set bmc_cert_fingerprint, or bmc_validate_certs=false for a lab')
        except (OSError, ssl.SSLError) as e:
            self._fail(UNREACHABLE, 'cannot open HTTPS to %s:%s: %s' % (self.host, self.port, e),
                       'check bmc_host and bmc_port')
        return lambda der: hashlib.sha256(der).hexdigest() == pinned

    def _classify(self, exc, what):
        """Turn a pyghmi or socket failure into (kind, message, hint, retryable)."""
        text = mask_secrets(str(exc), [self.password])
        low = text.lower()
        where = '%s:%s' % (self.host, self.port)
        if isinstance(exc, pyghmi_exc.UnrecognizedCertificate):
            return (CERTIFICATE, 'its TLS certificate does not match the pinned fingerprint or was rejected',
                    'check bmc_cert_fingerprint, or set bmc_validate_certs=false for a lab', False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (CERTIFICATE, 'its TLS certificate is not trusted: %s' % exc.verify_message,
                    'set bmc_ca_path or bmc_cert_fingerprint, or bmc_validate_certs=false for a lab', False)
        if 'sysurl is required' in low:
            # pyghmi: the service manages several ComputerSystems and none was named.
            return (INVALID, 'manages several systems and none was chosen while %s' % what,
                    'set bmc_system_id to the id or path of one of its /redfish/v1/Systems members', False)
        if isinstance(exc, pyghmi_exc.UnsupportedFunctionality):
            return (UNSUPPORTED, 'does not support %s: %s' % (what, text), None, False)
        if 'incorrect password' in low or 'unauthorized name' in low or re.search(r'\b401\b', low) \
                or 'access denied' in low \
                or 'unauthorized' in low or 'invalid credentials' in low:
            return (AUTH, 'refused the credentials of user %r while %s' % (self.user, what),
                    'check bmc_user and bmc_password', False)
        if 'ipmi 1.5' in low:
            return (INSECURE, text, None, False)
        if 'cipher suite' in low:
            return (UNSUPPORTED, 'does not accept cipher suite %d: %s' % (self.cipher_suite, text),
                    'choose another bmc_cipher_suite or enable it on the BMC', False)
        if isinstance(exc, pyghmi_exc.IpmiException) and getattr(exc, 'ipmicode', 0) in (0xc1, 0xc9, 0xcc, 0xd4, 0xd5):
            return (UNSUPPORTED, 'does not support %s (IPMI completion code 0x%02x: %s)' % (what, exc.ipmicode, text),
                    None, False)
        if isinstance(exc, (ConnectionRefusedError,)) or 'connection refused' in low:
            return (UNREACHABLE, 'refused the connection on %s while %s' % (where, what),
                    'check bmc_host and bmc_port', True)
        if isinstance(exc, pyghmi_exc.IpmiException) and low in ('', 'none'):
            # pyghmi gives up a session without a reason when nothing answered
            return (UNREACHABLE, 'did not answer on %s while %s' % (where, what),
                    'check bmc_host, bmc_port and that IPMI over LAN is enabled', True)
        if 'timeout' in low or 'timed out' in low or 'no longer connected' in low or 'unable to transmit' in low:
            return (UNREACHABLE, 'did not answer on %s while %s' % (where, what),
                    'check bmc_host, bmc_port and that IPMI over LAN / Redfish is enabled', True)
        if self.protocol == 'ipmi' and ('rakp' in low or 'rmcp' in low or 'session id' in low
                                        or 'failed to initialize' in low or 'insufficient resources' in low):
            # Session set-up trouble (a lost or late RAKP message, a busy BMC): worth another login.
            return (PROTOCOL, 'could not open a session on %s while %s: %s' % (where, what, text),
                    'the BMC may be busy or have no free session slot', True)
        if isinstance(exc, (ValueError, KeyError, TypeError, IndexError)) or 'json' in low or 'redfish not ready' in low:
            return (PROTOCOL, 'sent an answer that is not valid %s while %s: %s'
                    % ('Redfish' if self.protocol == 'redfish' else 'IPMI', what, text),
                    'check that %s is a %s endpoint' % (where, self.protocol), False)
        if isinstance(exc, OSError):
            return (UNREACHABLE, 'cannot be reached on %s while %s: %s' % (where, what, text),
                    'check bmc_host and bmc_port', True)
        return (PROTOCOL, 'failed while %s: %s' % (what, text), None, False)

    def call(self, what, fn):
        """Run ``fn(command)`` with login, retries, backoff and the deadline."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(TIMEOUT, 'no answer within %.1f s while %s' % (self.timeout, what),
                           'check that the BMC is reachable, or raise bmc_timeout')
            box = {'lock': threading.Lock(), 'abandoned': False}
            try:
                with self._lock:
                    PACER.wait((self.host, self.port), self.min_command_interval, deadline)
                    return run_with_deadline(lambda: self._attempt(fn, box), deadline - time.monotonic(),
                                             name='bmc-%s' % self.name)
            except _Deadline:
                with box['lock']:
                    box['abandoned'] = True
                self._cmd = None
                self._fail(TIMEOUT, 'no answer within %.1f s while %s' % (self.timeout, what),
                           'check that the BMC is reachable and the user exists, or raise bmc_timeout')
            except BmcError:
                raise
            except Exception as e:  # classified below, nothing is swallowed
                kind, message, hint, retryable = self._classify(e, what)
                self._cmd = None
                if not retryable or attempt > self.retries:
                    self._fail(kind, message + ('' if attempt == 1 else ' (after %d attempts)' % attempt), hint)
                backoff = min(2.0, 0.2 * (2 ** (attempt - 1))) * (0.5 + random.random() / 2)
                time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))

    def close(self):
        cmd, self._cmd = self._cmd, None
        self._logout(cmd)

    # ------------------------------------------------------------ power
    def get_power(self):
        def read(c):
            if self.protocol == 'redfish':
                return str(c.get_power()['powerstate'])
            # Get Chassis Status directly: pyghmi's get_power() first identifies the OEM (an extra exchange).
            return 'on' if bytearray(c.xraw_command(netfn=0, command=1)['data'])[0] & 1 else 'off'
        return self.call('reading the power state', read)

    def _ipmi_chassis(self, c, directive):
        c.xraw_command(netfn=0, command=2, data=(directive,))

    def power(self, action):
        """``action``: on, off (hard), shutdown (soft), cycle, reset."""
        what = 'requesting power %s' % action
        if self.protocol == 'ipmi':
            codes = {'off': 0, 'on': 1, 'cycle': 2, 'reset': 3, 'shutdown': 5}
            return self.call(what, lambda c: self._ipmi_chassis(c, codes[action]))
        names = {'on': 'on', 'off': 'off', 'shutdown': 'shutdown', 'cycle': 'reset', 'reset': 'reset'}
        return self.call(what, lambda c: c.set_power(names[action], wait=False))

    def wait_power(self, state, timeout, interval=0.5):
        """Poll until the BMC reports ``state``; return the seconds waited."""
        start = time.monotonic()
        while True:
            if self.get_power() == state:
                return time.monotonic() - start
            if time.monotonic() - start >= timeout:
                raise PowerWaitTimeout(self.name, TIMEOUT, 'power did not reach %r within %s s' % (state, timeout),
                                       'raise the wait timeout, or check the machine')
            time.sleep(min(interval, max(0.05, timeout - (time.monotonic() - start))))
            interval = min(interval * 1.5, 3.0)

    # ------------------------------------------------------------ boot
    def get_boot(self):
        def read(c):
            if self.protocol == 'redfish':
                return _redfish_boot(c._do_web_request(c.sysurl, cache=False).get('Boot') or {})
            info = c.get_bootdev()
            dev = info.get('bootdev')
            return {
                'device': _BOOT_FROM_PYGHMI.get(dev, str(dev)),
                'persistent': bool(info.get('persistent', False)),
                'uefi': info.get('uefimode'),
            }
        return self.call('reading the boot device', read)

    def set_boot(self, device, persistent=False, uefi=False):
        if device not in BOOT_DEVICES:
            self._fail(INVALID, 'unknown boot device %r' % device, 'use one of %s' % ', '.join(BOOT_DEVICES))

        def write(c):
            if self.protocol == 'ipmi':
                return c.set_bootdev(_BOOT_TO_PYGHMI[device], persist=persistent, uefiboot=bool(uefi))
            return c.set_bootdev(_BOOT_TO_PYGHMI[device], persist=persistent, uefiboot=uefi)
        return self.call('setting the boot device to %s' % device, write)

    # ------------------------------------------------------------ facts
    def device_id(self):
        def read(c):
            if self.protocol == 'redfish':
                info = c.bmcinfo or {}
                return {'manufacturer': info.get('Manufacturer'), 'model': info.get('Model'),
                        'firmware_version': info.get('FirmwareVersion')}
            rsp = c.xraw_command(netfn=6, command=1)
            d = bytearray(rsp['data'])
            major = d[2] & 0x7f
            minor = d[3]
            return {
                'device_id': d[0],
                'device_revision': d[1] & 0x0f,
                'firmware_version': '%d.%02x' % (major, minor),
                'ipmi_version': '%d.%d' % (d[4] & 0x0f, d[4] >> 4),
                'manufacturer_id': (d[6] | (d[7] << 8) | (d[8] << 16)) if len(d) > 8 else None,
                'product_id': (d[9] | (d[10] << 8)) if len(d) > 10 else None,
            }
        return self.call('reading the device id', read)

    def guid(self):
        def read(c):
            if self.protocol == 'redfish':
                return (c.sysinfo or {}).get('UUID')
            data = bytes(bytearray(c.xraw_command(netfn=6, command=0x37)['data']))
            return str(uuid.UUID(bytes_le=data[:16]))
        return self.call('reading the system GUID', read)

    def fru(self):
        def read(c):
            if self.protocol == 'redfish':
                s = c.sysinfo or {}
                return {'manufacturer': s.get('Manufacturer'), 'product': s.get('Model'),
                        'serial': s.get('SerialNumber'), 'part_number': s.get('PartNumber'),
                        'extra': []}
            c.oem_init()
            raw = c._get_zero_fru() or {}
            return _normalise_fru(raw)
        return self.call('reading the FRU inventory', read)

    def sensors(self):
        def read(c):
            out = []
            for s in c.get_sensor_data():
                out.append({
                    'name': getattr(s, 'name', None),
                    'type': getattr(s, 'type', None),
                    'value': getattr(s, 'value', None),
                    'unit': getattr(s, 'units', None),
                    'health': str(getattr(s, 'health', '')) or None,
                    'states': list(getattr(s, 'states', []) or []),
                })
            return out
        return self.call('reading the sensors', read)

    def macs(self, fru=None):
        """Host NIC MACs the BMC reports: Redfish EthernetInterfaces, or FRU custom fields."""
        if self.protocol == 'redfish':
            def read(c):
                found = []
                system = c._do_web_request(c.sysurl, cache=False)
                link = (system.get('EthernetInterfaces') or {}).get('@odata.id')
                if not link:
                    return found
                for member in c._do_web_request(link, cache=False).get('Members', []):
                    nic = c._do_web_request(member['@odata.id'], cache=False)
                    mac = (nic.get('MACAddress') or nic.get('PermanentMACAddress') or '').lower()
                    if mac and mac not in found:
                        found.append(mac)
                return found
            return self.call('reading the network interfaces', read)
        fru = fru if fru is not None else self.fru()
        return fru.get('macs', [])


_REDFISH_TARGETS = {'Pxe': 'pxe', 'UefiHttp': 'pxe', 'Hdd': 'disk', 'Cd': 'cdrom', 'BiosSetup': 'bios',
                    'None': 'default', 'Usb': 'usb', 'Floppy': 'usb'}


def _redfish_boot(boot):
    """The boot override from a Redfish ComputerSystem's ``Boot``, tolerant of what BMCs leave out."""
    enabled = boot.get('BootSourceOverrideEnabled')
    mode = boot.get('BootSourceOverrideMode')
    uefi = {'UEFI': True, 'Legacy': False}.get(mode)
    if enabled in (None, 'Disabled'):
        return {'device': 'default', 'persistent': True, 'uefi': uefi}
    target = boot.get('BootSourceOverrideTarget') or 'None'
    return {'device': _REDFISH_TARGETS.get(target, str(target).lower()), 'persistent': enabled == 'Continuous',
            'uefi': uefi}


def _text(v):
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode('utf-8', 'replace')
    return str(v).strip()


def _normalise_fru(raw):
    mac_re = re.compile(r'(?<![0-9a-fA-F:])((?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})(?![0-9a-fA-F:])')
    extra = []
    for key in ('product_extra', 'board_extra', 'chassis_extra', 'Product Extra', 'Board Extra', 'Chassis Extra'):
        for item in raw.get(key) or []:
            extra.append(_text(item))
    macs = []
    for item in extra:
        item = item or ''
        if item[:4].upper() == 'MAC:':
            item = item[4:]
        m = mac_re.search(item)
        if m and m.group(1).lower() not in macs:
            macs.append(m.group(1).lower())
    return {
        'manufacturer': _text(raw.get('Manufacturer') or raw.get('Board manufacturer')),
        'product': _text(raw.get('Product name') or raw.get('Board product name')),
        'serial': _text(raw.get('Serial Number') or raw.get('Board serial number')),
        'part_number': _text(raw.get('Model') or raw.get('Board model')),
        'version': _text(raw.get('Hardware Version')),
        'asset_tag': _text(raw.get('Asset Number')),
        'chassis': {
            'type': _text(raw.get('Chassis type')),
            'serial': _text(raw.get('Chassis serial number')),
            'part_number': _text(raw.get('Chassis part number')),
        },
        'board': {
            'manufacturer': _text(raw.get('Board manufacturer')),
            'product': _text(raw.get('Board product name')),
            'serial': _text(raw.get('Board serial number')),
            'part_number': _text(raw.get('Board model')),
        },
        'extra': extra,
        'macs': macs,
    }


def client_from_params(params, name=None):
    """Build a client from the ``bmc_*`` module options."""
    return BmcClient(
        host=params.get('bmc_host'), user=params.get('bmc_user'), password=params.get('bmc_password'),
        port=params.get('bmc_port'), protocol=params.get('bmc_protocol') or 'ipmi',
        cipher_suite=params.get('bmc_cipher_suite'), allow_ipmi15=params.get('bmc_allow_ipmi15'),
        timeout=params.get('bmc_timeout'), retries=params.get('bmc_retries'),
        validate_certs=params.get('bmc_validate_certs'), ca_path=params.get('bmc_ca_path'),
        cert_fingerprint=params.get('bmc_cert_fingerprint'), name=name, system_id=params.get('bmc_system_id'),
        min_command_interval=params.get('bmc_min_command_interval'))


def fleet_item_params(item, defaults):
    """Merge one ``bmcs`` entry (a dict without prefixes) over the task's ``bmc_*`` options."""
    merged = dict((k, v) for k, v in defaults.items() if k.startswith('bmc_'))
    for key, value in item.items():
        if value is not None and key != 'name':
            merged['bmc_' + key] = value
    return merged
