"""A running lab rack seen from outside, as the e2e tests, the demo and the deploy benchmark drive it: its
vBMCs through ipmitool, its provisioner through the API with the rack's admin token, its nodes' consoles, and a
snapshot of what the rack may change on the host (compared before ``up`` and after ``down``)."""

import json
import os
import subprocess
import time
import urllib.request

from ingot_lab import manage, rack
from ingot_lab.state import Lab


def host_snapshot(state_dir):
    """What the lab may change on the host: its iptables rules, links, cgroup mounts, and mounts
    under its state directory (other engineers' bridges and containers are not the lab's business)."""
    rules = [line for line in subprocess.run(['iptables-save'], capture_output=True, text=True,
                                             check=True).stdout.splitlines()
             if rack.BRIDGE in line or rack.RULE_COMMENT in line or line.startswith(':FORWARD')]
    links = [line.split(':')[1].strip().split('@')[0] for line in subprocess.run(
        ['ip', '-o', 'link'], capture_output=True, text=True, check=True).stdout.splitlines()]
    links = sorted(n for n in links if n.startswith(('ingotlab', 'inv', 'vinglab')) or n == rack.BRIDGE)
    mounts = sorted(line for line in subprocess.run(['findmnt', '-rn', '-o', 'TARGET,FSTYPE,OPTIONS'],
                                                    capture_output=True, text=True, check=True).stdout.splitlines()
                    if line.startswith('/sys/fs/cgroup') or str(state_dir) in line)
    with open('/proc/sys/net/ipv4/ip_forward') as handle:
        forward = handle.read().strip()
    return {'iptables': rules, 'links': links, 'mounts': mounts, 'ip_forward': forward}


class Rack:
    def __init__(self, state_dir):
        self.state_dir = str(state_dir)
        self.lab = Lab(self.state_dir)
        self.before = host_snapshot(self.state_dir)
        self.up_seconds = None

    def up(self, nodes, base_port, deploy_timeout):
        start = time.monotonic()
        rack.up(self.lab, nodes, base_port=base_port, deploy_timeout=deploy_timeout)
        self.up_seconds = time.monotonic() - start

    def down(self):
        rack.down(self.lab)

    @property
    def config(self):
        return self.lab.load()['bmcs']

    def token(self):
        with open(os.path.join(self.state_dir, 'rack.json')) as handle:
            return json.load(handle)['token']

    def view_token(self):
        """The read-only token of the provisioner's web view (the rack sets provisioner_view_token)."""
        with open(os.path.join(self.state_dir, 'rack.json')) as handle:
            return json.load(handle)['view_token']

    def ipmitool(self, name, *args, password=None, check=True):
        entry = self.config[name]
        argv = ['ipmitool', '-I', 'lanplus', '-H', entry.get('address', '127.0.0.1'), '-p', str(entry['port']),
                '-U', entry['user'], '-P', password or entry['password'], '-R', '2', '-N', '2'] + list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def power(self, name):
        out = self.ipmitool(name, 'power', 'status').stdout
        return 'on' if out.strip().endswith('on') else 'off'

    def machine(self, name):
        return manage.machine(self.lab, name)

    def console(self, name):
        return self.machine(name).console()

    def api(self, path, method='GET', body=None):
        req = urllib.request.Request(rack.provisioner_url() + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={'Authorization': 'Bearer %s' % self.token(),
                                              'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b'null')

    def macs(self, name):
        return self.config[name]['machine']['macs']


def wait_for(predicate, timeout, interval=0.25, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out after %.0f s waiting for %s' % (timeout, what))
