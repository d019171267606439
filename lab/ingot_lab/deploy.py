"""Deploy helpers of the lab rack (the e2e tests, the deploy benchmark, the demo): the image of
roles/os_image in the lab provisioner's catalog, nodes made ready and allocated, the BMC modules
(ingot.metal.bmc_boot / bmc_power) in a playbook, and ssh with the host key pinned from the registry."""

import datetime
import os
import re
import shutil
import subprocess
import threading
import time

from ingot_lab import node_image, rack
from ingot_lab.rack_client import wait_for
from ingot_lab.runner import REPO, run_playbook

STORE = '/var/lib/ingot-provisioner/images'


def install_image(lab_rack, result):
    """Copy the image built by roles/os_image into the lab provisioner's image store and register it
    there with the role itself (os_image_register: ingot.metal.image); returns the role's result."""
    fname = os.path.basename(result['path'])
    present = subprocess.run(['docker', 'exec', rack.PROVISIONER, 'sh', '-c',
                              'cd %s && sha256sum %s 2>/dev/null' % (STORE, fname)],
                             capture_output=True, text=True, check=False).stdout.split()
    if not present or present[0] != result['sha256']:
        subprocess.run(['docker', 'cp', result['path'], '%s:%s/%s' % (rack.PROVISIONER, STORE, fname)], check=True)
        subprocess.run(['docker', 'exec', rack.PROVISIONER, 'chmod', '0644', '%s/%s' % (STORE, fname)], check=True)
    return node_image.build(progress=False, register={'url': rack.provisioner_url(), 'token': lab_rack.token()},
                            docker=result['name'] == node_image.DOCKER_NAME)


def node_by_mac(lab_rack, mac):
    found = [n for n in lab_rack.api('/api/v1/nodes')['items'] if mac in n['macs']]
    return found[0] if found else None


def allocate(lab_rack, name, owner='e2e'):
    """The registry node of lab node NAME, registered (or enrolled) and allocated to (owner, NAME)
    through a tag only it carries (allocation picks the first matching node)."""
    mac = lab_rack.macs(name)[0]
    node = node_by_mac(lab_rack, mac)
    if node is None:
        entry = lab_rack.config[name]
        node = lab_rack.api('/api/v1/nodes', 'POST', {
            'name': 'lab-%s' % name, 'macs': lab_rack.macs(name), 'state': 'ready',
            'bmc': {'address': entry.get('address', '127.0.0.1'), 'port': entry['port'], 'protocol': 'ipmi'}})
    if node['state'] == 'discovered':
        node = lab_rack.api('/api/v1/nodes/%s/enroll' % node['id'], 'POST', {})
    tag = 'lab-%s' % name
    if tag not in node['tags']:
        lab_rack.api('/api/v1/nodes/%s' % node['id'], 'PATCH', {'tags': node['tags'] + [tag]})
    if node['state'] == 'ready':
        node = lab_rack.api('/api/v1/allocations', 'POST', {'owner': owner, 'name': name, 'tags': [tag]})
    assert node['state'] in ('allocated', 'deploy_failed'), node
    return node


def deploy(lab_rack, node, image, pubkey, hostname, marker):
    user_data = {'write_files': [{'path': '/root/e2e-marker', 'content': marker + '\n', 'permissions': '0644'}]}
    import json   # pylint: disable=import-outside-toplevel
    return lab_rack.api('/api/v1/nodes/%s/deploy' % node['id'], 'POST', {
        'image': image, 'ssh_keys': [pubkey], 'hostname': hostname, 'user_data': json.dumps(user_data)})


def bmc_inventory(lab_rack, names):
    hosts = {}
    for name in names:
        entry = lab_rack.config[name]
        hosts[name] = {'bmc_host': entry.get('address', '127.0.0.1'), 'bmc_port': entry['port'],
                       'bmc_user': entry['user'], 'bmc_password': entry['password']}
    return {'all': {'children': {'rack': {'hosts': hosts}},
                    'hosts': {'localhost': {'ansible_connection': 'local'}}}}


