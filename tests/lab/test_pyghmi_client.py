"""Stock pyghmi (the client community.general's modules use), and those modules themselves,
against the virtual BMC.  Each client runs in its own process with str credentials, as the
modules do; the machine's state file is the judge."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid

import pytest

from ingot_lab.records import macs_from_fru_fields


def test_power_and_boot_device(lab, bmc, pyghmi_client):
    result = pyghmi_client(bmc, '''
        c = command.Command(bmc=BMC, userid=USER, password=PASSWORD, port=PORT)
        out = {'hash': c.ipmi_session.attemptedhash, 'before': c.get_power()}
        out['on'] = c.set_power('on', wait=True)
        out['bootdev_default'] = c.get_bootdev()
        out['set'] = c.set_bootdev('network', persist=True, uefiboot=True)
        out['bootdev'] = c.get_bootdev()
        out['boot'] = c.set_power('boot', wait=True)
        emit(out)
    ''')
    # pyghmi proposes cipher suite 17 first; the server says 0x11 and the client falls back to 3
    assert result['hash'] == 1
    assert result['before'] == {'powerstate': 'off'}
    assert result['on'] == {'powerstate': 'on'}
    assert result['bootdev_default'] == {'bootdev': 'default', 'persistent': True}
    assert result['bootdev'] == {'bootdev': 'network', 'persistent': True, 'uefimode': True}
    state = lab.machine_state(bmc.name)
    assert state['power'] == 'on'
    assert state['boot'] == {'device': 'pxe', 'persistent': True, 'uefi': True}
    assert state['boot_count'] == 2 and state['last_boot']['why'] == 'reset'
    assert state['last_boot']['device'] == 'pxe' and state['last_boot']['uefi'] is True


def test_next_boot_override_then_shutdown(lab, bmc, pyghmi_client):
    result = pyghmi_client(bmc, '''
        c = command.Command(bmc=BMC, userid=USER, password=PASSWORD, port=PORT)
        c.set_bootdev('optical')
        before = c.get_bootdev()
        c.set_power('on', wait=True)
        after = c.get_bootdev()
        off = c.set_power('shutdown', wait=True)
        emit({'before': before, 'after': after, 'off': off, 'power': c.get_power()})
    ''', fixed=True)
    assert result['before'] == {'bootdev': 'optical', 'persistent': False, 'uefimode': False}
    assert result['after'] == {'bootdev': 'default', 'persistent': True}
    assert result['off'] == {'powerstate': 'off'} and result['power'] == {'powerstate': 'off'}
    state = lab.machine_state(bmc.name)
    assert state['last_boot']['device'] == 'cdrom' and state['last_boot']['override'] is True
    assert state['last_power_change']['why'] == 'soft-off'


def test_inventory_sensors_guid_firmware(lab, bmc, pyghmi_client):
    result = pyghmi_client(bmc, '''
        c = command.Command(bmc=BMC, userid=USER, password=PASSWORD, port=PORT)
        c.set_power('on', wait=True)
        inventory = dict(c.get_inventory())
        sensors = [{'name': s.name, 'type': s.type, 'value': s.value, 'units': s.units}
                   for s in c.get_sensor_data()]
        guid = c.raw_command(netfn=6, command=0x37)
        from pyghmi.ipmi.private.util import decode_wireformat_uuid
        emit({'inventory': inventory, 'sensors': sensors, 'firmware': list(c.get_firmware()),
              'guid': decode_wireformat_uuid(guid['data'])})
    ''', fixed=True)
    system = result['inventory']['System']
    assert system['Manufacturer'] == 'Ingot Lab'
    assert system['Product name'] == 'Virtual Metal VM-1'
    assert system['Manufacturer ID'] == 32473
    assert system['UUID'].lower() == lab.config(bmc.name)['guid']
    assert macs_from_fru_fields(system['product_extra']) == list(bmc.macs)
    sensors = {s['name']: s for s in result['sensors']}
    assert sensors['CPU Temp']['value'] == 45.0 and sensors['CPU Temp']['type'] == 'Temperature'
    assert sensors['FAN2']['value'] == 5500.0 and sensors['FAN2']['units'] == 'RPM'
    assert abs(sensors['3.3V']['value'] - 3.31) < 0.02
    assert result['firmware'] == [['BMC Version', {'version': '1.23'}]]
    assert uuid.UUID(result['guid']) == uuid.UUID(lab.config(bmc.name)['guid'])


def test_unknown_user_fails_fast(lab, bmc, pyghmi_client):
    result = pyghmi_client(bmc, '''
        started = time.monotonic()
        try:
            command.Command(bmc=BMC, userid='nobody', password=PASSWORD, port=PORT)
            emit({'error': None})
        except exceptions.IpmiException as err:
            emit({'error': str(err), 'seconds': time.monotonic() - started})
    ''', timeout=30)
    assert 'Unauthorized name' in result['error']
    assert result['seconds'] < 3


def test_wrong_password_fails_fast(lab, bmc, pyghmi_client):
    result = pyghmi_client(bmc, '''
        started = time.monotonic()
        try:
            command.Command(bmc=BMC, userid=USER, password='not-the-password', port=PORT)
            emit({'error': None})
        except exceptions.IpmiException as err:
            emit({'error': str(err), 'seconds': time.monotonic() - started})
    ''', password='ignored', timeout=30)
    assert result['error'] == 'Incorrect password provided'
    assert result['seconds'] < 2


def _module_path(name):
    try:
        spec = importlib.util.find_spec('ansible_collections.community.general.plugins.modules.' + name)
    except ImportError:
        return None
    return spec.origin if spec else None


def run_module(name, args, tmp_path):
    """Run a community.general module as Ansible runs it on a host: its own process, its arguments
    in a JSON file; return its JSON result."""
    argsfile = tmp_path / ('%s-args.json' % name)
    argsfile.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    # (run_path, not "python module.py": the modules directory on sys.path would shadow stdlib
    # names with modules such as community.general's xml.py)
    runner = 'import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")'
    proc = subprocess.run([sys.executable, '-c', runner, _module_path(name), str(argsfile)], capture_output=True,
                          text=True, timeout=120, cwd=str(tmp_path), check=False)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(_module_path('ipmi_power') is None, reason='community.general is not installed')
def test_community_general_ipmi_boot_and_ipmi_power_modules(lab, bmc, tmp_path):
    conn = {'name': bmc.host, 'port': bmc.port, 'user': bmc.user, 'password': bmc.password}
    boot = dict(conn, bootdev='network', persistent=True, uefiboot=True)
    result = run_module('ipmi_boot', boot, tmp_path)
    assert result.get('changed') is True, result
    assert lab.machine_state(bmc.name)['boot'] == {'device': 'pxe', 'persistent': True, 'uefi': True}
    result = run_module('ipmi_power', dict(conn, state='on', timeout=30), tmp_path)
    assert result.get('changed') is True and result['powerstate'] == 'on', result
    state = lab.machine_state(bmc.name)
    assert state['power'] == 'on' and state['last_boot']['device'] == 'pxe' and state['last_boot']['uefi'] is True
    assert run_module('ipmi_boot', boot, tmp_path).get('changed') is False
    assert run_module('ipmi_power', dict(conn, state='on', timeout=30), tmp_path).get('changed') is False
    assert lab.machine_state(bmc.name)['boot_count'] == 1


def _ansible_playbook():
    path = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return path if os.path.exists(path) else None


@pytest.mark.skipif(_ansible_playbook() is None or os.environ.get('INGOT_LAB_ANSIBLE') != '1',
                    reason='whole ansible-playbook runs take ~15 s here: set INGOT_LAB_ANSIBLE=1')
def test_community_general_ipmi_power_and_ipmi_boot(lab, tmp_path):
    hosts = [lab.unused.pop(0)]
    inventory = tmp_path / 'inventory.yml'
    lab.inventory(inventory)
    assert oct(inventory.stat().st_mode & 0o777) == '0o600'
    playbook = tmp_path / 'play.yml'
    playbook.write_text(textwrap.dedent('''
        - hosts: vbmc
          gather_facts: false
          tasks:
            - community.general.ipmi_boot:
                name: "{{ bmc_host }}"
                port: "{{ bmc_port }}"
                user: "{{ bmc_user }}"
                password: "{{ bmc_password }}"
                bootdev: network
                persistent: true
                uefiboot: true
            - community.general.ipmi_power:
                name: "{{ bmc_host }}"
                port: "{{ bmc_port }}"
                user: "{{ bmc_user }}"
                password: "{{ bmc_password }}"
                state: "on"
                timeout: 30
    '''))
    env = dict(os.environ, ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_NOCOLOR='1',
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    cmd = [_ansible_playbook(), '-i', str(inventory), str(playbook), '--limit', ','.join(h.name for h in hosts)]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    for host in hosts:
        assert re.search(r'^%s\s+: ok=2\s+changed=2\s' % host.name, first.stdout, re.M), first.stdout
        state = lab.machine_state(host.name)
        assert state['power'] == 'on'
        assert state['boot'] == {'device': 'pxe', 'persistent': True, 'uefi': True}
        assert state['last_boot']['device'] == 'pxe' and state['last_boot']['uefi'] is True
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    for host in hosts:
        assert re.search(r'^%s\s+: ok=2\s+changed=0\s' % host.name, second.stdout, re.M), second.stdout
        assert lab.machine_state(host.name)['boot_count'] == 1
