#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: ``create`` of ten machines at once against ``create`` of one, through the verb playbook
``ingot.metal.create`` (ansible-runner, a copy of inventories/lab with the lab's BMC inventory, as a user runs
it), on the lab rack; and the deploy agent's write throughput against plain ``tar -x``, in one run.

1. ``create`` of one machine and ``create`` of ten (allocate, deploy, PXE through the BMC, pinned host keys,
   SSH keys, Docker with TLS, the operator's steps: the whole verb), ``--rounds`` rounds (at least 5), the
   order of the two arms reversed every other round; between arms, untimed, the nodes are made ready and
   switched off again (their records registered afresh in the pool; machine names are new each arm). Each
   created machine must be ``deployed`` with its Docker URL in the registry, or the benchmark fails.
   Two figures per round, the median of the rounds held against the targets:
   (a) the project's own CPU per machine, ten against one: the controller (this process's cgroup: ansible-
       runner, ansible-playbook, its workers and ssh) plus the provisioner container (the service and dnsmasq):
       what on metal runs on the operator's side; not the node containers or the virtual BMCs (on metal, the
       servers). Target: at most 1.1x.
   (b) the wall time ratio ten/one against its CPU floor: ten machines need the lab's CPU of the ten-arm
       (project, node containers, virtual BMCs) on the cores the rest of this machine left free during it
       (cores - other users' CPU / wall), so the ten-arm can take no less than max(one-arm wall, that CPU /
       those cores). Floor ratio = that / one-arm wall. Target: wall ratio at most 1.3x the floor.
2. The deploy agent's write throughput (image bytes / time between its "deploying image" report and its
   success report: download, sha256 while streaming, unpack, seed, rename, sync) against plain ``tar -x``
   of the same image file on the host, into the file system of the node disks, plus ``sync``: a first deploy
   of one node (the provisioner reads the image from a cold cache: not a sample), then ``--rounds``
   redeploys (each wiped first, untimed), each beside a tar, in alternating order, compared round by round;
   the disk here is shared and its speed varies several fold within minutes. Target: at least 0.8.

Exits 1 when a target is missed. ``--short`` (what ``make test`` runs): one machine against two, one round,
one agent/tar pair: proves every arm works and prints every ratio, without judging them.