def with_timeout(task, **extra):
    """A copy of TASK whose ingot.metal.bmc_* arguments have bmc_timeout 60 (unless set) and EXTRA."""
    return {k: (dict({'bmc_timeout': 60}, **v, **extra) if k.startswith('ingot.metal.bmc_') else v)
            for k, v in task.items()}


def bmc(lab_rack, names, *tasks, workdir=None):
    """Run ingot.metal BMC module tasks (delegated to localhost) on the lab nodes NAMES."""
    # bmc_timeout: the lab's vBMCs share two cores with ten booting nodes (and whatever else runs)
    play = [{'name': 'lab BMCs', 'hosts': 'rack', 'gather_facts': False,
             'tasks': [dict(with_timeout(t), delegate_to='localhost') for t in tasks]}]
    r = run_playbook(play, bmc_inventory(lab_rack, names), forks=max(1, min(len(names), 10)), timeout=300,
                     workdir=workdir)
    assert r.status == 'successful' and r.rc == 0, r.stdout[-4000:]
    return r


def fleet(lab_rack, names, *tasks, workdir=None):
    """Run ingot.metal BMC module tasks in their fleet form (one task for all NAMES on localhost, ``bmcs:``
    the inventory host names, their bmc_* host vars)."""
    bmcs = list(names)
    play = [{'name': 'lab BMCs (fleet form)', 'hosts': 'localhost', 'gather_facts': False,
             'tasks': [with_timeout(t, bmcs=bmcs) for t in tasks]}]
    r = run_playbook(play, bmc_inventory(lab_rack, names), timeout=300, workdir=workdir)
    assert r.status == 'successful' and r.rc == 0, r.stdout[-4000:]
    return r


PXE_BOOT = {'name': 'boot device pxe', 'ingot.metal.bmc_boot': {'device': 'pxe'}}
POWER_ON = {'name': 'power on', 'ingot.metal.bmc_power': {'state': 'on'}}
POWER_CYCLE = {'name': 'power cycle', 'ingot.metal.bmc_power': {'state': 'restarted', 'method': 'hard'}}
POWER_OFF = {'name': 'power off (hard)', 'ingot.metal.bmc_power': {'state': 'off', 'method': 'hard'}}


def pxe_on_fleet(lab_rack, names, workdir=None):
    """pxe_on for many nodes in two fleet-form tasks (what an operator uses for a rack)."""
    return fleet(lab_rack, names, PXE_BOOT, POWER_ON, workdir=workdir)


def pxe_cycle_fleet(lab_rack, names, workdir=None):
    """Boot device pxe and a hard power cycle for many nodes, in two fleet-form tasks."""
    return fleet(lab_rack, names, PXE_BOOT, POWER_CYCLE, workdir=workdir)


def pxe_on(lab_rack, names, workdir=None):
    """Boot device pxe (next boot) and power on, through ingot.metal.bmc_boot and bmc_power (a task per host)."""
    return bmc(lab_rack, names, PXE_BOOT, POWER_ON, workdir=workdir)


def pxe_cycle(lab_rack, names, workdir=None):
    return bmc(lab_rack, names, PXE_BOOT, POWER_CYCLE, workdir=workdir)


def power_off(lab_rack, names, workdir=None):
    return bmc(lab_rack, names, POWER_OFF, workdir=workdir)


def wait_state(lab_rack, name, node, state, timeout):
    """Wait until the registry node NODE (lab node NAME) is in STATE; on timeout, say where it is instead
    and what its console printed last."""
    url = '/api/v1/nodes/%s' % node['id']
    try:
        return wait_for(lambda: lab_rack.api(url)['state'] == state, timeout, interval=1,
                        what='node %s (%s) to be %s' % (node['name'], name, state))
    except AssertionError as exc:
        record = lab_rack.api(url)
        console = '\n'.join(lab_rack.console(name).splitlines()[-20:])
        raise AssertionError('%s: it is %s (last error: %s); console:\n%s'
                             % (exc, record['state'], record.get('last_error'), console)) from None


