#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: ``ansible-inventory --list`` of 10,000 registered nodes through the ingot.metal.provisioner
inventory plugin, side by side with the baselines, in one run.

* the real provisioner service (uvicorn, SQLite) on loopback, its registry filled with N nodes through the
  service's own models (one bulk transaction; registering them one POST at a time would take minutes);
* ``plugin``: the plugin live from the service, with constructed (keyed) groups and every value unsafe;
* ``plugin cached``: the same with the jsonfile inventory cache warm;
* ``script``: an executable inventory that prints the plugin's own ``--list`` JSON from a file
  (DESIGN.md's baseline: live within 1.5x of it, cached no slower);
* ``static YAML``: the same hosts, groups and variables as a YAML inventory (the issue's baseline).

Each command runs ``--repeat`` times, interleaved; every ratio is taken within one round (so that a busy
machine slows both sides alike) and the median over the rounds is reported, for wall time and for CPU time
(ansible-inventory and its children, plus the service's CPU while the live plugin ran).
Run: ``python tests/bench/bench_inventory.py [--nodes 10000] [--repeat 3]``. Needs the service's
dependencies in this interpreter or in ``INGOT_PROVISIONER_PYTHON`` (see tests/integration/provisioner_service.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests'))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

from ingot_testlib import ansible_env, unwrap_unsafe as unwrap  # noqa: E402
from provisioner_service import PKG_DIR, Service, service_python  # noqa: E402

BIN = os.path.dirname(sys.executable)

# Runs in the service's interpreter: fills the registry through the service's own models, in one transaction.
POPULATE = textwrap.dedent('''
    import datetime as dt, json, random, sys, uuid
    from sqlalchemy import insert
    from ingot_provisioner.db import Database
    from ingot_provisioner.models import Mac, Node, NodeTag

    url, count = sys.argv[1], int(sys.argv[2])
    db = Database(url, sqlite_synchronous="NORMAL")
    db.migrate()
    rnd = random.Random(42)
    now = dt.datetime.now(dt.timezone.utc)
    nodes, macs, tags = [], [], []
    for i in range(count):
        nid = str(uuid.uuid4())
        roll = rnd.random()
        state = ("ready" if roll < 0.55 else "deployed" if roll < 0.8 else "allocated" if roll < 0.92
                 else "discovered")
        pool = "rack%02d" % (i % 20)
        cpus, mem = rnd.choice([(8, 32768), (16, 65536), (32, 131072), (64, 262144)])
        node = dict(id=nid, name="node-%05d" % i, state=state, pool=pool, maintenance=roll > 0.97,
                    maintenance_reason="disk errors" if roll > 0.97 else None,
                    facts={"cpus": cpus, "memory_mib": mem, "disk_gib": 960, "vendor": "Ingot", "model": "LS-1"},
                    cpus=cpus, memory_mib=mem, disk_gib=960,
                    bmc={"address": "10.%d.%d.%d" % (i // 65536 + 1, i // 256 % 256, i % 256), "port": 623,
                         "protocol": "ipmi", "system_id": None},
                    owner=None, allocation_name=None, image=None, ip_address=None, docker_url=None,
                    ssh_host_keys=None, deploy_generation=0, created_at=now, updated_at=now, state_changed_at=now)
        if state in ("allocated", "deployed"):
            node.update(owner="team%d" % (i % 7), allocation_name="host-%05d" % i)
        if state == "deployed":
            node.update(image="debian-12", ip_address="172.16.%d.%d" % (i // 256 % 256, i % 256),
                        docker_url="tcp://172.16.%d.%d:2376" % (i // 256 % 256, i % 256),
                        ssh_host_keys={"ed25519": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%040d" % i})
        nodes.append(node)
        macs.append(dict(mac="02:%02x:%02x:%02x:%02x:01" % (i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255),
                         node_id=nid))
        for tag in rnd.sample(["ssd", "nvme", "gpu", "10g", "25g"], rnd.randint(0, 2)):
            tags.append(dict(node_id=nid, tag=tag))
    with db.write() as s:
        s.execute(insert(Node), nodes)
        s.execute(insert(Mac), macs)
        if tags:
            s.execute(insert(NodeTag), tags)
    db.dispose()
    print(count)
''')

SCRIPT = textwrap.dedent('''\
    #!%(python)s
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        sys.stdout.write("{}")
    else:
        with open(%(path)r, "rb") as f:
            sys.stdout.buffer.write(f.read())
''')

PLUGIN_CONFIG = {
    'plugin': 'ingot.metal.provisioner',
    # constructed groups, as a real inventory would have them
    'keyed_groups': [{'key': 'ingot_tags', 'prefix': 'tag'}, {'key': 'ingot_owner', 'prefix': 'owner'}],
    'groups': {'big': 'ingot_facts.memory_mib >= 131072'},
}


def static_yaml(listing):
    """The hosts, groups and variables of an ``ansible-inventory --list`` as a YAML inventory."""
    hostvars = unwrap(listing['_meta']['hostvars'])
    children = {}
    for group, body in listing.items():
        if group in ('_meta', 'all', 'ungrouped'):
            continue
        children[group] = {'hosts': dict((h, None) for h in body.get('hosts', []))}
    return {'all': {'hosts': hostvars, 'children': children}}


def _cpu_of(pid):
    """CPU seconds (user + system) a process has used so far."""
    if not pid:
        return 0.0
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def run_inventory(source, env, out=None, service_pid=None):
    """Runs ``ansible-inventory --list``; returns (wall seconds, CPU seconds, stdout).

    CPU seconds are those of ansible-inventory and its children, plus the service's while it ran: on a
    busy machine they are the steadier measure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    service_before = _cpu_of(service_pid)
    start = time.monotonic()
    argv = [os.path.join(BIN, 'ansible-inventory'), '-i', source, '--list'] + (['--output', out] if out else [])
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE if not out else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu += _cpu_of(service_pid) - service_before
    if proc.returncode != 0 or 'Unable to parse' in proc.stderr:
        raise SystemExit('ansible-inventory -i %s failed:\n%s' % (source, proc.stderr[-3000:]))
    return seconds, cpu, proc.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', type=int, default=10000)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--keep', action='store_true', help='keep the work directory')
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix='ingot-bench-inventory-')
    print('bench_inventory: %d nodes, %d runs each, work directory %s' % (args.nodes, args.repeat, work), flush=True)
    service = Service(os.path.join(work, 'service'), sqlite_synchronous='NORMAL')
    os.makedirs(service.workdir, exist_ok=True)
    start = time.monotonic()
    subprocess.run([service_python(), '-c', POPULATE, service.settings['database_url'], str(args.nodes)],
                   env=dict(os.environ, PYTHONPATH=PKG_DIR), check=True, stdout=subprocess.DEVNULL)
    print('  registry filled through the service models in %.1f s' % (time.monotonic() - start), flush=True)
    env = dict(os.environ, **ansible_env({'INGOT_PROVISIONER_TOKEN': service.token,
                                          'ANSIBLE_INVENTORY_CACHE': 'False'}))
    with service:
        live_source = os.path.join(work, 'live.ingot.yml')
        cached_source = os.path.join(work, 'cached.ingot.yml')
        with open(live_source, 'w') as f:
            yaml.safe_dump(dict(PLUGIN_CONFIG, provisioner_url=service.url), f)
        with open(cached_source, 'w') as f:
            yaml.safe_dump(dict(PLUGIN_CONFIG, provisioner_url=service.url, cache=True,
                                cache_plugin='ansible.builtin.jsonfile', cache_timeout=86400,
                                cache_connection=os.path.join(work, 'cache')), f)

        # The baselines print exactly what the plugin prints.
        seconds, cpu, listing_text = run_inventory(live_source, env)
        listing = json.loads(listing_text)
        hosts = len(listing['_meta']['hostvars'])
        assert hosts == args.nodes, 'the plugin listed %d hosts, not %d' % (hosts, args.nodes)
        listing_path = os.path.join(work, 'listing.json')
        with open(listing_path, 'w') as f:
            f.write(listing_text)
        script = os.path.join(work, 'script_inventory.py')
        with open(script, 'w') as f:
            f.write(SCRIPT % {'python': sys.executable, 'path': listing_path})
        os.chmod(script, 0o755)
        static = os.path.join(work, 'static.yml')
        with open(static, 'w') as f:
            yaml.safe_dump(static_yaml(listing), f, default_flow_style=False)
        run_inventory(cached_source, env)   # warms the cache
        script_text = run_inventory(script, env)[2]
        cached_text = run_inventory(cached_source, env)[2]
        assert json.loads(script_text) == listing, 'the script inventory does not print what the plugin printed'
        assert json.loads(cached_text) == listing, 'the cached plugin run differs from the live one'
        nvars = sum(len(v) for v in listing['_meta']['hostvars'].values()) / float(hosts)
        groups = len([g for g in listing if g != '_meta'])
        print('  %d hosts, %.1f variables each, %d groups; JSON listing %.1f MB'
              % (hosts, nvars, groups, len(listing_text) / 1e6), flush=True)

        candidates = [('plugin (live)', live_source), ('plugin (cached)', cached_source), ('script', script),
                      ('static YAML', static)]
        wall = dict((pair[0], []) for pair in candidates)
        cpu = dict((pair[0], []) for pair in candidates)
        for i in range(args.repeat):
            for name, source in candidates:
                seconds, used, dummy = run_inventory(source, env, out=os.path.join(work, 'out.json'),
                                                     service_pid=service.proc.pid if name == 'plugin (live)' else None)
                wall[name].append(seconds)
                cpu[name].append(used)
            print('  run %d: %s' % (i + 1, ', '.join('%s %.2f s (cpu %.2f s)' % (n, wall[n][-1], cpu[n][-1])
                                                     for n in (pair[0] for pair in candidates))), flush=True)
    if not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    if not args.repeat:
        return 0

    print()
    print('ansible-inventory --list, %d nodes, %d runs each, interleaved; load average %.1f'
          % (args.nodes, args.repeat, os.getloadavg()[0]))
    print('  %-16s %9s %9s %9s' % ('', 'wall med', 'wall min', 'cpu med'))
    for name in (pair[0] for pair in candidates):
        print('  %-16s %8.2fs %8.2fs %8.2fs' % (name, statistics.median(wall[name]), min(wall[name]),
                                                statistics.median(cpu[name])))
    print()
    # Runs were interleaved: each ratio is taken within one round, and the median of those is reported.
    checks = [('plugin (live)', 'script', 1.5), ('plugin (cached)', 'script', 1.0), ('plugin (live)', 'static YAML', 1.5)]
    for mine, base, target in checks:
        wall_ratio = statistics.median(a / b for a, b in zip(wall[mine], wall[base]))
        cpu_ratio = statistics.median(a / b for a, b in zip(cpu[mine], cpu[base]))
        verdict = 'OK' if max(wall_ratio, cpu_ratio) <= target else ('OK on CPU time' if cpu_ratio <= target
                                                                     else 'MISSED')
        print('  %-15s / %-11s = %.2fx wall, %.2fx CPU   (target <= %.1fx)  %s'
              % (mine, base, wall_ratio, cpu_ratio, target, verdict))
    return 0


if __name__ == '__main__':
    sys.exit(main())
