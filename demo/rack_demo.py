# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The second half of the demo: the lab rack of virtual metal (``lab/ingot-lab up``).

A provisioner host configured by roles/provisioner and node containers behind virtual BMCs, on a lab
bridge.  A node is discovered by PXE (ipmitool alone), another is deployed with the Debian image that
roles/os_image builds (cached), through the provisioner API and the ingot.metal BMC modules, answers
``ssh`` with the host key pinned from the registry, then is wiped on release.  The rack is taken down
at the end and the host compared with what it was.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'e2e'))

import deploylib  # noqa: E402
import e2e_image  # noqa: E402
from conftest import Rack, host_snapshot  # noqa: E402
from deploylib import rack, wait_for  # noqa: E402

NODES = 2
BASE_PORT = 16430


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ''


def run(state_dir, step, expect):
    """Bring the rack up in STATE_DIR, show discovery, deploy, ssh and wipe, take it down."""
    lab_rack = Rack(state_dir)
    step('The lab rack: a provisioner host (roles/provisioner) and %d nodes behind virtual BMCs '
         '(lab/ingot-lab up; images are built once and cached)' % NODES)
    rack.up(lab_rack.lab, NODES, base_port=BASE_PORT, deploy_timeout=600)
    try:
        _discovery(lab_rack, step, expect)
        _deploy_and_wipe(lab_rack, os.path.join(state_dir, 'work'), step, expect)
    finally:
        step('lab/ingot-lab down: everything the rack created is removed, the host restored')
        rack.down(lab_rack.lab)
    expect(host_snapshot(lab_rack.state_dir) == lab_rack.before,
           'iptables, links and cgroup mounts are as they were before the rack')


def _discovery(lab_rack, step, expect):
    name = sorted(lab_rack.config)[-1]
    step('Discovery: ipmitool chassis bootdev pxe + power on %s; its firmware PXE-boots and reports itself' % name)
    lab_rack.ipmitool(name, 'chassis', 'bootdev', 'pxe')
    lab_rack.ipmitool(name, 'power', 'on')
    print('   ipmitool power status: %s' % lab_rack.ipmitool(name, 'power', 'status').stdout.strip())
    mac = lab_rack.macs(name)[0]
    node = wait_for(lambda: deploylib.node_by_mac(lab_rack, mac), 90, interval=1, what='the discovery of %s' % name)
    facts = node.get('facts') or {}
    print('   registry: %s is %s, MACs %s, %s CPUs, %s MiB memory'
          % (node['name'], node['state'], ', '.join(node['macs']), facts.get('cpus'), facts.get('memory_mib')))
    expect(node['state'] == 'discovered' and sorted(node['macs']) == sorted(m.lower() for m in lab_rack.macs(name)),
           '%s is discovered with the MACs of its definition' % name)
    deploylib.power_off(lab_rack, [name])


def _deploy_and_wipe(lab_rack, work, step, expect):
    os.makedirs(work, exist_ok=True)
    name = sorted(lab_rack.config)[0]
    vm = lab_rack.machine(name)
    step('roles/os_image: a Debian bookworm image with systemd, cloud-init (NoCloud) and sshd '
         '(cached after the first build), registered in the provisioner\'s catalog')
    built = e2e_image.build(progress=True)
    image = deploylib.install_image(lab_rack, built)
    print('   image %s: %d bytes, sha256 %s' % (image['name'], image['size'], image['sha256']))

    step('Deploy %s: allocate and deploy through the provisioner API, then ingot.metal.bmc_boot (pxe) '
         'and ingot.metal.bmc_power (on)' % name)
    key, pubkey = deploylib.ssh_keypair(work)
    hostname = 'demo-%s' % name
    node = deploylib.allocate(lab_rack, name, owner='demo')
    node = deploylib.deploy(lab_rack, node, image['name'], pubkey, hostname, 'deployed-by-the-demo')
    start = time.monotonic()
    deploylib.pxe_on(lab_rack, [name], workdir=os.path.join(work, 'pxe-on'))
    deploylib.wait_state(lab_rack, name, node, 'deployed', 600)
    said = [line for line in lab_rack.console(name).splitlines() if 'verified' in line]
    print('   deployed in %.1f s; the node\'s console: %s' % (time.monotonic() - start, said[-1] if said else '?'))
    ip, proc = deploylib.wait_ssh(lab_rack, name, node, key, work, timeout=180)
    print('   ssh root@%s hostname (host key pinned from the registry, no trust on first use): %s, %.1f s '
          'after power on' % (ip, proc.stdout.strip(), time.monotonic() - start))
    expect(proc.stdout.strip() == hostname, 'ssh answers with the deploy\'s hostname')
    status = deploylib.ssh(ip, key, os.path.join(work, 'known_hosts.%s' % name), 'cloud-init status --wait',
                           timeout=120)
    print('   cloud-init: %s' % status.stdout.strip())
    expect('status: done' in status.stdout, 'cloud-init applied the seed')
    expect(_read(os.path.join(vm.disk, 'etc', 'hostname')).strip() == hostname
           and pubkey in _read(os.path.join(vm.disk, 'root', '.ssh', 'authorized_keys')),
           'the node\'s disk holds its hostname and the authorized key')

    step('Release %s with wipe: the node PXE-boots the agent in wipe mode, its disk is emptied' % name)
    lab_rack.api('/api/v1/nodes/%s/release' % node['id'], 'POST', {'wipe': True})
    start = time.monotonic()
    deploylib.pxe_cycle(lab_rack, [name], workdir=os.path.join(work, 'pxe-cycle'))
    deploylib.wait_state(lab_rack, name, node, 'ready', 600)
    record = lab_rack.api('/api/v1/nodes/%s' % node['id'])
    print('   wiped in %.1f s; registry: %s, owner %s' % (time.monotonic() - start, record['state'], record['owner']))
    expect(record['state'] == 'ready' and os.listdir(vm.disk) == [], 'the node is ready and its disk is empty')
    deploylib.power_off(lab_rack, [name])
    subprocess.run(['rm', '-rf', work], check=False)