def node_ip(lab_rack, name):
    """The IPv4 address the node's OS holds on eth0 (read in its network namespace)."""
    vm = lab_rack.machine(name)
    # docker inspect + nsenter, not docker exec: polled by ten threads at once, an exec per poll would
    # cost the busy machine more CPU than what is measured
    pid = subprocess.run(['docker', 'inspect', '-f', '{{.State.Pid}}', vm.container],
                         capture_output=True, text=True, check=False).stdout.strip()
    if not pid.isdigit() or pid == '0':
        return None
    proc = subprocess.run(['nsenter', '-t', pid, '-n', 'ip', '-4', '-o', 'addr', 'show', 'eth0'],
                          capture_output=True, text=True, check=False)
    for word in proc.stdout.split():
        if word.count('.') == 3 and '/' in word:
            return word.split('/')[0]
    return None


def known_hosts(path, node, ip):
    """A known_hosts file with exactly the host keys the registry pinned for NODE."""
    keys = node['ssh_host_keys'] or {}
    assert keys, 'the registry holds no host key for %s' % node['name']
    with open(path, 'w') as handle:
        for key in keys.values():
            handle.write('%s %s\n' % (ip, key.strip()))
    return path


def ssh(ip, key_file, known_hosts_file, command, timeout=20):
    argv = ['ssh', '-i', key_file, '-o', 'UserKnownHostsFile=%s' % known_hosts_file,
            '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
            '-o', 'HostKeyAlgorithms=ssh-ed25519', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=3',
            '-o', 'IdentitiesOnly=yes', '-o', 'LogLevel=ERROR', 'root@%s' % ip, command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def ssh_keypair(directory):
    key = os.path.join(directory, 'id_ed25519')
    if not os.path.exists(key):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'e2e@ingot-lab', '-f', key], check=True)
    with open(key + '.pub') as handle:
        return key, handle.read().strip()


def wait_ssh(lab_rack, name, node, key, directory, timeout=120, command='hostname'):
    """Wait until ssh with the pinned host key runs COMMAND on the node; returns (ip, result)."""
    kh = os.path.join(directory, 'known_hosts.%s' % name)
    state = {}

    def answers():
        ip = node_ip(lab_rack, name)
        if not ip:
            return None
        known_hosts(kh, node, ip)
        proc = ssh(ip, key, kh, command)
        state['last'] = proc
        return (ip, proc) if proc.returncode == 0 else None

    try:
        return wait_for(answers, timeout, interval=1, what='ssh to %s with its pinned host key' % name)
    except AssertionError as exc:
        last = state.get('last')
        tried = ('last ssh: rc %d, %s' % (last.returncode, last.stderr[-500:].strip()) if last
                 else 'the node never had an IPv4 address on eth0')
        record = lab_rack.api('/api/v1/nodes/%s' % node['id'])
        console = '\n'.join(lab_rack.console(name).splitlines()[-15:])
        raise AssertionError('%s; %s; registry: %s (last error: %s); console:\n%s'
                             % (exc, tried, record['state'], record.get('last_error'), console)) from None


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))


def agent_write_seconds(lab_rack, node_id):
    """Seconds between the agent's "deploying image" report and its success report, the last deploy."""
    events = lab_rack.api('/api/v1/nodes/%s/events' % node_id)['items']
    start = [e for e in events if 'deploying image' in (e.get('message') or '')]
    done = [e for e in events if e.get('kind') == 'agent_report' and 'installed on' in (e.get('message') or '')]
    if not start or not done:
        return None
    return (parse_time(done[-1]['time']) - parse_time(start[-1]['time'])).total_seconds()


