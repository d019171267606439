# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The second half of the demo: Docker machines on the lab rack of virtual metal (``lab/ingot-lab up``).

A provisioner host configured by roles/provisioner and node containers behind virtual BMCs, on a lab bridge.
Everything happens through the collection's verb playbooks (run by ansible-runner with inventories/lab), as a
user runs them: ``discover`` and ``enroll`` the nodes, ``create`` two Docker machines at once (PXE through
their BMCs, the image of roles/os_image with Docker, host keys pinned from the registry, Docker with TLS),
run a container on each over TLS (through the env lines and through the docker context), ``ls``, ``ssh``,
``rm`` one (its disk wiped), ``create`` again on the freed node (the old client certificate refused there),
``rm`` of all. A watcher prints the nodes' states and the deploy agent's progress during every wait. The rack
is taken down at the end and the host compared with what it was.
"""

import os
import shutil
import ssl
import socket
import subprocess
import time

from ingot_lab import deploy, node_image
from ingot_lab.deploy import Verbs, Watcher, rack
from ingot_lab.rack_client import Rack, host_snapshot

NODES = 2
BASE_PORT = 16430
OWNER = 'demo'
IMAGE = 'ingot-test/debian-systemd:bookworm'   # loaded into each machine over TLS, to run a container


def _refused(host, old_cert_dir, ca):
    """True when dockerd at HOST refuses the client certificate of OLD_CERT_DIR."""
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False
    context.load_cert_chain(os.path.join(old_cert_dir, 'cert.pem'), os.path.join(old_cert_dir, 'key.pem'))
    try:
        with socket.create_connection((host, 2376), timeout=10) as raw:
            with context.wrap_socket(raw) as conn:
                conn.sendall(b'GET /version HTTP/1.0\r\n\r\n')
                return not conn.recv(100).startswith(b'HTTP/1.')
    except (OSError, ssl.SSLError):
        return True


def _diff(before, after):
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            lines += ['   %s: - %s' % (key, x) for x in old if x not in new]
            lines += ['   %s: + %s' % (key, x) for x in new if x not in old]
        else:
            lines.append('   %s: %s -> %s' % (key, old, new))
    return lines


def run(state_dir, step, expect):
    """Bring the rack up in STATE_DIR, tell the machines' story, take it down."""
    times = {}
    lab_rack = Rack(state_dir)
    step('The lab rack: a provisioner host (roles/provisioner) and %d nodes behind virtual BMCs '
         '(lab/ingot-lab up; images are built once and cached)' % NODES)
    start = time.monotonic()
    rack.up(lab_rack.lab, NODES, base_port=BASE_PORT, deploy_timeout=600)
    times['lab up'] = time.monotonic() - start
    try:
        _story(lab_rack, os.path.join(state_dir, 'work'), step, expect, times)
    finally:
        step('lab/ingot-lab down: everything the rack created is removed, the host restored')
        start = time.monotonic()
        rack.down(lab_rack.lab)
        times['lab down'] = time.monotonic() - start
    after = host_snapshot(lab_rack.state_dir)
    for line in _diff(lab_rack.before, after):
        print(line)
    expect(after == lab_rack.before, 'iptables, links and cgroup mounts are as they were before the rack')
    step('Times')
    for what, seconds in times.items():
        print('   %-40s %6.1f s' % (what, seconds))


def _timed(times, what, func, *args, **kwargs):
    start = time.monotonic()
    result = func(*args, **kwargs)
    times[what] = time.monotonic() - start
    return result


