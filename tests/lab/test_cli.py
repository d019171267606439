"""The ``lab/ingot-lab vbmc`` command line, run as a user runs it (a subprocess, its own state dir)."""

import contextlib
import io
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from ingot_lab.cli import main
from ingot_lab.probe import probe
from ingot_lab.testing import free_udp_ports
from lab_helpers import LAB_DIR

WRAPPER = os.path.join(LAB_DIR, 'ingot-lab')


def cli(state_dir, *args, check=True):
    """Run the command line in this process (what lab/ingot-lab runs; the servers it starts are
    real processes all the same)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(['--state-dir', str(state_dir)] + [str(a) for a in args])
    proc = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    if check:
        assert proc.returncode == 0, '%s\n%s%s' % (args, proc.stdout, proc.stderr)
    return proc


def test_the_wrapper_runs_the_command_line(tmp_path):
    port = free_udp_ports(1)
    proc = subprocess.run([sys.executable, WRAPPER, '--state-dir', str(tmp_path), 'vbmc', 'add', 'w', '--port',
                           str(port)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and 'added w on 127.0.0.1:' in proc.stdout, proc.stderr
    assert os.access(WRAPPER, os.X_OK)
    env = dict(os.environ, PYTHONPATH=LAB_DIR)
    proc = subprocess.run([sys.executable, '-m', 'ingot_lab', '--state-dir', str(tmp_path), 'vbmc', 'list'],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[:5] == ['w', '127.0.0.1:%d' % port, 'admin', 'off', 'default']


def listing(state_dir):
    return {row['name']: row for row in json.loads(cli(state_dir, 'vbmc', 'list', '--json').stdout)}


def ipmi(port, password, *args):
    return subprocess.run(['ipmitool', '-I', 'lanplus', '-H', '127.0.0.1', '-p', str(port), '-U', 'admin',
                           '-P', password] + list(args), capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / 'lab'
    yield path
    cli(path, 'vbmc', 'stop', check=False)


def test_lifecycle(ipmitool, state_dir):
    base = free_udp_ports(7)
    cli(state_dir, 'vbmc', 'add', 'alpha', '--port', base, '--password', 'alpha-pw', '--vendor', 'Supermicro',
        '--macs', '02:00:00:00:aa:01', '02:00:00:00:aa:02', '--serial', 'SER-1')
    out = cli(state_dir, 'vbmc', 'add-many', '--count', 5, '--base-port', base + 1, '--prefix', 'rack').stdout
    assert 'added 5 vBMCs rack001..rack005' in out
    config_path = state_dir / 'config.json'
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    rows = listing(state_dir)
    assert list(rows) == ['alpha', 'rack001', 'rack002', 'rack003', 'rack004', 'rack005']
    assert all(r['running'] is None and r['power'] == 'off' for r in rows.values())

    # refused: a port in use, a bad name, a duplicate
    assert 'already used by alpha' in cli(state_dir, 'vbmc', 'add', 'beta', '--port', base, check=False).stderr
    assert 'invalid vBMC name' in cli(state_dir, 'vbmc', 'add', 'a/b', '--port', base + 9, check=False).stderr
    assert 'already configured' in cli(state_dir, 'vbmc', 'add', 'alpha', '--port', base + 9, check=False).stderr

    out = cli(state_dir, 'vbmc', 'start').stdout
    assert 'serving 6 vBMCs' in out
    assert probe('127.0.0.1', range(base, base + 6), timeout=0.5) == set(range(base, base + 6))
    assert 'already running' in cli(state_dir, 'vbmc', 'start').stdout
    rows = listing(state_dir)
    assert len({r['running'] for r in rows.values()}) == 1 and rows['alpha']['running']

    # the vendor and MACs reach the wire; the machine state reaches "list"
    out = ipmi(base, 'alpha-pw', 'mc', 'info').stdout
    assert 'Manufacturer ID           : 10876' in out
    out = ipmi(base, 'alpha-pw', 'fru').stdout
    assert 'Product Extra         : MAC:02:00:00:00:aa:02' in out and 'SER-1' in out
    assert ipmi(base, 'alpha-pw', 'chassis', 'bootdev', 'pxe').returncode == 0
    assert ipmi(base, 'alpha-pw', 'power', 'on').returncode == 0
    assert ipmi(base, 'alpha-pw', 'chassis', 'bootdev', 'cdrom', 'options=persistent').returncode == 0
    rows = listing(state_dir)
    assert rows['alpha']['power'] == 'on'
    assert rows['alpha']['bootdev'] == 'cdrom (persistent)'
    text = cli(state_dir, 'vbmc', 'list').stdout
    assert text.splitlines()[0].split() == ['NAME', 'PORT', 'USER', 'POWER', 'BOOTDEV', 'RUNNING', 'FAULTS']

    # faults, picked up by the running server before the command returns
    cli(state_dir, 'vbmc', 'fault', 'rack002', '--drop', '0.2', '--delay', '0.1')
    assert listing(state_dir)['rack002']['faults'] == {'drop': 0.2, 'delay': 0.1}
    records = [json.loads(p.read_text()) for p in (state_dir / 'run').glob('vbmc-*.json')]
    assert records[0]['generation'] == json.loads(config_path.read_text())['generation']
    cli(state_dir, 'vbmc', 'fault', '--all', '--clear')
    assert listing(state_dir)['rack002']['faults'] == {}

    # inventory
    inventory = yaml.safe_load(cli(state_dir, 'vbmc', 'inventory').stdout)
    hosts = inventory['all']['children']['vbmc']['hosts']
    assert hosts['alpha'] == {'bmc_host': '127.0.0.1', 'bmc_port': base, 'bmc_user': 'admin',
                              'bmc_password': 'alpha-pw', 'lab_macs': ['02:00:00:00:aa:01', '02:00:00:00:aa:02']}
    generated = hosts['rack001']['bmc_password']
    assert len(generated) >= 12
    assert ipmi(base + 1, generated, 'power', 'status').stdout.strip() == 'Chassis Power is off'
    out_file = state_dir.parent / 'inv.yml'
    cli(state_dir, 'vbmc', 'inventory', '-o', out_file)
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert yaml.safe_load(out_file.read_text()) == inventory

    # a vBMC added while the lab runs is served by a further process at the next start
    cli(state_dir, 'vbmc', 'add', 'late', '--port', base + 6, '--password', 'late-pw')
    assert listing(state_dir)['late']['running'] is None
    assert 'started vBMC server 1 (pid' in cli(state_dir, 'vbmc', 'start').stdout
    assert ipmi(base + 6, 'late-pw', 'power', 'status').returncode == 0

    # rm is refused while served; passwords never reach the logs
    assert 'stop the lab first' in cli(state_dir, 'vbmc', 'rm', 'rack005', check=False).stderr
    logs = ''.join(p.read_text() for p in (state_dir / 'logs').iterdir())
    assert 'alpha-pw' not in logs and generated not in logs
    assert 'chassis control power-on' in logs

    # stop; a restart keeps the machines' state; sharded start
    assert 'stopped 2 vBMC server' in cli(state_dir, 'vbmc', 'stop').stdout
    assert all(r['running'] is None for r in listing(state_dir).values())
    assert probe('127.0.0.1', [base], timeout=0.3) == set()
    cli(state_dir, 'vbmc', 'rm', 'rack005')
    assert not (state_dir / 'machines' / 'rack005.json').exists()
    out = cli(state_dir, 'vbmc', 'start', '--processes', '2').stdout
    assert out.count('started vBMC server') == 2
    rows = listing(state_dir)
    assert len(rows) == 6 and len({r['running'] for r in rows.values()}) == 2
    assert ipmi(base, 'alpha-pw', 'power', 'status').stdout.strip() == 'Chassis Power is on'
    out = ipmi(base, 'alpha-pw', 'chassis', 'bootparam', 'get', '5').stdout
    assert 'Force Boot from CD/DVD' in out and 'all future boots' in out
    assert 'stopped 2 vBMC server' in cli(state_dir, 'vbmc', 'stop').stdout
    assert 'no vBMC server running' in cli(state_dir, 'vbmc', 'stop').stdout


def test_start_reports_a_port_in_use(state_dir):
    import socket
    port = free_udp_ports(1)
    cli(state_dir, 'vbmc', 'add', 'busy', '--port', port, '--password', 'x')
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(('127.0.0.1', port))
        proc = cli(state_dir, 'vbmc', 'start', '--timeout', 10, check=False)
    assert proc.returncode == 1
    assert 'cannot listen on 127.0.0.1:%d/udp' % port in proc.stderr
    assert listing(state_dir)['busy']['running'] is None


def test_serve_in_the_foreground_stops_on_sigterm(state_dir):
    import signal
    import time
    port = free_udp_ports(1)
    cli(state_dir, 'vbmc', 'add', 'fg', '--port', port, '--password', 'x')
    env = dict(os.environ, PYTHONPATH=LAB_DIR)
    proc = subprocess.Popen([sys.executable, '-m', 'ingot_lab', '--state-dir', str(state_dir), 'vbmc', 'serve'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 15
        while probe('127.0.0.1', [port], timeout=0.2) != {port}:
            assert proc.poll() is None and time.monotonic() < deadline
        assert listing(state_dir)['fg']['running'] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=10)[1]
    assert proc.returncode == 0
    assert 'serving 1 vBMCs' in err                     # the foreground server logs to stderr too
    assert listing(state_dir)['fg']['running'] is None
