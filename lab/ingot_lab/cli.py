"""``ingot-lab``: the lab's command line.

    ingot-lab [--state-dir DIR] vbmc add NAME --port P [--user U] [--password PW] [--macs MAC ...]
                                     [--nics N] [--vendor V] [--serial S] [--product P]
                                     [--soft-off-delay S] [--manufacturer-id N]
    ingot-lab vbmc add-many --count N --base-port P [--prefix n] [same options as add]
    ingot-lab vbmc list [--json]
    ingot-lab vbmc start [--processes K] [--timeout S]
    ingot-lab vbmc stop
    ingot-lab vbmc rm NAME [NAME ...]
    ingot-lab vbmc fault NAME [NAME ...] | --all  [--drop F] [--delay S] [--max-sessions N] [--[no-]next-boot-only] [--clear]
    ingot-lab vbmc passwd NAME [NAME ...] | --all  [--user U] --password PW
    ingot-lab vbmc inventory [-o FILE]
    ingot-lab vbmc serve [--names a,b] [--shard-id ID]      (foreground, for debugging)
    ingot-lab vbmc bench [--threads 20] [--rounds 3]
    ingot-lab node console NAME [--tail N]
    ingot-lab up [--nodes N] [--base-port P]
    ingot-lab down

The state directory is ``$INGOT_LAB_DIR`` or ``<collection root>/.lab``.
"""

import argparse
import json
import logging
import os
import shlex
import sys

from ingot_lab import manage
from ingot_lab.state import Lab, LabError, default_state_dir, write_file_atomic


def _machine_options(args):
    return {'vendor': args.vendor, 'serial': args.serial, 'product': args.product,
            'soft_off_delay': args.soft_off_delay}


def _machine_args(parser):
    parser.add_argument('--user', default=manage.DEFAULT_USER, help='BMC user (default: admin)')
    parser.add_argument('--password', help='BMC password (default: a random one per BMC; see "inventory")')
    parser.add_argument('--macs', nargs='+', metavar='MAC', help='host NIC MAC addresses (default: derived)')
    parser.add_argument('--nics', type=int, default=1, help='number of host NICs when --macs is not given')
    parser.add_argument('--vendor', help='manufacturer name in FRU (known vendors also set the IPMI '
                                         'manufacturer id)')
    parser.add_argument('--serial', help='product serial number (default: derived from the name)')
    parser.add_argument('--product', help='product name in FRU')
    parser.add_argument('--soft-off-delay', type=float, help='seconds from a soft-off request to power off')
    parser.add_argument('--manufacturer-id', type=int, help='IANA enterprise number for Get Device ID')
    parser.add_argument('--address', default=manage.DEFAULT_ADDRESS, help=argparse.SUPPRESS)


def _targets(lab, args):
    config = lab.load()
    names = list(config['bmcs']) if args.all else args.names
    if not names:
        raise LabError('name at least one vBMC, or --all')
    return names


def cmd_add(lab, args):
    manage.add(lab, args.name, args.port, args.user, args.password, args.macs, args.nics, args.address,
               _machine_options(args), args.manufacturer_id)
    print('added %s on %s:%d/udp' % (args.name, args.address, args.port))


def cmd_add_many(lab, args):
    if args.macs:
        raise LabError('--macs would give every vBMC the same MACs; leave it out with add-many')
    fleet = manage.fleet_names(args.count, args.base_port, args.prefix)
    manage.add_many(lab, fleet, args.user, args.password, None, args.nics, args.address,
                    _machine_options(args), args.manufacturer_id)
    print('added %d vBMCs %s..%s on %s:%d-%d/udp' % (len(fleet), fleet[0][0], fleet[-1][0], args.address,
                                                     fleet[0][1], fleet[-1][1]))