def _story(lab_rack, work, step, expect, times):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    names = sorted(lab_rack.config)
    step('roles/os_image: Debian bookworm with systemd, cloud-init (NoCloud), sshd and the Docker engine '
         '(cached after the first build), registered in the provisioner\'s catalog')
    built = _timed(times, 'image (roles/os_image, cached)', node_image.build, progress=True, docker=True)
    image = deploy.install_image(lab_rack, built)
    print('   image %s: %d bytes, sha256 %s' % (image['name'], image['size'], image['sha256']))

    verbs = Verbs(lab_rack, work, OWNER)
    print('   inventory: %s (inventories/lab + the lab\'s BMC inventory); machine store: %s'
          % (verbs.inventory, verbs.store))
    pattern = ':'.join(names)
    step('ansible-playbook ingot.metal.discover -e name=%s  (register the nodes with their BMCs, PXE-boot them '
         'so that they report their hardware)' % pattern)
    with Watcher(lab_rack):
        _timed(times, 'discover %d nodes' % len(names), verbs.run, 'discover', pattern, progress=True)
    step('ansible-playbook ingot.metal.enroll -e name=%s -e pool=lab' % ','.join(names))
    verbs.run('enroll', ','.join(names), pool='lab', progress=True)
    expect(all(lab_rack.api('/api/v1/nodes/%s' % n)['state'] == 'ready' for n in names), 'the nodes are ready')

    step('ansible-playbook ingot.metal.create -e name=demo-1,demo-2  (two Docker machines at once)')
    with Watcher(lab_rack):
        result = _timed(times, 'create demo-1,demo-2 (in parallel)', verbs.run, 'create', 'demo-1,demo-2',
                        progress=True)
    for line in deploy.task_messages(result, 'Env lines'):
        print('   ' + line)
    for machine in ('demo-1', 'demo-2'):
        _use(verbs, machine, expect)

    step('ansible-playbook ingot.metal.ls')
    for line in deploy.task_messages(verbs.run('ls', 'all'), 'Machines'):
        print('   ' + line)
    # Ansible templates every extra variable: docker's Go template goes inside {% raw %}...{% endraw %}
    step('ansible-playbook ingot.metal.ssh -e name=demo-1 -e cmd="{% raw %}docker ps -a --format ...{% endraw %}"')
    out = verbs.run('ssh', 'demo-1', cmd='{% raw %}hostname; docker ps -a --format "{{.Image}} {{.Status}}"{% endraw %}')
    lines = deploy.task_messages(out, 'Output')
    print('   ' + '\n   '.join(lines))
    expect(lines[:1] == ['demo-1'], 'ssh with the pinned host key runs the command on demo-1')

    step('ansible-playbook ingot.metal.create -e name=demo-1,demo-2  again: nothing to do')
    again = verbs.run('create', 'demo-1,demo-2')
    expect(again.count('changed') == 0, 'a second create reports no change (%d)' % again.count('changed'))

    node = verbs.node('demo-1')
    old = os.path.join(work, 'old-demo-1')
    shutil.copytree(os.path.join(verbs.store, 'demo-1'), old)
    step('ansible-playbook ingot.metal.rm -e name=demo-1  (revoke, wipe through PXE, back to the pool, power off)')
    with Watcher(lab_rack):
        _timed(times, 'rm demo-1', verbs.run, 'rm', 'demo-1', progress=True)
    record = lab_rack.api('/api/v1/nodes/%s' % node['name'])
    disk = lab_rack.machine(node['name']).disk
    expect(record['state'] == 'ready' and os.listdir(disk) == [],
           'node %s is ready and its disk is empty' % node['name'])

    step('ansible-playbook ingot.metal.create -e name=demo-3  (the freed node, again)')
    with Watcher(lab_rack):
        _timed(times, 'create demo-3 on the freed node', verbs.run, 'create', 'demo-3', progress=True)
    new = verbs.node('demo-3')
    expect(new['name'] == node['name'], 'demo-3 got the freed node %s' % node['name'])
    _use(verbs, 'demo-3', expect)
    expect(_refused(new['ip_address'], old, os.path.join(verbs.store, 'demo-3', 'ca.pem')),
           'demo-1\'s old client certificate is refused by demo-3')

    step('ansible-playbook ingot.metal.rm -e name=demo-2,demo-3')
    with Watcher(lab_rack):
        _timed(times, 'rm demo-2,demo-3', verbs.run, 'rm', 'demo-2,demo-3', progress=True)
    expect(all(lab_rack.api('/api/v1/nodes/%s' % n)['state'] == 'ready' for n in names),
           'every node is ready again')


def _use(verbs, machine, expect):
    """Run a container on MACHINE over TLS, through its env lines and through its docker context."""
    env = deploy.env_file(os.path.join(verbs.store, machine, 'env'))
    print('   eval "$(cat %s)"  ->  DOCKER_HOST=%s' % (os.path.join(verbs.store, machine, 'env'), env['DOCKER_HOST']))
    save = subprocess.Popen(['docker', 'save', IMAGE], stdout=subprocess.PIPE)
    verbs.docker(machine, 'load', stdin=save.stdout, timeout=300)
    save.wait(timeout=60)
    ran = verbs.docker(machine, 'run', '--rm', IMAGE, 'sh', '-c', 'echo hello from $(hostname) on $(cat /etc/hostname)')
    print('   docker --tlsverify run: %s' % ran.stdout.decode().strip())
    ctx = verbs.docker(machine, '--context', machine, 'info', '--format', '{{.Name}} {{.ServerVersion}}', env={})
    print('   docker --context %s info: %s' % (machine, ctx.stdout.decode().strip()))
    expect(ran.returncode == 0 and ctx.stdout.decode().startswith(machine),
           '%s runs containers over TLS (env lines and docker context)' % machine)
