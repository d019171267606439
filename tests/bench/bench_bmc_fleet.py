#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: power status of a fleet of virtual BMCs, three ways, side by side in one run.

* baseline: ``community.general.ipmi_power`` (state=on on machines already on), one task per host, forks=20;
* ingot per-host form: ``ingot.metal.bmc_power`` state=on, one task per host (delegate_to: localhost), forks=20;
* ingot fleet form: ``ingot.metal.bmc_power`` with ``bmcs: "{{ groups['fleet'] }}"``, one task.

Whole ``ansible-playbook`` runs through ansible-runner, in alternating order, ``--rounds`` times; the medians
and their ratios are printed. Every run must report every BMC on, or the benchmark fails: speed of a wrong
answer is not measured. Targets (DESIGN.md): fleet >= 25x, per-host >= 5x the baseline.
"""

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'lab'))

from ingot_testlib import run_playbook  # noqa: E402
from ingot_lab.testing import start_lab  # noqa: E402

TARGETS = {'fleet': 25.0, 'per_host': 5.0}


def per_host(module, args):
    return [{'hosts': 'fleet', 'gather_facts': False,
             'tasks': [{'name': 'power', module: args, 'delegate_to': 'localhost'}]}]


def plays():
    return {
        'baseline': per_host('community.general.ipmi_power', {
            'name': '{{ bmc_host }}', 'port': '{{ bmc_port }}', 'user': '{{ bmc_user }}',
            'password': '{{ bmc_password }}', 'state': 'on'}),
        'per_host': per_host('ingot.metal.bmc_power', {'state': 'on'}),
        'fleet': [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [{
            'name': 'power', 'ingot.metal.bmc_power': {'state': 'on', 'bmcs': "{{ groups['fleet'] }}"}}]}],
    }


def check(name, result, n):
    if result.status != 'successful':
        raise SystemExit('%s run failed:\n%s' % (name, result.stdout[-4000:]))
    if name == 'fleet':
        res = result.one('power').result
        on = sum(1 for r in res['bmcs'].values() if r.get('power') == 'on')
    else:
        on = sum(1 for r in result.for_task('power') if r.status in ('ok', 'changed'))
    if on != n:
        raise SystemExit('%s run: %d of %d BMCs answered on' % (name, on, n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--bmcs', type=int, default=200)
    ap.add_argument('--forks', type=int, default=20)
    ap.add_argument('--rounds', type=int, default=int(os.environ.get('INGOT_BENCH_ROUNDS', '2')))
    ap.add_argument('--processes', type=int, default=2, help='vBMC server processes')
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix='ingot-bench-fleet-')
    print('bench_bmc_fleet: %d virtual BMCs, forks=%d, %d rounds' % (args.bmcs, args.forks, args.rounds), flush=True)
    with start_lab(os.path.join(work, 'lab'), n=args.bmcs, processes=args.processes, password='Bench-pw-2026') as lab:
        hosts = dict((b.name, {'bmc_host': b.host, 'bmc_port': b.port, 'bmc_user': b.user,
                               'bmc_password': b.password}) for b in lab.bmcs)
        inventory = {'all': {'children': {'fleet': {'hosts': hosts}}}}
        books = plays()
        # Power everything on first (not measured), so every run below only reads the state.
        check('fleet', run_playbook(books['fleet'], inventory, workdir=os.path.join(work, 'warmup')), args.bmcs)
        times = {name: [] for name in books}
        for rnd in range(args.rounds):
            order = list(books) if rnd % 2 == 0 else list(reversed(list(books)))
            for name in order:
                r = run_playbook(books[name], inventory, forks=args.forks,
                                 workdir=os.path.join(work, '%s-%d' % (name, rnd)))
                check(name, r, args.bmcs)
                times[name].append(r.seconds)
                print('  round %d %-9s %6.2f s' % (rnd + 1, name, r.seconds), flush=True)
    med = dict((name, statistics.median(t)) for name, t in times.items())
    print()
    print('%-40s %8s %8s %8s' % ('', 'median s', 'ratio', 'target'))
    print('%-40s %8.2f %8s %8s' % ('community.general.ipmi_power, forks=%d' % args.forks, med['baseline'], '1.0x', ''))
    verdicts = []
    for name, label in (('per_host', 'ingot.metal.bmc_power per host, forks=%d' % args.forks),
                        ('fleet', 'ingot.metal.bmc_power fleet form')):
        ratio = med['baseline'] / med[name]
        ok = ratio >= TARGETS[name]
        verdicts.append(ok)
        print('%-40s %8.2f %7.1fx %7.0fx %s' % (label, med[name], ratio, TARGETS[name], 'met' if ok else 'MISSED'))
    print('bench_bmc_fleet: ratios fleet %.1fx, per-host %.1fx against the baseline'
          % (med['baseline'] / med['fleet'], med['baseline'] / med['per_host']))


if __name__ == '__main__':
    main()
