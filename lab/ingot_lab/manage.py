"""Operations on a lab's vBMC configuration, shared by the command line and ingot_lab.testing."""

import json
import os
import secrets
import uuid

from ingot_lab.faults import Faults
from ingot_lab.machines import MemoryMachine, create_machine, derived_mac
from ingot_lab.state import Lab, LabError

DEFAULT_USER = 'admin'
DEFAULT_ADDRESS = '127.0.0.1'


def _entry(name, port, user, password, macs, nics, address, machine_options, manufacturer_id):
    machine = {'type': 'memory'}
    machine.update({k: v for k, v in (machine_options or {}).items() if v is not None})
    machine['macs'] = [m.lower() for m in macs] if macs else [derived_mac(name, i) for i in range(nics)]
    return {
        'port': int(port),
        'address': address,
        'user': user,
        'password': password if password is not None else secrets.token_urlsafe(12),
        'guid': str(uuid.uuid4()),
        'bmc_mac': derived_mac(name, 0, first_octets=(0x02, 0x01)),
        'manufacturer_id': manufacturer_id,
        'machine': machine,
        'faults': Faults().to_dict(),
    }


def add(lab, name, port, user=DEFAULT_USER, password=None, macs=None, nics=1, address=DEFAULT_ADDRESS,
        machine_options=None, manufacturer_id=None):
    """Configure one vBMC.  A missing password is generated (see ``inventory``)."""
    return add_many(lab, [(name, port)], user, password, macs, nics, address, machine_options, manufacturer_id)


def add_many(lab, names_ports, user=DEFAULT_USER, password=None, macs=None, nics=1, address=DEFAULT_ADDRESS,
             machine_options=None, manufacturer_id=None):
    """Configure several vBMCs at once (one configuration write)."""
    with lab.locked():
        config = lab.load()
        for name, port in names_ports:
            if name in config['bmcs']:
                raise LabError('%s is already configured' % name)
            entry = _entry(name, port, user, password, macs, nics, address, machine_options, manufacturer_id)
            Lab.validate_entry(name, entry, config)
            config['bmcs'][name] = entry
        return lab.save(config)


def fleet_names(count, base_port, prefix='n'):
    width = max(3, len(str(count)))
    return [('%s%0*d' % (prefix, width, i + 1), base_port + i) for i in range(count)]


def remove(lab, names):
    """Remove vBMCs (and their machine state); refuses those a running server serves."""
    with lab.locked():
        config = lab.load()
        served = lab.served()
        for name in names:
            if name not in config['bmcs']:
                raise LabError('%s is not configured' % name)
            if name in served:
                raise LabError('%s is served by running process %d: stop the lab first' % (name, served[name]))
        for name in names:
            del config['bmcs'][name]
            try:
                os.unlink(lab.machine_state_path(name))
            except FileNotFoundError:
                pass
        return lab.save(config)


def _update(lab, names, change, wait=True):
    with lab.locked():
        config = lab.load()
        for name in names:
            if name not in config['bmcs']:
                raise LabError('%s is not configured' % name)
            change(config['bmcs'][name])
        generation = lab.save(config)
    if wait:
        lab.signal_shards()
        if not lab.wait_generation(generation):
            raise LabError('a running vBMC server did not apply the change within 5 s (see %s)' % lab.logs_dir)
    return generation


def set_faults(lab, names, drop=None, delay=None, max_sessions=None, clear=False, wait=True, next_boot_only=None):
    """Change faults of vBMCs; a running server applies them before this returns (``wait``).

    ``max_sessions`` 0 means "no limit"."""
    if drop is not None and not 0.0 <= float(drop) <= 1.0:
        raise LabError('--drop is a share of packets, from 0 to 1 (got %s)' % drop)
    if delay is not None and float(delay) < 0:
        raise LabError('--delay must not be negative (got %s)' % delay)
    if max_sessions is not None and int(max_sessions) < 0:
        raise LabError('--max-sessions must not be negative (got %s)' % max_sessions)

    def change(entry):
        faults = Faults() if clear else Faults.from_dict(entry.get('faults'))
        if drop is not None:
            faults.drop = float(drop)
        if delay is not None:
            faults.delay = float(delay)
        if max_sessions is not None:
            faults.max_sessions = int(max_sessions) or None
        if next_boot_only is not None:
            faults.next_boot_only = bool(next_boot_only)
        entry['faults'] = Faults.from_dict(faults.to_dict()).to_dict()
    return _update(lab, names, change, wait)


