#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: ``ansible-inventory --list`` of 10,000 registered nodes through the ingot.metal.provisioner
inventory plugin, side by side with a script inventory, in one run.

* the real provisioner service (uvicorn, SQLite) on loopback, its registry filled with N nodes through the
  service's own models (one bulk transaction; registering them one POST at a time would take minutes);
* ``plugin (live)``: the plugin live from the service, with constructed (keyed) groups and every value unsafe;
* ``plugin (cached)``: the same with the jsonfile inventory cache warm;
* ``script``: the baseline, an executable inventory script that fetches the same nodes from the service over
  HTTP (the same page size) and prints the same JSON (hosts, variables, groups: checked equal to the plugin's);
* with ``--static``, ``static YAML``: the same hosts, groups and variables as a YAML inventory (printed for
  reference, not judged; ansible's YAML inventory takes several times the plugin's time, which makes a round long).

``--rounds`` rounds (at least 5), the order of the commands reversed every other round; every ratio is taken
within one round (so that a busy machine slows both sides alike) and the median over the rounds is held against
its target, for wall time and for CPU time (ansible-inventory and its children, plus the service's CPU while the
plugin or the script read from it). Targets: plugin live at most 0.8x the script, cached at most 0.7x; and with
``--scale-nodes`` (default 100,000; 0 leaves it out) a second registry of that size, the live plugin there at most
11x its time at ``--nodes`` (linear), its rounds alternating with runs on the first registry. A target counts as
met when the CPU-time ratio meets it (this machine's cores are shared: wall time is printed beside it). Exits 1
when a target is missed.

``--short`` (what ``make test`` runs): 500 nodes, 5,000 for the scale arm, one round: proves every command runs
and prints every ratio, without judging them.

Run: ``PYTHONPATH=lab:tests/integration python tests/bench/bench_inventory.py [--nodes 10000] [--rounds 5] [--scale-nodes 100000] [--short]``.
Needs the service's dependencies in this interpreter or in ``INGOT_PROVISIONER_PYTHON`` (see
tests/integration/provisioner_service.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import yaml

from ingot_lab.runner import ansible_env, unwrap_unsafe as unwrap   # lab/ and tests/integration are on
from provisioner_service import PKG_DIR, Service, service_python    # PYTHONPATH (make bench)

HERE = os.path.dirname(os.path.abspath(__file__))

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

# The baseline: an inventory script that fetches the nodes over HTTP, as the plugin does (one large page, the rest
# concurrently), and prints what the plugin gives for PLUGIN_CONFIG (its groups and host variables, by hand), every
# string value marked unsafe as the plugin marks it (ansible's JSON form of an unsafe string).
SCRIPT = textwrap.dedent('''\
    #!%(python)s
    import concurrent.futures, json, os, sys, urllib.request
    URL, PAGE = %(url)r, %(page)d
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        sys.stdout.write("{}")
        sys.exit(0)

    def get(offset):
        req = urllib.request.Request("%%s/api/v1/nodes?limit=%%d&offset=%%d" %% (URL, PAGE, offset),
                                     headers={"Authorization": "Bearer " + os.environ["INGOT_PROVISIONER_TOKEN"]})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.load(resp)

    def unsafe(value):
        if isinstance(value, str):
            return {"__ansible_unsafe": value}
        if isinstance(value, dict):
            return dict((k, unsafe(v)) for k, v in value.items())
        if isinstance(value, list):
            return [unsafe(v) for v in value]
        return value

    first = get(0)
    nodes = first["items"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for page in pool.map(get, range(len(nodes), first["total"], len(nodes) or 1)):
            nodes.extend(page["items"])
    nodes.sort(key=lambda n: n["name"])
    groups, hostvars = {}, {}
    for n in nodes:
        name = n.get("allocation_name") or n["name"]
        hv = {"ingot_node": n["name"], "ingot_node_id": n["id"], "ingot_state": n["state"],
              "ingot_maintenance": bool(n.get("maintenance")), "ingot_pool": n.get("pool"),
              "ingot_tags": n.get("tags") or [], "ingot_macs": n.get("macs") or [], "ingot_facts": n.get("facts") or {},
              "ingot_owner": n.get("owner"), "ingot_allocation_name": n.get("allocation_name"),
              "ingot_image": n.get("image"), "ingot_ssh_host_keys": n.get("ssh_host_keys") or {}}
        bmc = n.get("bmc") or {}
        if bmc.get("address"):
            hv["bmc_host"] = bmc["address"]
            if bmc.get("port") is not None:
                hv["bmc_port"] = bmc["port"]
            if bmc.get("protocol"):
                hv["bmc_protocol"] = bmc["protocol"]
            if bmc.get("system_id"):
                hv["bmc_system_id"] = bmc["system_id"]
        if n["state"] == "deployed" and n.get("ip_address"):
            hv["ansible_host"] = n["ip_address"]
        for key, var in (("docker_url", "ingot_docker_url"), ("maintenance_reason", "ingot_maintenance_reason"),
                         ("last_error", "ingot_last_error")):
            if n.get(key):
                hv[var] = n[key]
        hostvars[name] = unsafe(hv)
        member = ["state_" + n["state"]] + (["pool_" + n["pool"]] if n.get("pool") else [])
        member += ["maintenance"] if n.get("maintenance") else []
        member += ["big"] if hv["ingot_facts"].get("memory_mib", 0) >= 131072 else []
        member += ["tag_" + t for t in hv["ingot_tags"]] + (["owner_" + n["owner"]] if n.get("owner") else [])
        for g in member:
            groups.setdefault(g, []).append(name)
    out = dict((g, {"hosts": h}) for g, h in groups.items())
    out["_meta"] = {"hostvars": hostvars}
    json.dump(out, sys.stdout)
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


ROUNDS = 5
# (arm, baseline, at most): the plugin against the script inventory, and the scale arm against the plugin at --nodes
TARGETS = [('plugin (live)', 'script', 0.8), ('plugin (cached)', 'script', 0.7)]
SCALE_TARGET = 11.0


def filled_service(work, name, count):
    """A service whose registry holds COUNT nodes (not started)."""
    service = Service(os.path.join(work, name), sqlite_synchronous='NORMAL')
    os.makedirs(service.workdir, exist_ok=True)
    start = time.monotonic()
    subprocess.run([service_python(), '-c', POPULATE, service.settings['database_url'], str(count)],
                   env=dict(os.environ, PYTHONPATH=PKG_DIR), check=True, stdout=subprocess.DEVNULL)
    print('  %s: %d nodes filled in through the service models in %.1f s' % (name, count, time.monotonic() - start),
          flush=True)
    return service


def assert_same(got, listing, what):
    """WHAT printed the plugin's live listing, or fail naming the first group or host that differs."""
    if got == listing:
        return
    for group in sorted(set(got) | set(listing)):
        if group != '_meta' and got.get(group) != listing.get(group):
            raise SystemExit('%s does not print what the plugin printed: group %s is %.300s, not %.300s'
                             % (what, group, got.get(group), listing.get(group)))
    mine, theirs = got['_meta']['hostvars'], listing['_meta']['hostvars']
    host = next(h for h in sorted(set(mine) | set(theirs)) if mine.get(h) != theirs.get(h))
    raise SystemExit('%s does not print what the plugin printed: host %s has %s, not %s'
                     % (what, host, mine.get(host), theirs.get(host)))


def write_yaml(path, data):
    with open(path, 'w') as f:
        yaml.safe_dump(data, f, default_flow_style=False)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', type=int, default=10000)
    parser.add_argument('--rounds', type=int, default=ROUNDS, help='rounds (at least %d)' % ROUNDS)
    parser.add_argument('--scale-nodes', type=int, default=100000,
                        help='nodes of the scale arm (linearity: at most %gx the time at --nodes); 0: no scale arm'
                        % SCALE_TARGET)
    parser.add_argument('--short', action='store_true',
                        help='500 nodes (5,000 for the scale arm), one round: proves the benchmark works, '
                        'does not judge the ratios')
    parser.add_argument('--static', action='store_true', help='also time a static YAML inventory (for reference)')
    parser.add_argument('--keep', action='store_true', help='keep the work directory')
    args = parser.parse_args()
    if args.short:
        args.nodes, args.rounds = 500, 1
        args.scale_nodes = 5000 if args.scale_nodes else 0
    elif args.rounds < ROUNDS:
        parser.error('--rounds: at least %d in the full form (--short runs one)' % ROUNDS)

    work = tempfile.mkdtemp(prefix='ingot-bench-inventory-')
    print('bench_inventory: %d nodes%s, %d round(s), work directory %s'
          % (args.nodes, ' (scale arm: %d)' % args.scale_nodes if args.scale_nodes else '', args.rounds, work),
          flush=True)
    service = filled_service(work, 'service', args.nodes)
    scale = filled_service(work, 'scale', args.scale_nodes) if args.scale_nodes else None
    env = dict(os.environ, **ansible_env({'INGOT_PROVISIONER_TOKEN': service.token,
                                          'ANSIBLE_INVENTORY_CACHE': 'False'}))
    with contextlib.ExitStack() as stack:
        stack.enter_context(service)
        live_source = write_yaml(os.path.join(work, 'live.ingot.yml'), dict(PLUGIN_CONFIG, provisioner_url=service.url))
        cached_source = write_yaml(os.path.join(work, 'cached.ingot.yml'), dict(
            PLUGIN_CONFIG, provisioner_url=service.url, cache=True, cache_plugin='ansible.builtin.jsonfile',
            cache_timeout=86400, cache_connection=os.path.join(work, 'cache')))

        # The baselines print exactly what the plugin prints.
        listing_text = run_inventory(live_source, env)[2]
        listing = json.loads(listing_text)
        hosts = len(listing['_meta']['hostvars'])
        assert hosts == args.nodes, 'the plugin listed %d hosts, not %d' % (hosts, args.nodes)
        script = os.path.join(work, 'script_inventory.py')
        with open(script, 'w') as f:
            f.write(SCRIPT % {'python': sys.executable, 'url': service.url, 'page': 10000})
        os.chmod(script, 0o755)
        run_inventory(cached_source, env)   # warms the cache
        script_text = run_inventory(script, env)[2]
        cached_text = run_inventory(cached_source, env)[2]
        assert_same(json.loads(script_text), listing, 'the script inventory')
        assert_same(json.loads(cached_text), listing, 'the cached plugin run')
        nvars = sum(len(v) for v in listing['_meta']['hostvars'].values()) / float(hosts)
        groups = len([g for g in listing if g != '_meta'])
        print('  %d hosts, %.1f variables each, %d groups; JSON listing %.1f MB'
              % (hosts, nvars, groups, len(listing_text) / 1e6), flush=True)

        # (name, source, the service whose CPU counts while it runs)
        candidates = [('plugin (live)', live_source, service), ('plugin (cached)', cached_source, None),
                      ('script', script, service)]
        if args.static:
            candidates.append(('static YAML', write_yaml(os.path.join(work, 'static.yml'), static_yaml(listing)), None))
        if scale:
            stack.enter_context(scale)
            scale_source = write_yaml(os.path.join(work, 'scale.ingot.yml'),
                                      dict(PLUGIN_CONFIG, provisioner_url=scale.url))
            scale_hosts = len(json.loads(run_inventory(scale_source, env)[2])['_meta']['hostvars'])
            assert scale_hosts == args.scale_nodes, \
                'the plugin listed %d hosts, not %d' % (scale_hosts, args.scale_nodes)
            candidates.append(('plugin (live) x%d' % (args.scale_nodes // args.nodes), scale_source, scale))
        names = [c[0] for c in candidates]
        wall = dict((name, []) for name in names)
        cpu = dict((name, []) for name in names)
        for i in range(args.rounds):
            order = candidates if i % 2 == 0 else candidates[::-1]
            for name, source, serving in order:
                seconds, used, dummy = run_inventory(source, env, out=os.path.join(work, 'out.json'),
                                                     service_pid=serving.proc.pid if serving else None)
                wall[name].append(seconds)
                cpu[name].append(used)
            print('  round %d (%s first): %s' % (i + 1, order[0][0], ', '.join(
                '%s %.2f s (cpu %.2f s)' % (n, wall[n][-1], cpu[n][-1]) for n in names)), flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print('ansible-inventory --list, %d nodes, %d round(s), the order reversed every other round; load average %.1f'
          % (args.nodes, args.rounds, os.getloadavg()[0]))
    print('  %-22s %9s %9s %9s' % ('', 'wall med', 'wall min', 'cpu med'))
    for name in names:
        print('  %-22s %8.2fs %8.2fs %8.2fs' % (name, statistics.median(wall[name]), min(wall[name]),
                                                statistics.median(cpu[name])))
    print()
    checks = list(TARGETS) + ([(names[-1], 'plugin (live)', SCALE_TARGET)] if scale else [])
    missed = []
    for mine, base, target in checks:
        # each ratio within one round, the median of the rounds
        wall_ratio = statistics.median(a / b for a, b in zip(wall[mine], wall[base]))
        cpu_ratio = statistics.median(a / b for a, b in zip(cpu[mine], cpu[base]))
        if args.short:
            verdict = 'not judged (--short)'
        elif cpu_ratio <= target:
            verdict = 'met' if wall_ratio <= target else 'met on CPU time (wall over it: a busy machine)'
        else:
            verdict = 'MISSED'
            missed.append('%s / %s = %.2fx CPU > %gx' % (mine, base, cpu_ratio, target))
        print('  %-22s / %-13s = %5.2fx wall, %5.2fx CPU   (target <= %gx)  %s'
              % (mine, base, wall_ratio, cpu_ratio, target, verdict))
    if args.static:
        static_ratio = statistics.median(a / b for a, b in zip(cpu['plugin (live)'], cpu['static YAML']))
        print('  (for reference: plugin (live) / static YAML = %.2fx CPU)' % static_ratio)
    if missed:
        print('bench_inventory: target MISSED: %s' % '; '.join(missed))
        return 1
    print('bench_inventory: %s' % ('every arm ran (--short: ratios not judged)' if args.short
                                   else 'every target met'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
