#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The main job, until the whole lifecycle lands: what exists, run for real.

1. A rack of virtual BMCs (real IPMI 2.0 lanplus on loopback, the lab's vBMC server) driven by the
   collection's own playbooks and modules through ansible-runner, showing the real state of every
   machine after each step, and checking it with ipmitool.
2. The lab rack of virtual metal (rack_demo.py; root and Docker, skipped with ``--no-rack``): a node
   discovered by PXE, another deployed with the image of roles/os_image through the provisioner and the
   BMC modules, reached by ssh with its pinned host key, wiped on release.
Everything it starts, it stops.
"""

import argparse
import os
import shutil
import sys
import time

from ingot_lab.runner import run_playbook   # the lab's package: `make demo` puts lab/ on PYTHONPATH
from ingot_lab.state import Lab
from ingot_lab.testing import start_lab

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def step(text):
    print('\n== %s' % text, flush=True)


def table(lab, names):
    print('   %-6s %-6s %-9s %-10s %-5s %s' % ('node', 'power', 'boot', 'persistent', 'boots', 'MACs'))
    for name in names:
        state = lab.machine_state(name)
        boot = state.get('boot') or {}
        macs = ', '.join(lab.config(name)['machine'].get('macs') or [])
        print('   %-6s %-6s %-9s %-10s %-5s %s' % (name, state['power'], boot.get('device'), boot.get('persistent'),
                                                   state.get('boot_count', 0), macs))


def play(book, inventory, workdir, **kw):
    started = time.monotonic()
    r = run_playbook(book, inventory, progress=True, workdir=workdir, **kw)
    label = book if isinstance(book, str) else 'playbook'
    print('   %s: %s in %.1f s, changed=%d, failed=%d'
          % (label, r.status, time.monotonic() - started, r.count('changed'), r.count('failures')), flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--nodes', type=int, default=6)
    ap.add_argument('--state-dir', default=os.path.join(REPO, '.lab', 'demo'))
    ap.add_argument('--no-rack', action='store_true', help='only the virtual BMCs, not the lab rack')
    args = ap.parse_args()
    runs = os.path.join(args.state_dir, 'runs')
    lab_dir = os.path.join(args.state_dir, 'lab')
    # The rack of a previous demo (ended, or killed before it could stop) is configured afresh; one
    # that still runs is left alone.
    served = Lab(lab_dir).served() if os.path.isdir(lab_dir) else {}
    if served:
        raise SystemExit('demo: a demo rack is running in %s (vBMC server pid %s): stop it first with '
                         '"lab/ingot-lab --state-dir %s vbmc stop"'
                         % (lab_dir, ', '.join(str(p) for p in sorted(set(served.values()))), lab_dir))
    shutil.rmtree(lab_dir, ignore_errors=True)
    os.makedirs(runs, exist_ok=True)
    failures = []

    def expect(cond, what):
        print('   %s %s' % ('ok  ' if cond else 'FAIL', what), flush=True)
        if not cond:
            failures.append(what)

    step('A virtual rack of %d machines, each behind its own virtual BMC (IPMI 2.0 on 127.0.0.1)' % args.nodes)
    with start_lab(lab_dir, n=args.nodes, nics=2, soft_off_delay=1.0,
                   password='Demo-Rack-pw-1') as lab:
        names = [b.name for b in lab.bmcs]
        inv_path = os.path.join(args.state_dir, 'inventory.yml')
        hosts = dict((b.name, {'bmc_host': b.host, 'bmc_port': b.port, 'bmc_user': b.user, 'bmc_password': b.password})
                     for b in lab.bmcs)
        inventory = {'all': {'children': {'rack': {'hosts': hosts}}}}
        print('   BMCs on ports %d-%d; inventory: %s' % (lab.bmcs[0].port, lab.bmcs[-1].port, inv_path))
        table(lab, names)

        step('ansible-playbook ingot.metal.inspect -e name=rack  (one task reads every BMC)')
        r = play('ingot.metal.inspect', inventory, os.path.join(runs, 'inspect'), extravars={'name': 'rack'})
        facts = r.one('Read the BMCs, all in one task').result['bmcs']
        for name in names:
            info = facts[name]['bmc_info']
            print('   %-6s %s %s serial %s, firmware %s, MACs %s, %d sensors' % (
                name, info['fru']['manufacturer'], info['fru']['product'], info['fru']['serial'],
                info['device']['firmware_version'], ', '.join(info['macs']), len(info['sensors'] or [])))
        expect(all(facts[n]['bmc_info']['macs'] == [m.lower() for m in lab.config(n)['machine']['macs']]
                   for n in names), 'the MACs the BMCs report are the machines\' MACs')

        step('ansible-playbook ingot.metal.start -e name=rack')
        play('ingot.metal.start', inventory, os.path.join(runs, 'start'), extravars={'name': 'rack'})
        table(lab, names)
        expect(all(lab.machine_state(n)['power'] == 'on' for n in names), 'every machine is on')
        ipmi = lab.bmcs[0].ipmitool('power', 'status').stdout.strip()
        expect('on' in ipmi, 'ipmitool agrees: %s' % ipmi)

        step('The same again: idempotent')
        r = play('ingot.metal.start', inventory, os.path.join(runs, 'start-again'), extravars={'name': 'rack'})
        expect(r.count('changed') == 0, 'second run reports no change')

        half = names[: max(1, len(names) // 2)]
        step('PXE on the next boot for %s (per-host form, check mode first, then for real)' % ', '.join(half))
        book = [{'hosts': ':'.join(half), 'gather_facts': False, 'tasks': [
            {'name': 'pxe next boot', 'ingot.metal.bmc_boot': {'device': 'pxe'}, 'delegate_to': 'localhost'}]}]
        r = play(book, inventory, os.path.join(runs, 'boot-check'), check=True, diff=True)
        expect(all(lab.machine_state(n)['boot']['device'] != 'pxe' for n in half), 'check mode changed nothing')
        play(book, inventory, os.path.join(runs, 'boot'))
        table(lab, names)
        param = lab.bmc(half[0]).ipmitool('chassis', 'bootparam', 'get', '5').stdout
        expect('Force PXE' in param, 'ipmitool chassis bootparam get 5 says Force PXE')

        step('ansible-playbook ingot.metal.restart -e name=%s  (the override is used once)' % half[0])
        play('ingot.metal.restart', inventory, os.path.join(runs, 'restart'), extravars={'name': half[0]})
        table(lab, names)
        expect(lab.machine_state(half[0])['boot']['device'] != 'pxe', 'the next-boot override was consumed')

        step('A wrong password on %s: a clear error, the machine untouched, the password never printed' % names[-1])
        bad_hosts = dict(hosts)
        bad_hosts[names[-1]] = dict(hosts[names[-1]], bmc_password='Not-It-99')
        bad = {'all': {'children': {'rack': {'hosts': bad_hosts}}}}
        r = run_playbook('ingot.metal.kill', bad, extravars={'name': names[-1]}, workdir=os.path.join(runs, 'bad'))
        res = r.one('Drive the BMCs, all in one task').result
        print('   %s' % res['msg'])
        expect(res['bmcs'][names[-1]]['error_kind'] == 'auth' and 'Not-It-99' not in r.stdout,
               'refused as an auth error, password not in the output')
        expect(lab.machine_state(names[-1])['power'] == 'on', '%s is still on' % names[-1])

        step('ansible-playbook ingot.metal.stop -e name=rack  (graceful ACPI shutdown)')
        play('ingot.metal.stop', inventory, os.path.join(runs, 'stop'), extravars={'name': 'rack'})
        table(lab, names)
        expect(all(lab.machine_state(n)['power'] == 'off' for n in names), 'every machine is off')

    step('Rack of virtual BMCs stopped.')
    print('   Drive it by hand: lab/ingot-lab vbmc --help; ipmitool -I lanplus -H 127.0.0.1 -p PORT -U admin -P ... power status')

    if args.no_rack:
        print('   (--no-rack: the lab rack is not shown)')
    elif os.geteuid() != 0:
        print('   the lab rack needs root (Docker, a bridge, iptables): run the demo as root to see it')
    else:
        import rack_demo   # pylint: disable=import-outside-toplevel
        rack_demo.run(os.path.join(args.state_dir, 'rack'), step, expect)
        print('   Bring the lab up by hand: lab/ingot-lab up --nodes 3 (README: "The lab")')

    verdict = '%d checks FAILED: %s' % (len(failures), '; '.join(failures)) if failures else 'All checks passed.'
    step('Demo done. %s' % verdict)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