def set_credentials(lab, names, user=None, password=None, wait=True):
    """Change the user and/or password of vBMCs (a running server applies it)."""
    def change(entry):
        if user is not None:
            entry['user'] = user
        if password is not None:
            entry['password'] = password
    return _update(lab, names, change, wait)


def set_session_timeout(lab, seconds, wait=True):
    with lab.locked():
        config = lab.load()
        config['settings']['session_timeout'] = float(seconds)
        generation = lab.save(config)
    if wait:
        lab.signal_shards()
        lab.wait_generation(generation)
    return generation


def machine(lab, name, readonly=True):
    config = lab.load()
    if name not in config['bmcs']:
        raise LabError('%s is not configured' % name)
    return create_machine(name, config['bmcs'][name].get('machine'), lab.dir, readonly=readonly)


def rows(lab):
    """One dict per vBMC: name, address, port, user, power, bootdev, running (pid or None), faults."""
    config = lab.load()
    served = lab.served()
    result = []
    for name, entry in sorted(config['bmcs'].items(), key=lambda item: item[1]['port']):
        vm = create_machine(name, entry.get('machine'), lab.dir, readonly=True)
        state = vm.state() if isinstance(vm, MemoryMachine) else {'power': vm.get_power_state(),
                                                                  'boot': vm.get_boot_device().to_dict()}
        boot = state.get('boot') or {}
        bootdev = boot.get('device', 'default')
        if bootdev != 'default':
            bootdev += ' (%s%s)' % ('persistent' if boot.get('persistent') else 'next boot',
                                    ', EFI' if boot.get('uefi') else '')
        faults = {k: v for k, v in (entry.get('faults') or {}).items() if v}
        result.append({'name': name, 'address': entry.get('address', DEFAULT_ADDRESS), 'port': entry['port'],
                       'user': entry['user'], 'power': state.get('power', '?'), 'bootdev': bootdev,
                       'running': served.get(name), 'faults': faults,
                       'macs': entry.get('machine', {}).get('macs', [])})
    return result


def inventory_yaml(lab, group='vbmc'):
    """An Ansible YAML inventory of the vBMCs: one host per vBMC, with bmc_host, bmc_port, bmc_user,
    bmc_password (and the host NICs' MACs as lab_macs).  It contains the passwords."""
    config = lab.load()
    lines = ['# Virtual BMCs of the ingot lab in %s (written by "ingot-lab vbmc inventory").' % lab.dir,
             '# It holds the lab\'s BMC passwords: keep it out of version control.',
             'all:', '  vars:',
             '    # BMC credentials by node name, for machines (allocation names) whose node is one of these',
             '    ingot_bmc_credentials:']
    if not config['bmcs']:
        lines[-1] += ' {}'
    for name, entry in sorted(config['bmcs'].items(), key=lambda item: item[1]['port']):
        lines.append('      %s: {user: %s, password: %s}' % (
            json.dumps(name), json.dumps(entry['user']), json.dumps(entry['password'])))
    lines += ['  children:', '    %s:' % group, '      vars:',
              '        ansible_connection: local',
              '        ansible_python_interpreter: "{{ ansible_playbook_python }}"', '      hosts:']
    if not config['bmcs']:
        lines[-1] = '      hosts: {}'
    for name, entry in sorted(config['bmcs'].items(), key=lambda item: item[1]['port']):
        lines += ['        %s:' % json.dumps(name),
                  '          bmc_host: %s' % json.dumps(entry.get('address', DEFAULT_ADDRESS)),
                  '          bmc_port: %d' % entry['port'],
                  '          bmc_user: %s' % json.dumps(entry['user']),
                  '          bmc_password: %s' % json.dumps(entry['password']),
                  '          lab_macs: %s' % json.dumps(entry.get('machine', {}).get('macs', []))]
    return '\n'.join(lines) + '\n'