class Verbs:
    """Runs ``ingot.metal.<verb>`` playbooks against the lab rack with inventories/lab, as a user would."""

    def __init__(self, lab_rack, work, owner):
        self.lab_rack = lab_rack
        self.work = work
        self.store = os.path.join(work, 'store')
        self.inventory = os.path.join(work, 'inventory')
        shutil.copytree(os.path.join(REPO, 'inventories', 'lab'), self.inventory)
        shutil.copy(os.path.join(lab_rack.state_dir, 'inventory.yml'), os.path.join(self.inventory, 'vbmc.yml'))
        self.docker_config = os.path.join(work, 'docker-config')
        os.makedirs(self.docker_config, exist_ok=True)
        self.env = {'INGOT_PROVISIONER_URL': rack.provisioner_url(), 'INGOT_PROVISIONER_TOKEN': lab_rack.token(),
                    'INGOT_MACHINE_STORE': self.store, 'INGOT_OWNER': owner, 'DOCKER_CONFIG': self.docker_config,
                    'ANSIBLE_HOST_KEY_CHECKING': 'True', 'INGOT_SSH_CONFIG': os.path.join(work, 'ssh_config')}
        self.owner = owner
        self.runs = 0

    def run(self, verb, name, check=False, expect_ok=True, verbosity=0, progress=False, cancel_when=None, **extra):
        self.runs += 1
        result = run_playbook('ingot.metal.%s' % verb, self.inventory, extravars=dict(name=name, **extra),
                              envvars=self.env, check=check, diff=check, timeout=1500, verbosity=verbosity, progress=progress,
                              workdir=os.path.join(self.work, 'runs', '%02d-%s' % (self.runs, verb)),
                              cancel_when=cancel_when)
        if expect_ok:
            assert result.status == 'successful' and result.rc == 0, result.stdout[-6000:]
        return result

    def node(self, machine):
        nodes = [n for n in self.lab_rack.api('/api/v1/nodes?owner=%s' % self.owner)['items']
                 if n.get('allocation_name') == machine]
        return nodes[0] if nodes else None

    def docker(self, machine, *args, env=None, timeout=120, check=True, stdin=None):
        """The docker CLI pointed at MACHINE through the env file the verbs wrote (DOCKER_HOST, TLS)."""
        full = dict(os.environ, DOCKER_CONFIG=self.docker_config)
        full.update(env if env is not None else env_file(os.path.join(self.store, machine, 'env')))
        proc = subprocess.run(['docker'] + list(args), env=full, capture_output=True, timeout=timeout, check=False,
                              stdin=stdin)
        if check:
            assert proc.returncode == 0, (args, proc.stderr.decode()[-2000:])
        return proc


def env_file(path):
    """The DOCKER_* variables of an env file written by ingot.metal.env (export NAME="value" lines)."""
    env = {}
    with open(path) as handle:
        for line in handle:
            found = re.match(r'^export (DOCKER_[A-Z_]+)="(.*)"$', line.strip())
            if found:
                env[found.group(1)] = found.group(2)
    assert {'DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH'} <= set(env), env
    return env


def task_messages(result, task):
    """The ``msg`` lines of every result of TASK in a run (a loop's items included), in order."""
    lines = []
    for r in result.results:
        if r.task != task:
            continue
        for res in r.result.get('results') or [r.result]:
            msg = res.get('msg')
            lines += msg if isinstance(msg, list) else str(msg).splitlines() if msg is not None else []
    return lines


class Watcher:
    """Prints, while a playbook runs, each node's state changes and its deploy agent's progress (polled from the
    registry every INTERVAL seconds): the progress of every wait, as an operator would watch it."""

    def __init__(self, lab_rack, interval=2.0, prefix='   | '):
        self.lab_rack, self.interval, self.prefix = lab_rack, interval, prefix
        self.seen = {}
        self.last_event = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                nodes = self.lab_rack.api('/api/v1/nodes')['items']
            except OSError:
                continue
            for node in nodes:
                key = (node['state'], node.get('allocation_name'))
                if self.seen.get(node['name']) != key:
                    self.seen[node['name']] = key
                    print('%s%5.1f s  %-6s %-14s %s' % (
                        self.prefix, time.monotonic() - self.started, node['name'],
                        node['state'], node.get('allocation_name') or ''), flush=True)
                if node['state'] in ('deploying', 'releasing'):
                    self._progress(node)

    def _progress(self, node):
        try:
            events = self.lab_rack.api('/api/v1/nodes/%s/events' % node['id'])['items']
        except OSError:
            return
        fresh = [e for e in events if e['id'] > self.last_event.get(node['name'], 0)
                 and e['kind'] in ('agent_progress', 'agent_report')]
        if events:
            self.last_event[node['name']] = max(e['id'] for e in events)
        for event in fresh[-1:]:
            written = (event.get('data') or {}).get('bytes_written')
            print('%s%5.1f s  %-6s %s%s' % (
                self.prefix, time.monotonic() - self.started, node['name'],
                event['message'], ' (%d MB written)' % (written >> 20) if written else ''), flush=True)