The lab: ``--state-dir`` (default $INGOT_LAB_DIR or <collection>/.lab). A lab up there with enough nodes is
reused and left up; otherwise the bench brings it up and takes it down at the end (``--keep`` keeps it). The
lab rack is one per machine: run this under ``flock /tmp/ingot-lab.lock``. Needs root, Docker, ipmitool,
cgroups (v1 cpuacct or v2) and a reachable Debian mirror for the first image build (cached after).
"""

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cpu_meter   # this script's folder
from ingot_lab import deploy, node_image   # lab/ is on PYTHONPATH (make bench)
from ingot_lab.deploy import Verbs, rack
from ingot_lab.rack_client import Rack, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

ROUNDS = 5
OWNER = 'bench'
POOL = 'lab'                     # inventories/lab's machine_pool
TARGET_CPU_PER_MACHINE = 1.1     # project CPU per machine, ten against one: at most
TARGET_OVER_FLOOR = 1.3          # wall ratio ten/one over its CPU floor: at most
TARGET_THROUGHPUT = 0.8          # agent / tar throughput: at least
PROJECT = ('controller', 'provisioner')
LAB = PROJECT + ('nodes', 'vbmc')


def say(msg):
    print('bench: %s' % msg, flush=True)


def lab_is_up(lab_rack, count):
    if not os.path.exists(os.path.join(lab_rack.state_dir, 'rack.json')):
        return False
    proc = subprocess.run(['docker', 'inspect', '-f', '{{.State.Running}} {{ index .Config.Labels "%s" }}'
                           % rack.DIR_LABEL, rack.PROVISIONER], capture_output=True, text=True, check=False)
    running, dummy, owner = proc.stdout.strip().partition(' ')
    return proc.returncode == 0 and running == 'true' and owner == os.path.abspath(lab_rack.state_dir) \
        and len(lab_rack.config) >= count


def ready_nodes(lab_rack, names):
    """Untimed: NAMES switched off and registered afresh, ready in the pool under their lab names (what
    ``discover`` and ``enroll`` make of them; the lab's BMC inventory names its hosts after them). A deploy or
    wipe still running (an interrupted run) is let end first; disks are not wiped: the next deploy writes over."""
    for name in names:
        node = deploy.node_by_mac(lab_rack, lab_rack.macs(name)[0])
        if node and node['state'] in ('deploying', 'releasing'):
            say('waiting for %s (%s) to end' % (name, node['state']))
            wait_for(lambda node=node: lab_rack.api('/api/v1/nodes/%s' % node['id'])['state']
                     not in ('deploying', 'releasing'), 600, interval=1, what='%s to settle' % name)
    deploy.power_off(lab_rack, names)
    for name in names:
        macs = set(m.lower() for m in lab_rack.macs(name))
        for node in lab_rack.api('/api/v1/nodes')['items']:
            if macs & set(node['macs']) or node['name'] == name:
                lab_rack.api('/api/v1/nodes/%s?force=true' % node['id'], 'DELETE')
        entry = lab_rack.config[name]
        lab_rack.api('/api/v1/nodes', 'POST', {
            'name': name, 'macs': lab_rack.macs(name), 'state': 'ready', 'pool': POOL,
            'bmc': {'address': entry.get('address', '127.0.0.1'), 'port': entry['port'], 'protocol': 'ipmi'}})


def create(verbs, machines, image):
    """``ingot.metal.create`` of MACHINES at once (one playbook run; it fails unless the run succeeds)."""
    verbs.run('create', ','.join(machines), machine_image=image)


def check_created(verbs, machines):
    """Each of MACHINES is a deployed node with its Docker URL in the registry (what create is for)."""
    for machine in machines:
        node = verbs.node(machine)
        assert node and node['state'] == 'deployed' and node.get('docker_url'), \
            'create reported success but %s is not a deployed machine with a Docker URL: %s' % (machine, node)


def tar_baseline(image_path, under):
    """Plain ``tar -x`` of the image file into a fresh directory of the file system of the node disks,
    then ``sync``; and the SHA-256 of the file alone (the tool the agent picks: openssl's)."""
    work = tempfile.mkdtemp(prefix='bench-tar.', dir=under)
    try:
        subprocess.run(['sync'], check=True)
        start = time.monotonic()
        subprocess.run(['tar', '-x', '--numeric-owner', '-f', image_path, '-C', work], check=True)
        untar = time.monotonic() - start
        subprocess.run(['sync'], check=True)
        synced = time.monotonic() - start
    finally:
        subprocess.run(['rm', '-rf', '--one-file-system', work], check=False)
        subprocess.run(['sync'], check=False)
    start = time.monotonic()
    subprocess.run(['openssl', 'dgst', '-sha256', '-r', image_path], check=True, capture_output=True)
    sha = time.monotonic() - start
    return untar, synced, sha


def agent_deploy(lab_rack, name, image, pubkey, workdir):
    """Deploy IMAGE on lab node NAME (wiped first, untimed, when it is deployed); the agent's write seconds."""
    node = deploy.node_by_mac(lab_rack, lab_rack.macs(name)[0])
    if node['state'] == 'deployed':
        lab_rack.api('/api/v1/nodes/%s/release' % node['id'], 'POST', {'wipe': True})
        deploy.pxe_cycle_fleet(lab_rack, [name], workdir=workdir + '-wipe')
        deploy.wait_state(lab_rack, name, node, 'ready', 300)
        # the node is ready as soon as the agent reported; its firmware then reboots (to the disk, now empty):
        # switch it off first, or a boot override set now could be consumed by that reboot, as on a real server
        deploy.fleet(lab_rack, [name], deploy.POWER_OFF, workdir=workdir + '-off')
    node = deploy.allocate(lab_rack, name, owner=OWNER)
    deploy.deploy(lab_rack, node, image, pubkey, 'bench-%s' % name, 'bench')
    deploy.pxe_on_fleet(lab_rack, [name], workdir=workdir + '-deploy')
    deploy.wait_state(lab_rack, name, node, 'deployed', 300)
    return deploy.agent_write_seconds(lab_rack, node['id'])


def median(values):
    return statistics.median(values) if values else float('nan')


def main():  # pylint: disable=too-many-locals,too-many-statements
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--state-dir', default=os.environ.get('INGOT_LAB_DIR', os.path.join(ROOT, '.lab')))
    parser.add_argument('--keep', action='store_true', help='leave a lab the bench brought up running')
    parser.add_argument('--rounds', type=int, default=ROUNDS, help='rounds (at least %d)' % ROUNDS)
    parser.add_argument('--many', type=int, default=10, help='machines of the larger arm (default 10)')
    parser.add_argument('--short', action='store_true',
                        help='one machine against two, one round, one agent/tar pair: proves the benchmark works, '
                        'does not judge the ratios')
    args = parser.parse_args()
    if args.short:
        args.rounds, args.many = 1, 2
    elif args.rounds < ROUNDS:
        parser.error('--rounds: at least %d in the full form (--short runs one)' % ROUNDS)
    if os.geteuid() != 0:
        raise SystemExit('bench_deploy needs root (the lab rack)')
    os.environ['PATH'] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
    total = time.monotonic()
    lab_rack = Rack(args.state_dir)
    brought_up = False
    meter = None
    scratch = tempfile.mkdtemp(prefix='bench-deploy.')
    try:
        if lab_is_up(lab_rack, args.many):
            say('reusing the lab in %s (%d nodes)' % (lab_rack.state_dir, len(lab_rack.config)))
        else:
            say('lab up (%d nodes) in %s' % (args.many, lab_rack.state_dir))
            brought_up = True
            start = time.monotonic()
            rack.up(lab_rack.lab, args.many, deploy_timeout=600)
            say('lab up: %.1f s' % (time.monotonic() - start))
        start = time.monotonic()
        built = node_image.build(progress=False, docker=True)
        image = deploy.install_image(lab_rack, built)
        say('image %s: %d bytes (%s), built this run: %s; image ready in %.1f s'
            % (image['name'], image['size'], image['format'], built['built'], time.monotonic() - start))
        names = sorted(lab_rack.config)[:args.many]
        ready_nodes(lab_rack, names)
        verbs = Verbs(lab_rack, os.path.join(scratch, 'verbs'), OWNER)
        meter = cpu_meter.Meter({'provisioner': [rack.PROVISIONER],
                                 'nodes': [lab_rack.machine(n).container for n in names]},
                                pids=lambda: {'vbmc': list(lab_rack.lab.served().values())})
        cores = os.cpu_count()

        arms = {1: [], args.many: []}
        for i in range(args.rounds):
            order = [1, args.many] if i % 2 == 0 else [args.many, 1]
            for count in order:
                machines = ['bench-r%d-%s%02d' % (i + 1, 'a' if count == 1 else 'b', k + 1) for k in range(count)]
                before = meter.read()
                start = time.monotonic()
                create(verbs, machines, image['name'])
                wall = time.monotonic() - start
                used = cpu_meter.difference(meter.read(), before)
                check_created(verbs, machines)
                arms[count].append(dict(used, wall=wall))
                say('round %d, create of %d: %.1f s; CPU s: %s'
                    % (i + 1, count, wall, ', '.join('%s %.1f' % (k, used[k]) for k in LAB + ('machine',))))
                ready_nodes(lab_rack, names)

        # agent against plain tar, side by side (see the docstring)
        pubkey = deploy.ssh_keypair(scratch)[1]
        disks = os.path.dirname(lab_rack.machine(names[0]).disk)
        if not args.short:
            agent_deploy(lab_rack, names[0], image['name'], pubkey, os.path.join(scratch, 'run-first'))
        agents, tars = [], []
        for i in range(args.rounds):
            if i % 2:
                tars.append(tar_baseline(built['path'], disks))
            agents.append(agent_deploy(lab_rack, names[0], image['name'], pubkey,
                                       os.path.join(scratch, 'run-round%d' % i)))
            if not i % 2:
                tars.append(tar_baseline(built['path'], disks))
            say('agent/tar round %d: agent %s s, tar+sync %.1f s%s'
                % (i + 1, agents[-1] and '%.1f' % agents[-1], tars[-1][1],
                   ' -> %.2f' % (tars[-1][1] / agents[-1]) if agents[-1] else ''))
        deploy.power_off(lab_rack, names[:1])
        return report(args, arms, agents, tars, image, cores)
    finally:
        if meter:
            meter.close()
        if brought_up and not args.keep:
            start = time.monotonic()
            rack.down(lab_rack.lab)
            say('lab down: %.1f s' % (time.monotonic() - start))
        shutil.rmtree(scratch, ignore_errors=True)
        say('total: %.1f s' % (time.monotonic() - total))


def report(args, arms, agents, tars, image, cores):
    """Prints the figures and verdicts; returns the exit status."""
    many = args.many
    per_round = []
    for one, ten in zip(arms[1], arms[many]):
        project_one = sum(one[k] for k in PROJECT)
        project_ten = sum(ten[k] for k in PROJECT)
        lab_ten = sum(ten[k] for k in LAB)
        others = max(0.0, ten['machine'] - lab_ten)
        free = max(0.25, cores - others / ten['wall'])
        floor = max(1.0, lab_ten / free / one['wall'])
        wall_ratio = ten['wall'] / one['wall']
        per_round.append({'cpu': project_ten / many / project_one, 'wall': wall_ratio, 'floor': floor,
                          'over': wall_ratio / floor, 'free': free,
                          'machine_floor': ten['machine'] / cores / one['wall']})
    paired = [t[1] / a for a, t in zip(agents, tars) if a]
    size_mb = image['size'] / 1e6
    missed = []

    def verdict(name, value, target, at_most=True):
        if args.short:
            return 'not judged (--short)'
        if not math.isnan(value) and (value <= target if at_most else value >= target):
            return 'met'
        missed.append('%s %.2f (target %s %.2f)' % (name, value, '<=' if at_most else '>=', target))
        return 'MISSED'

    say('')
    say('RESULTS: create of %d against create of 1, %d round(s), the order reversed every other round; image %.0f MB;'
        ' %d cores; load average %s' % (many, args.rounds, size_mb, cores,
                                        ' '.join('%.1f' % x for x in os.getloadavg())))
    for label, samples in (('create of 1', arms[1]), ('create of %d' % many, arms[many])):
        say('  %-13s wall %s s; project CPU %s s (controller %s, provisioner+dnsmasq %s); nodes %s, vBMCs %s; '
            'machine %s' % (label, '/'.join('%.1f' % x['wall'] for x in samples),
                            '/'.join('%.1f' % sum(x[k] for k in PROJECT) for x in samples),
                            '/'.join('%.1f' % x['controller'] for x in samples),
                            '/'.join('%.1f' % x['provisioner'] for x in samples),
                            '/'.join('%.1f' % x['nodes'] for x in samples),
                            '/'.join('%.1f' % x['vbmc'] for x in samples),
                            '/'.join('%.1f' % x['machine'] for x in samples)))
    cpu = median([r['cpu'] for r in per_round])
    over = median([r['over'] for r in per_round])
    say('  (a) project CPU per machine, %d against 1: %.2fx (rounds %s)   target <= %.1fx: %s'
        % (many, cpu, ', '.join('%.2f' % r['cpu'] for r in per_round), TARGET_CPU_PER_MACHINE,
           verdict('project CPU per machine', cpu, TARGET_CPU_PER_MACHINE)))
    say('  (b) wall ratio %d/1: %s; CPU floor (lab CPU on the cores left free: %s): %s; ratio/floor: %.2fx '
        '(rounds %s)   target <= %.1fx: %s'
        % (many, ', '.join('%.2f' % r['wall'] for r in per_round), ', '.join('%.2f' % r['free'] for r in per_round),
           ', '.join('%.2f' % r['floor'] for r in per_round), over,
           ', '.join('%.2f' % r['over'] for r in per_round), TARGET_OVER_FLOOR,
           verdict('wall ratio over its CPU floor', over, TARGET_OVER_FLOOR)))
    say('      (the floor from the whole machine\'s CPU, other users included: %s)'
        % ', '.join('%.2f' % r['machine_floor'] for r in per_round))
    measured = [a for a in agents if a]
    if measured:
        agent = median(measured)
        untar, synced, sha = (median([t[k] for t in tars]) for k in range(3))
        ratio = median(paired)
        say('  agent write (median of %d): %.1f s = %.1f MB/s; plain tar -x %.1f s (+ sync: %.1f s) = %.1f MB/s'
            % (len(measured), agent, size_mb / agent, untar, synced, size_mb / synced))
        say('  agent / tar, round by round: %.2f (rounds %s)   target >= %.1f: %s'
            % (ratio, ', '.join('%.2f' % r for r in paired), TARGET_THROUGHPUT,
               verdict('agent/tar throughput', ratio, TARGET_THROUGHPUT, at_most=False)))
        say('  sha256 alone (openssl, 1 core): %.1f s = %.1f MB/s (the agent can go no faster here)'
            % (sha, size_mb / sha))
    else:
        say('  agent write time: not found in the node events')
        verdict('agent/tar throughput', float('nan'), TARGET_THROUGHPUT, at_most=False)
    if args.short:
        say('every arm ran (--short: the ratios are not judged)')
        return 0
    if missed:
        say('target MISSED: %s' % '; '.join(missed))
        return 1
    say('every target met')
    return 0


if __name__ == '__main__':
    sys.exit(main())
