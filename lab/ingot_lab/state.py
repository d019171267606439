"""The lab's state directory: configuration, machine state, server records, logs.

Layout of ``$INGOT_LAB_DIR`` (default ``<collection root>/.lab``)::

    config.json            the virtual BMCs (ports, credentials, machine specs, faults); mode 0600
    machines/NAME.json     each machine's state (power, boot override, last boot)
    run/vbmc-ID.pid        pid of a running server process ("shard")
    run/vbmc-ID.json       what that process serves, and the config generation it applied
    logs/vbmc-ID.log       its log (passwords are never logged); vbmc-ID.out its stdout/stderr
    .lock                  serialises configuration changes
"""

import contextlib
import fcntl
import json
import os
import re
import signal
import tempfile
import time

CONFIG_VERSION = 1
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')
MAC_RE = re.compile(r'^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$')
DEFAULT_SETTINGS = {'session_timeout': 60.0}


class LabError(Exception):
    """A lab operation failed; the message says why, for a user."""


def collection_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_state_dir():
    return os.environ.get('INGOT_LAB_DIR') or os.path.join(collection_root(), '.lab')


def write_file_atomic(path, text, mode=0o600):
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def process_state(pid):
    """The /proc state letter of ``pid`` ('R', 'S', 'Z', ...), None when it does not exist."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError, ValueError):
        return None


class Lab:
    """One lab state directory."""

    def __init__(self, state_dir=None):
        self.dir = os.path.abspath(state_dir or default_state_dir())
        self.config_path = os.path.join(self.dir, 'config.json')
        self.machines_dir = os.path.join(self.dir, 'machines')
        self.run_dir = os.path.join(self.dir, 'run')
        self.logs_dir = os.path.join(self.dir, 'logs')

    def ensure(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for path in (self.machines_dir, self.run_dir, self.logs_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def locked(self):
        self.ensure()
        with open(os.path.join(self.dir, '.lock'), 'a') as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- configuration -------------------------------------------------------------------------
    def load(self):
        try:
            with open(self.config_path) as handle:
                config = json.load(handle)
        except FileNotFoundError:
            config = {}
        except ValueError as err:
            raise LabError('%s is not valid JSON: %s' % (self.config_path, err))
        config.setdefault('version', CONFIG_VERSION)
        config.setdefault('generation', 0)
        settings = dict(DEFAULT_SETTINGS)
        settings.update(config.get('settings') or {})
        config['settings'] = settings
        config.setdefault('bmcs', {})
        return config

    def save(self, config):
        """Write the configuration (mode 0600: it holds the lab's BMC passwords)."""
        self.ensure()
        config['generation'] = int(config.get('generation', 0)) + 1
        write_file_atomic(self.config_path, json.dumps(config, indent=1, sort_keys=True) + '\n', 0o600)
        return config['generation']

    def config_mtime(self):
        try:
            return os.stat(self.config_path).st_mtime_ns
        except FileNotFoundError:
            return None

    def machine_state_path(self, name):
        return os.path.join(self.machines_dir, name + '.json')

    # -- validation ----------------------------------------------------------------------------
    @staticmethod
    def validate_entry(name, entry, config):
        if not NAME_RE.match(name):
            raise LabError('invalid vBMC name %r: letters, digits, "_", "." and "-" only' % name)
        port = entry.get('port')
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise LabError('%s: invalid port %r' % (name, port))
        for mac in entry.get('machine', {}).get('macs') or ():
            if not MAC_RE.match(mac):
                raise LabError('%s: invalid MAC address %r' % (name, mac))
        for other, oentry in config['bmcs'].items():
            if other == name:
                continue
            if oentry['port'] == port and oentry.get('address') == entry.get('address'):
                raise LabError('%s: port %d is already used by %s' % (name, port, other))
            taken = set(m.lower() for m in oentry.get('machine', {}).get('macs') or ())
            clash = taken.intersection(m.lower() for m in entry.get('machine', {}).get('macs') or ())
            if clash:
                raise LabError('%s: MAC %s is already used by %s' % (name, sorted(clash)[0], other))

    # -- server processes ("shards") -----------------------------------------------------------
    def shard_paths(self, shard_id):
        base = os.path.join(self.run_dir, 'vbmc-%s' % shard_id)
        return base + '.pid', base + '.json'

    def log_path(self, shard_id):
        return os.path.join(self.logs_dir, 'vbmc-%s.log' % shard_id)

    def write_shard(self, shard_id, record):
        self.ensure()
        pid_path, json_path = self.shard_paths(shard_id)
        write_file_atomic(json_path, json.dumps(record, indent=1, sort_keys=True) + '\n', 0o644)
        write_file_atomic(pid_path, '%d\n' % record['pid'], 0o644)

    def remove_shard(self, shard_id, pid=None):
        for path in self.shard_paths(shard_id):
            with contextlib.suppress(OSError):
                if pid is not None and path.endswith('.json'):
                    with open(path) as handle:
                        if json.load(handle).get('pid') != pid:
                            continue
                os.unlink(path)

    def is_our_process(self, pid):
        """Is ``pid`` alive (not a zombie) and an ingot_lab server of this state directory?"""
        state = process_state(pid)
        if state is None or state == 'Z':
            return False
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().split(b'\0')
        except OSError:
            return False
        return b'ingot_lab' in b' '.join(cmdline) and self.dir.encode() in cmdline

    def shards(self):
        """Records of the server processes, each with ``alive``."""
        found = []
        if not os.path.isdir(self.run_dir):
            return found
        for entry in sorted(os.listdir(self.run_dir)):
            if not (entry.startswith('vbmc-') and entry.endswith('.json')):
                continue
            try:
                with open(os.path.join(self.run_dir, entry)) as handle:
                    record = json.load(handle)
            except (OSError, ValueError):
                continue
            record['alive'] = self.is_our_process(int(record.get('pid', 0)))
            found.append(record)
        return found

    def live_shards(self):
        return [s for s in self.shards() if s['alive']]

    def clean_stale_shards(self):
        for shard in self.shards():
            if not shard['alive']:
                self.remove_shard(shard['id'])

    def served(self):
        """{vBMC name: pid} of what running server processes serve."""
        return {name: shard['pid'] for shard in self.live_shards() for name in shard.get('names', ())}

    def signal_shards(self, signum=signal.SIGHUP):
        for shard in self.live_shards():
            with contextlib.suppress(ProcessLookupError):
                os.kill(shard['pid'], signum)

    def wait_generation(self, generation, timeout=5.0):
        """Wait until every running server applied configuration ``generation``."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [s for s in self.live_shards() if s.get('generation', 0) < generation]
            if not behind:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
