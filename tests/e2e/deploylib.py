"""Deploy helpers shared by tests/e2e/test_deploy.py and tests/bench/bench_deploy.py: the image of
roles/os_image in the lab provisioner's catalog, nodes made ready and allocated, the BMC modules
(ingot.metal.bmc_boot / bmc_power) in a playbook, and ssh with the host key pinned from the registry."""

import datetime
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _p in (HERE, os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'lab')):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ingot_lab import rack  # noqa: E402
from ingot_testlib import run_playbook  # noqa: E402

import e2e_image  # noqa: E402
from conftest import wait_for  # noqa: E402  (the one wait loop of the e2e tests)

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
    return e2e_image.build(progress=False, register={'url': rack.provisioner_url(), 'token': lab_rack.token()})


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
