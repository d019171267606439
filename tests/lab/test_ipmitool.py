"""Unchanged ipmitool (-I lanplus) against the virtual BMC; every change is checked in the
machine's own state file, not in what ipmitool printed."""

import re
import time
import uuid

import pytest

from ingot_lab.machines import derived_serial


def ok(bmc, *args):
    proc = bmc.ipmitool(*args)
    assert proc.returncode == 0, '%s: rc=%d\n%s%s' % (' '.join(args), proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def field(output, name):
    """The value of 'Name   : value' in ipmitool output."""
    match = re.search(r'^\s*%s\s*:\s*(.*?)\s*$' % re.escape(name), output, re.M)
    assert match, '%r not in:\n%s' % (name, output)
    return match.group(1)


def test_power_on_off_status(ipmitool, lab, bmc):
    assert ok(bmc, 'power', 'status').strip() == 'Chassis Power is off'
    assert 'Up/On' in ok(bmc, 'power', 'on')
    state = lab.machine_state(bmc.name)
    assert state['power'] == 'on'
    assert state['boot_count'] == 1
    assert ok(bmc, 'power', 'status').strip() == 'Chassis Power is on'
    ok(bmc, 'power', 'on')                                   # already on: no second boot
    assert lab.machine_state(bmc.name)['boot_count'] == 1
    assert 'Down/Off' in ok(bmc, 'power', 'off')
    assert lab.machine_state(bmc.name)['power'] == 'off'
    assert ok(bmc, 'power', 'status').strip() == 'Chassis Power is off'


def test_power_cycle_reset_soft(ipmitool, lab, bmc):
    ok(bmc, 'power', 'on')
    ok(bmc, 'power', 'cycle')
    state = lab.machine_state(bmc.name)
    assert (state['power'], state['boot_count'], state['last_boot']['why']) == ('on', 2, 'power-cycle')
    ok(bmc, 'power', 'reset')
    state = lab.machine_state(bmc.name)
    assert (state['power'], state['boot_count'], state['last_boot']['why']) == ('on', 3, 'reset')
    ok(bmc, 'power', 'soft')
    state = lab.machine_state(bmc.name)
    assert state['power'] == 'off' and state['last_power_change']['why'] == 'soft-off'


def test_cycle_and_reset_of_a_machine_that_is_off_are_refused(ipmitool, lab, bmc):
    for action in ('cycle', 'reset'):
        proc = bmc.ipmitool('power', action)
        assert proc.returncode != 0
        assert 'not supported in present state' in proc.stderr
    proc = bmc.ipmitool('power', 'soft')                     # soft-off of an off machine: nothing to do
    assert proc.returncode == 0
    assert lab.machine_state(bmc.name)['power'] == 'off'
    assert lab.machine_state(bmc.name)['boot_count'] == 0


def test_chassis_status(ipmitool, lab, bmc):
    out = ok(bmc, 'chassis', 'status')
    assert field(out, 'System Power') == 'off'
    ok(bmc, 'power', 'on')
    out = ok(bmc, 'chassis', 'status')
    assert field(out, 'System Power') == 'on'
    assert field(out, 'Last Power Event') == 'command'
    assert field(out, 'Power Restore Policy') == 'previous'


@pytest.mark.parametrize('device, selector_text, state_device', [
    ('pxe', 'Force PXE', 'pxe'),
    ('disk', 'Force Boot from default Hard-Drive', 'disk'),
    ('cdrom', 'Force Boot from CD/DVD', 'cdrom'),
    ('bios', 'Force Boot into BIOS Setup', 'bios'),
])
def test_bootdev_next_boot_only_is_consumed_at_power_on(ipmitool, lab, bmc, device, selector_text, state_device):
    assert 'Set Boot Device to %s' % device in ok(bmc, 'chassis', 'bootdev', device)
    boot = lab.machine_state(bmc.name)['boot']
    assert boot == {'device': state_device, 'persistent': False, 'uefi': False}
    out = ok(bmc, 'chassis', 'bootparam', 'get', '5')
    assert 'Boot Flag Valid' in out
    assert 'Options apply to only next boot' in out
    assert 'BIOS PC Compatible (legacy) boot' in out
    assert selector_text in out
    ok(bmc, 'power', 'on')
    state = lab.machine_state(bmc.name)
    assert state['last_boot'] == {**state['last_boot'], 'device': state_device, 'override': True}
    assert state['boot'] == {'device': 'default', 'persistent': False, 'uefi': False}
    out = ok(bmc, 'chassis', 'bootparam', 'get', '5')
    assert 'Boot Flag Invalid' in out
    assert 'No override' in out
    ok(bmc, 'power', 'reset')                                # the next boot uses the firmware's order
    state = lab.machine_state(bmc.name)
    assert state['last_boot']['device'] == 'disk' and state['last_boot']['override'] is False


def test_bootdev_persistent_efi_is_kept_across_boots(ipmitool, lab, bmc):
    ok(bmc, 'chassis', 'bootdev', 'pxe', 'options=persistent,efiboot')
    assert lab.machine_state(bmc.name)['boot'] == {'device': 'pxe', 'persistent': True, 'uefi': True}
    out = ok(bmc, 'chassis', 'bootparam', 'get', '5')
    assert 'Options apply to all future boots' in out
    assert 'BIOS EFI boot' in out
    assert 'Force PXE' in out
    ok(bmc, 'power', 'on')
    ok(bmc, 'power', 'cycle')
    ok(bmc, 'power', 'reset')
    state = lab.machine_state(bmc.name)
    assert state['boot_count'] == 3
    assert state['last_boot']['device'] == 'pxe' and state['last_boot']['uefi'] is True
    assert state['boot'] == {'device': 'pxe', 'persistent': True, 'uefi': True}
    ok(bmc, 'chassis', 'bootdev', 'none')                    # clearing the override
    assert lab.machine_state(bmc.name)['boot']['device'] == 'default'


def test_fru(ipmitool, lab, bmc):
    out = ok(bmc, 'fru')
    assert 'Builtin FRU Device (ID 0)' in out
    assert field(out, 'Product Manufacturer') == 'Ingot Lab'
    assert field(out, 'Board Mfg') == 'Ingot Lab'
    assert field(out, 'Chassis Type') == 'Rack Mount Chassis'
    assert field(out, 'Product Serial') == derived_serial(bmc.name)
    assert field(out, 'Product Name') == 'Virtual Metal VM-1'
    extras = re.findall(r'^\s*Product Extra\s*:\s*(\S+)\s*$', out, re.M)
    assert extras == ['MAC:%s' % mac for mac in bmc.macs]
    assert len(bmc.macs) == 2


def test_mc_info_and_guid(ipmitool, lab, bmc):
    out = ok(bmc, 'mc', 'info')
    assert field(out, 'Manufacturer ID') == '32473'
    assert field(out, 'Firmware Revision') == '1.23'
    assert field(out, 'IPMI Version') == '2.0'
    assert field(out, 'Device Available') == 'yes'
    for device in ('Chassis Device', 'FRU Inventory Device', 'SDR Repository Device', 'Sensor Device'):
        assert device in out
    out = ok(bmc, 'mc', 'guid')
    assert uuid.UUID(field(out, 'System GUID')) == uuid.UUID(lab.config(bmc.name)['guid'])


def test_sdr_and_sensor_list_follow_power(ipmitool, lab, bmc):
    ok(bmc, 'power', 'on')
    out = ok(bmc, 'sdr', 'list')
    rows = {line.split('|')[0].strip(): [c.strip() for c in line.split('|')[1:]] for line in out.splitlines()}
    assert set(rows) == {'CPU Temp', 'System Temp', 'FAN1', 'FAN2', '12V', '5V', '3.3V'}
    assert rows['CPU Temp'] == ['45 degrees C', 'ok']
    assert rows['FAN1'] == ['5400 RPM', 'ok']
    assert re.match(r'12\.0\d Volts', rows['12V'][0])
    out = ok(bmc, 'sensor', 'list')
    cpu = [c.strip() for c in next(line for line in out.splitlines() if line.startswith('CPU Temp')).split('|')]
    assert cpu[1:4] == ['45.000', 'degrees C', 'ok']
    assert cpu[7:10] == ['80.000', '90.000', '100.000']     # upper non-critical, critical, non-recoverable
    ok(bmc, 'power', 'off')
    out = ok(bmc, 'sdr', 'list')
    rows = {line.split('|')[0].strip(): [c.strip() for c in line.split('|')[1:]] for line in out.splitlines()}
    assert rows['CPU Temp'][0] == 'no reading'
    assert rows['FAN1'][0] == '0 RPM'


def test_lan_print(ipmitool, lab, bmc):
    out = ok(bmc, 'lan', 'print', '1')
    assert field(out, 'IP Address') == '127.0.0.1'
    assert field(out, 'MAC Address') == lab.config(bmc.name)['bmc_mac']
    assert field(out, 'IP Address Source') == 'Static Address'
    assert field(out, 'RMCP+ Cipher Suites') == '3'


def test_session_info_counts_this_session(ipmitool, lab, bmc):
    out = ok(bmc, 'session', 'info', 'active')
    assert field(out, 'active sessions') == '1'
    assert field(out, 'session type') == 'IPMIv2/RMCP+'
    assert field(out, 'privilege level') == 'ADMINISTRATOR'


def test_cipher_suite_17_is_refused_cleanly(ipmitool, lab, bmc):
    started = time.monotonic()
    proc = bmc.ipmitool('-C', '17', 'power', 'status')
    assert proc.returncode != 0
    assert time.monotonic() - started < 5
    assert ok(bmc, '-C', '3', 'power', 'status').strip() == 'Chassis Power is off'