def cmd_list(lab, args):
    rows = manage.rows(lab)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    header = ('NAME', 'PORT', 'USER', 'POWER', 'BOOTDEV', 'RUNNING', 'FAULTS')
    table = [header] + [(r['name'], '%s:%d' % (r['address'], r['port']), r['user'], r['power'], r['bootdev'],
                         'yes (pid %d)' % r['running'] if r['running'] else 'no',
                         ' '.join('%s=%s' % kv for kv in sorted(r['faults'].items())) or '-') for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print('  '.join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def cmd_start(lab, args):
    from ingot_lab import server
    records = server.start(lab, args.processes, args.timeout)[0]
    if not records:
        print('all %d vBMCs already running' % len(lab.load()['bmcs']))
        return
    for record in records:
        print('started vBMC server %s (pid %d) serving %d vBMCs' % (record['id'], record['pid'],
                                                                    len(record['names'])))


def cmd_stop(lab, args):
    from ingot_lab import server
    stopped = server.stop(lab, args.timeout)
    print('stopped %d vBMC server process(es)' % len(stopped) if stopped else 'no vBMC server running')


def cmd_rm(lab, args):
    manage.remove(lab, args.names)
    print('removed %s' % ', '.join(args.names))


def cmd_fault(lab, args):
    names = _targets(lab, args)
    manage.set_faults(lab, names, args.drop, args.delay, args.max_sessions, args.clear,
                      next_boot_only=args.next_boot_only)
    print('faults set on %d vBMC(s)' % len(names))


def cmd_passwd(lab, args):
    names = _targets(lab, args)
    manage.set_credentials(lab, names, args.user, args.password)
    print('credentials changed on %d vBMC(s)' % len(names))


def cmd_inventory(lab, args):
    text = manage.inventory_yaml(lab)
    if args.output:
        write_file_atomic(os.path.abspath(args.output), text, 0o600)
        print('wrote %s (mode 0600: it holds the BMC passwords)' % args.output)
    else:
        sys.stdout.write(text)


def cmd_serve(lab, args):
    from ingot_lab import server
    server.setup_logging(lab, args.shard_id, to_stderr=not args.quiet,
                         level=getattr(logging, args.log_level.upper()))
    names = [n for n in args.names.split(',') if n] if args.names else None
    return server.serve(lab, names, args.shard_id)


def cmd_bench(lab, args):
    from ingot_lab import bench
    config = lab.load()
    served = lab.served()
    targets = [(e.get('address', manage.DEFAULT_ADDRESS), e['port'], e['user'], e['password'])
               for n, e in sorted(config['bmcs'].items(), key=lambda i: i[1]['port']) if n in served]
    if not targets:
        raise LabError('no vBMC is running: "ingot-lab vbmc start" first')
    summary = bench.run(targets, args.threads, args.rounds)
    print('power status of %d vBMCs, %d threads, %d rounds: median %.3f s, best %.3f s, failures %d (%s)' % (
        summary['bmcs'], summary['threads'], summary['rounds'], summary['median'], summary['best'],
        summary['failures'], ', '.join('%.3f' % t for t in summary['times'])))
    return 1 if summary['failures'] else 0


def cmd_node_console(lab, args):
    vm = manage.machine(lab, args.name)
    if not hasattr(vm, 'console'):
        raise LabError('%s is a %s machine: it has no console' % (args.name, type(vm).__name__))
    sys.stdout.write(vm.console(tail=args.tail))


def cmd_up(lab, args):
    from ingot_lab import rack
    return rack.up(lab, args.nodes, base_port=args.base_port)


def cmd_down(lab, args):
    from ingot_lab import rack
    return rack.down(lab)


def cmd_env(lab, args):
    """The environment the collection's verbs and inventory plugin need for this lab rack."""
    from ingot_lab import rack
    try:
        with open(os.path.join(lab.dir, 'rack.json')) as handle:
            data = json.load(handle)
        token = data['token']
    except (OSError, ValueError, KeyError):
        raise LabError('no lab rack is up in %s: run "ingot-lab up" first' % lab.dir) from None
    print('export INGOT_PROVISIONER_URL=%s' % rack.provisioner_url())
    print('export INGOT_PROVISIONER_TOKEN=%s' % shlex.quote(token))
    print('# the lab\'s BMC inventory (hosts named after the nodes, with their BMC credentials): %s'
          % os.path.join(lab.dir, 'inventory.yml'))
    if data.get('view_token'):
        print('# the web view (read-only): %s/ui/ ; log in with the view token %s'
              % (rack.provisioner_url(), shlex.quote(data['view_token'])))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog='ingot-lab', description='The ingot.metal virtual lab.')
    parser.add_argument('--state-dir', default=None,
                        help='lab state directory (default: $INGOT_LAB_DIR or <collection>/.lab: %s)'
                        % default_state_dir())
    groups = parser.add_subparsers(dest='group', required=True)
    vbmc = groups.add_parser('vbmc', help='virtual BMCs (IPMI 2.0 lanplus on loopback)')
    sub = vbmc.add_subparsers(dest='command', required=True)

    p = sub.add_parser('add', help='configure a vBMC')
    p.add_argument('name')
    p.add_argument('--port', type=int, required=True)
    _machine_args(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser('add-many', help='configure a fleet of vBMCs (names PREFIX001.., consecutive ports)')
    p.add_argument('--count', type=int, required=True)
    p.add_argument('--base-port', type=int, required=True)
    p.add_argument('--prefix', default='n')
    _machine_args(p)
    p.set_defaults(func=cmd_add_many)

    p = sub.add_parser('list', help='list vBMCs with power, boot device and whether they are served')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_list)

    p = sub.add_parser('start', help='start server process(es) for every configured vBMC not yet served')
    p.add_argument('--processes', type=int, default=1, help='shard the vBMCs over K processes')
    p.add_argument('--timeout', type=float, default=30.0, help='seconds to wait until every vBMC answers')
    p.set_defaults(func=cmd_start)

    p = sub.add_parser('stop', help='stop the server processes')
    p.add_argument('--timeout', type=float, default=5.0)
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser('rm', help='remove vBMCs (not while served)')
    p.add_argument('names', nargs='+')
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser('fault', help='set faults; running servers apply them before this returns')
    p.add_argument('names', nargs='*')
    p.add_argument('--all', action='store_true')
    p.add_argument('--drop', type=float, help='share of incoming packets dropped, 0..1')
    p.add_argument('--delay', type=float, help='seconds added before each reply')
    p.add_argument('--max-sessions', type=int, help='refuse new sessions beyond N (0: no limit)')
    p.add_argument('--next-boot-only', dest='next_boot_only', action=argparse.BooleanOptionalAction, default=None,
                   help='keep a persistent boot override for the next boot only (as many real BMCs do)')
    p.add_argument('--clear', action='store_true', help='reset all faults first')
    p.set_defaults(func=cmd_fault)

    p = sub.add_parser('passwd', help='change user and/or password; running servers apply it at once')
    p.add_argument('names', nargs='*')
    p.add_argument('--all', action='store_true')
    p.add_argument('--user')
    p.add_argument('--password', required=True)
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser('inventory', help='print (or write, mode 0600) an Ansible YAML inventory of the vBMCs')
    p.add_argument('-o', '--output')
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser('serve', help='serve vBMCs in the foreground (debugging; "start" runs this)')
    p.add_argument('--names', help='comma-separated vBMC names (default: all configured)')
    p.add_argument('--shard-id', default='fg')
    p.add_argument('--quiet', action='store_true', help='log to the log file only')
    p.add_argument('--log-level', default='info')
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser('bench', help='power-status sweep of the running vBMCs from this process (pyghmi)')
    p.add_argument('--threads', type=int, default=20)
    p.add_argument('--rounds', type=int, default=3)
    p.set_defaults(func=cmd_bench)

    node = groups.add_parser('node', help='the lab\'s nodes (containers behind virtual BMCs)')
    nsub = node.add_subparsers(dest='command', required=True)
    p = nsub.add_parser('console', help='the node\'s console output, every boot (the container\'s log)')
    p.add_argument('name')
    p.add_argument('--tail', type=int, help='only the last N lines')
    p.set_defaults(func=cmd_node_console)

    p = groups.add_parser('up', help='bring the lab rack up: Docker, images, bridge, provisioner host, '
                                     'vBMCs and N node containers')
    p.add_argument('--nodes', type=int, default=2)
    p.add_argument('--base-port', type=int, default=16230)
    p.set_defaults(func=cmd_up)
    p = groups.add_parser('down', help='remove everything "up" created and restore the host')
    p.set_defaults(func=cmd_down)
    p = groups.add_parser('env', help='print the export lines of the rack\'s provisioner URL and admin token '
                                      '(eval "$(lab/ingot-lab env)")')
    p.set_defaults(func=cmd_env)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    lab = Lab(args.state_dir)
    try:
        return args.func(lab, args) or 0
    except LabError as err:
        print('ingot-lab: %s' % err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
