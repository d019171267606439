# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test doubles for the BMC unit tests.

* :class:`FakeClient` stands in for ``BmcClient`` when an operation's logic is
  tested (``op_power``, ``op_boot``, ``op_info``): it records every call and
  keeps a power state that changes the way a real machine's does, on a
  virtual clock so that waiting costs no real time.
* :class:`FakeLab` stands in for pyghmi's ``Command`` classes (IPMI and
  Redfish) and nothing else, so that the real ``BmcClient`` (retries,
  deadline, error mapping) runs under the modules, the fleet form and the
  action plugins.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct
import threading
import time
import uuid

from pyghmi import exceptions as pyghmi_exc

from ansible_collections.ingot.metal.plugins.module_utils.bmc import TIMEOUT, PowerWaitTimeout

# pyghmi's boot device names (what Command.get_bootdev returns), by our names.
PYGHMI_BOOT = {'pxe': 'network', 'disk': 'hd', 'cdrom': 'optical', 'bios': 'setup', 'default': 'default'}


# --------------------------------------------------------------------------- FakeClient
class FakeClient:
    """The ``BmcClient`` interface over a simulated machine.

    ``shutdown_seconds``: how long the OS takes to shut down after an ACPI
    soft-off request; ``None`` means it never does (a hung OS).
    ``cycle_seconds``: how long a power cycle keeps the machine off.
    ``ignore_boot``: the BMC accepts a boot override but does not apply it.
    ``boot_lag``: how many reads still show the old override after a write.
    ``keeps``: what of a boot override the BMC keeps; ``{'persistent': False}`` is a BMC that silently
    keeps every override for the next boot only, ``{'uefi': False}`` one that stays in legacy mode.
    ``failures``: method name -> BmcError raised by that method.
    """

    def __init__(self, power='off', boot=None, name='node1 (10.0.0.21:623)', shutdown_seconds=5,
                 cycle_seconds=3, ignore_boot=False, boot_lag=0, failures=None, fru=None, timeout=1.0, keeps=None):
        self.name = name
        self.timeout = timeout
        self.calls = []
        self.clock = 0.0
        self._power = power
        self._pending = None  # (virtual time, state) of a transition under way
        self.shutdown_seconds = shutdown_seconds
        self.cycle_seconds = cycle_seconds
        self.boot = dict(boot or {'device': 'disk', 'persistent': True, 'uefi': False})
        self.ignore_boot = ignore_boot
        self.boot_lag = boot_lag
        self.keeps = dict(keeps or {})
        self._boot_pending = None  # [reads left, override]
        self.failures = dict(failures or {})
        self.fru_data = fru if fru is not None else {
            'manufacturer': 'Ingot', 'product': 'Lab Server', 'serial': 'SN-1',
            'extra': ['MAC:02:00:0a:fb:00:11'], 'macs': ['02:00:0a:fb:00:11']}
        self.closed = False

    # -- helpers for the tests
    def _record(self, *call):
        self.calls.append(call)
        failure = self.failures.get(call[0])
        if failure is not None:
            raise failure

    def actions_sent(self):
        """The power requests sent, in order."""
        return [c[1] for c in self.calls if c[0] == 'power']

    def _settle(self):
        if self._pending and self.clock >= self._pending[0]:
            self._power = self._pending[1]
            self._pending = None

    @property
    def state(self):
        self._settle()
        return self._power

    # -- power
    def get_power(self):
        self._record('get_power')
        self._settle()
        return self._power

    def power(self, action):
        self._record('power', action)
        self._settle()
        if action == 'on':
            self._power, self._pending = 'on', None
        elif action == 'off':
            self._power, self._pending = 'off', None
        elif action == 'shutdown':
            if self._power == 'on' and self.shutdown_seconds is not None:
                self._pending = (self.clock + self.shutdown_seconds, 'off')
        elif action == 'cycle':
            if self._power == 'on':
                self._power, self._pending = 'off', (self.clock + self.cycle_seconds, 'on')
        elif action == 'reset':
            pass
        else:  # pragma: no cover - a test bug
            raise AssertionError('unknown power action %r' % action)

    def wait_power(self, state, timeout, interval=1.0):
        """Same contract as ``BmcClient.wait_power``, on the virtual clock."""
        self.calls.append(('wait_power', state, timeout))
        start = self.clock
        while True:
            self._settle()
            if 'get_power' in self.failures:     # it polls the power state: a BMC that stopped answering
                raise self.failures['get_power']
            if self._power == state:
                return self.clock - start
            if self.clock - start >= timeout:
                raise PowerWaitTimeout(self.name, TIMEOUT, 'power did not reach %r within %s s' % (state, timeout),
                                       'raise the wait timeout, or check the machine')
            self.clock += interval

    # -- boot
    def get_boot(self):
        self._record('get_boot')
        if self._boot_pending is not None:
            if self._boot_pending[0] <= 0:
                self.boot, self._boot_pending = self._boot_pending[1], None
            else:
                self._boot_pending[0] -= 1
        return dict(self.boot)

    def set_boot(self, device, persistent=False, uefi=False):
        self._record('set_boot', device, persistent, uefi)
        if not self.ignore_boot:
            kept = {'device': device, 'persistent': persistent, 'uefi': uefi}
            kept.update(self.keeps)
            self._boot_pending = [self.boot_lag, kept]

    # -- facts
    def device_id(self):
        self._record('device_id')
        return {'device_id': 32, 'firmware_version': '1.02', 'ipmi_version': '2.0'}

    def guid(self):
        self._record('guid')
        return '4c4c4544-0042-4410-8051-b1c04f4e3132'

    def fru(self):
        self._record('fru')
        return dict(self.fru_data)

    def sensors(self):
        self._record('sensors')
        return [{'name': 'CPU Temp', 'type': 'Temperature', 'value': 41.0, 'unit': 'C', 'health': 'ok', 'states': []}]

    def macs(self, fru=None):
        self._record('macs')
        fru = fru if fru is not None else self.fru()
        return fru.get('macs', [])

    def close(self):
        self.closed = True


# --------------------------------------------------------------------------- FakeLab
class FakeMachine:
    """One machine and its BMC, as the fake pyghmi commands see it."""

    def __init__(self, host, port=623, user='admin', password='secret', power='off', boot=None,
                 protocol='ipmi', shuts_down=True, ignore_boot=False, delay=0.0):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.protocol = protocol
        self.power = power
        # pyghmi's view: bootdev name, persistent, uefi (None: the BMC does not say)
        self.boot = dict(boot or {'device': 'default', 'persistent': True, 'uefi': None})
        self.shuts_down = shuts_down
        self.ignore_boot = ignore_boot
        self.delay = delay
        self.login_error = None     # exception raised by the Command constructor (every login)
        self.login_errors = []      # exceptions raised by the next logins, one each
        self.hang = False           # the login never returns
        self.errors = {}            # method name -> exception raised by every call of it
        self.calls = []             # (method, args...) of every call, logins included
        self.logins = 0
        self.fru = {
            'Manufacturer': 'Ingot', 'Product name': 'Lab Server', 'Model': 'LS-1', 'Serial Number': 'SN-%s' % host,
            'Hardware Version': '1', 'Asset Number': 'A-1',
            'Board manufacturer': 'Ingot', 'Board product name': 'LB-1', 'Board serial number': 'BSN-1',
            'Board model': 'LB', 'board_extra': [], 'chassis_extra': [],
            'product_extra': ['MAC:02:00:0A:FB:00:11', 'MAC:02:00:0a:fb:00:12'],
        }
        self.host_macs = ['02:00:0A:FB:00:21']
        self.bmc_nics = ['eth0']
        self.guid = uuid.UUID('4c4c4544-0042-4410-8051-b1c04f4e3132')

    def power_action(self, action):
        if action == 'on':
            self.power = 'on'
        elif action == 'off':
            self.power = 'off'
        elif action == 'shutdown':
            if self.shuts_down:
                self.power = 'off'
        elif action in ('cycle', 'reset'):
            if self.power == 'on':
                self.power = 'on'  # off and back on, quicker than anyone polls

    def set_boot(self, device, persistent, uefi):
        if self.ignore_boot:
            return
        if device == 'default':
            self.boot = {'device': 'default', 'persistent': True, 'uefi': None}
        else:
            self.boot = {'device': device, 'persistent': bool(persistent), 'uefi': uefi}


class _FakeCommandBase:
    def __init__(self, lab, machine, protocol):
        self._lab = lab
        self._m = machine
        self._protocol = protocol

    def _enter(self, name, *args):
        m = self._m
        lab = self._lab
        with lab.cond:
            m.calls.append((name,) + args)
            lab.calls.append((m.host, name) + args)
            lab.in_flight += 1
            lab.max_in_flight = max(lab.max_in_flight, lab.in_flight)
            lab.cond.notify_all()
            # rendezvous: the first calls wait (a little) for that many to be in flight together
            if lab.rendezvous:
                lab.cond.wait_for(lambda: lab.max_in_flight >= lab.rendezvous, timeout=2.0)
        try:
            if m.delay:
                time.sleep(m.delay)
            if name in m.errors:
                raise m.errors[name]
        except BaseException:
            self._leave()
            raise

    def _leave(self):
        with self._lab.cond:
            self._lab.in_flight -= 1

    def _do(self, name, fn, *args):
        self._enter(name, *args)
        try:
            return fn()
        finally:
            self._leave()


class FakeIpmiCommand(_FakeCommandBase):
    """The part of ``pyghmi.ipmi.command.Command`` that ``BmcClient`` uses."""

    def __init__(self, lab, machine):
        super(FakeIpmiCommand, self).__init__(lab, machine, 'ipmi')
        self.ipmi_session = _FakeSession(self)

    def get_power(self):
        return self._do('get_power', lambda: {'powerstate': self._m.power})

    def xraw_command(self, netfn, command, bridge_request=(), data=(), **kwargs):
        m = self._m

        def run():
            if (netfn, command) == (0, 1):      # Get Chassis Status
                return {'netfn': 1, 'command': 1, 'code': 0,
                        'data': bytes(bytearray([1 if m.power == 'on' else 0, 0, 0, 0]))}
            if (netfn, command) == (0, 2):      # Chassis Control
                actions = {0: 'off', 1: 'on', 2: 'cycle', 3: 'reset', 5: 'shutdown'}
                m.power_action(actions[data[0]])
                return {'netfn': 1, 'command': 2, 'code': 0, 'data': b''}
            if (netfn, command) == (6, 1):      # Get Device ID
                return {'netfn': 7, 'command': 1, 'code': 0,
                        'data': bytes(bytearray([0x20, 0x81, 0x01, 0x02, 0x02, 0xbf,
                                                 0x57, 0x01, 0x00, 0x34, 0x12]))}
            if (netfn, command) == (6, 0x37):   # Get System GUID
                return {'netfn': 7, 'command': 0x37, 'code': 0, 'data': m.guid.bytes_le}
            raise pyghmi_exc.IpmiException('Invalid command', code=0xc1)
        return self._do('xraw_command', run, netfn, command, tuple(data))

    def get_bootdev(self):
        def run():
            b = self._m.boot
            if b['device'] == 'default':
                return {'bootdev': 'default', 'persistent': True}
            return {'bootdev': PYGHMI_BOOT[b['device']], 'persistent': b['persistent'], 'uefimode': bool(b['uefi'])}
        return self._do('get_bootdev', run)

    def set_bootdev(self, bootdev, persist=False, uefiboot=False):
        ours = dict((v, k) for k, v in PYGHMI_BOOT.items())[bootdev]
        return self._do('set_bootdev', lambda: self._m.set_boot(ours, persist, uefiboot) or {'bootdev': bootdev},
                        bootdev, persist, uefiboot)

    def oem_init(self):
        return self._do('oem_init', lambda: None)

    def _get_zero_fru(self):
        return self._do('_get_zero_fru', lambda: dict(self._m.fru))

    def get_sensor_data(self):
        def run():
            return [_Sensor('CPU Temp', 'Temperature', 41.0, '°C'), _Sensor('Fan 1', 'Fan', 4200.0, 'RPM')]
        return self._do('get_sensor_data', run)


class _FakeSession:
    def __init__(self, cmd):
        self._cmd = cmd

    def logout(self):
        return self._cmd._do('logout', lambda: {'success': True})


class _Sensor:
    def __init__(self, name, type_, value, units):
        self.name = name
        self.type = type_
        self.value = value
        self.units = units
        self.health = 0
        self.states = []


class FakeRedfishCommand(_FakeCommandBase):
    """The part of ``pyghmi.redfish.command.Command`` that ``BmcClient`` uses."""

    _READ = {'pxe': 'Pxe', 'disk': 'Hdd', 'cdrom': 'Cd', 'bios': 'BiosSetup'}

    def __init__(self, lab, machine, verifycallback):
        super(FakeRedfishCommand, self).__init__(lab, machine, 'redfish')
        self.verifycallback = verifycallback
        self._urlcache = {}
        self.sysurl = '/redfish/v1/Systems/1'
        self._bmcurl = '/redfish/v1/Managers/1'

    @property
    def _tree(self):
        m = self._m
        tree = {
            '/redfish/v1/': {'Systems': {'@odata.id': '/redfish/v1/Systems'},
                             'Managers': {'@odata.id': '/redfish/v1/Managers'}},
            self.sysurl: {'Id': '1', 'UUID': str(m.guid), 'Manufacturer': 'Ingot', 'Model': 'Lab Server',
                          'SerialNumber': 'SN-%s' % m.host, 'PartNumber': 'LS-1',
                          'PowerState': 'On' if m.power == 'on' else 'Off',
                          'Boot': self._boot_resource(),
                          'EthernetInterfaces': {'@odata.id': self.sysurl + '/EthernetInterfaces'}},
            self.sysurl + '/EthernetInterfaces': {
                'Members': [{'@odata.id': self.sysurl + '/EthernetInterfaces/NIC%d' % i}
                            for i in range(len(m.host_macs))]},
            self._bmcurl: {'Id': '1', 'Manufacturer': 'Ingot', 'Model': 'vBMC', 'FirmwareVersion': '1.2.3',
                           'EthernetInterfaces': {'@odata.id': self._bmcurl + '/EthernetInterfaces'}},
            self._bmcurl + '/EthernetInterfaces': {
                'Members': [{'@odata.id': self._bmcurl + '/EthernetInterfaces/' + n} for n in m.bmc_nics]},
        }
        for i, mac in enumerate(m.host_macs):
            tree[self.sysurl + '/EthernetInterfaces/NIC%d' % i] = {'Id': 'NIC%d' % i, 'MACAddress': mac,
                                                                   'PermanentMACAddress': mac}
        for n in m.bmc_nics:
            tree[self._bmcurl + '/EthernetInterfaces/' + n] = {'Id': n, 'MACAddress': '02:00:00:00:00:99'}
        return tree

    def _boot_resource(self):
        b = self._m.boot
        if b['device'] == 'default':
            return {'BootSourceOverrideEnabled': 'Disabled', 'BootSourceOverrideTarget': 'None'}
        target = {'network': 'Pxe', 'hd': 'Hdd', 'optical': 'Cd', 'setup': 'BiosSetup'}[PYGHMI_BOOT[b['device']]]
        boot = {'BootSourceOverrideEnabled': 'Continuous' if b['persistent'] else 'Once',
                'BootSourceOverrideTarget': target}
        if b['uefi'] is not None:
            boot['BootSourceOverrideMode'] = 'UEFI' if b['uefi'] else 'Legacy'
        return boot

    def _do_web_request(self, url, payload=None, method=None, cache=True, etag=None):
        def run():
            tree = self._tree
            if url not in tree:
                raise pyghmi_exc.PyghmiException('%s:{"error": "not found"}' % url)
            return tree[url]
        return self._do('_do_web_request', run, url)

    @property
    def sysinfo(self):
        return self._do_web_request(self.sysurl)

    @property
    def bmcinfo(self):
        return self._do_web_request(self._bmcurl)

    def get_power(self):
        return self._do('get_power', lambda: {'powerstate': self._m.power})

    def set_power(self, powerstate, wait=False):
        return self._do('set_power', lambda: self._m.power_action(
            {'on': 'on', 'off': 'off', 'shutdown': 'shutdown', 'reset': 'cycle'}[powerstate]), powerstate)

    def get_bootdev(self):
        def run():
            b = self._m.boot
            if b['device'] == 'default':
                return {'bootdev': 'default', 'persistent': True}
            if b['uefi'] is None:
                raise pyghmi_exc.PyghmiException('Unrecognized mode: None')
            return {'bootdev': PYGHMI_BOOT[b['device']], 'persistent': b['persistent'], 'uefimode': b['uefi']}
        return self._do('get_bootdev', run)

    def set_bootdev(self, bootdev, persist=False, uefiboot=None):
        ours = dict((v, k) for k, v in PYGHMI_BOOT.items())[bootdev]

        def run():
            # Redfish: uefiboot None leaves BootSourceOverrideMode as it is.
            uefi = self._m.boot.get('uefi') if uefiboot is None else uefiboot
            self._m.set_boot(ours, persist, uefi)
            return {'bootdev': bootdev}
        return self._do('set_bootdev', run, bootdev, persist, uefiboot)

    def list_network_interface_names(self):
        # pyghmi 1.6.19: the names of the *manager's* (BMC's) interfaces.
        for member in self._do_web_request(self._bmcurl + '/EthernetInterfaces')['Members']:
            yield member['@odata.id'].rsplit('/', 1)[1]

    def get_sensor_data(self):
        return self._do('get_sensor_data', lambda: [_Sensor('Inlet Temp', 'Temperature', 22.0, '°C')])


class FakeLab:
    """Machines by (host, port), and the fake pyghmi ``Command`` factories that reach them."""

    def __init__(self):
        self.machines = {}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.rendezvous = 0         # see _FakeCommandBase._enter
        self.calls = []
        self.commands = []          # (protocol, constructor kwargs) of every login
        self.in_flight = 0
        self.max_in_flight = 0
        self._release = threading.Event()

    def add(self, host, port=None, protocol='ipmi', **kwargs):
        port = port or (623 if protocol == 'ipmi' else 443)
        m = FakeMachine(host, port=port, protocol=protocol, **kwargs)
        self.machines[(host, port)] = m
        return m

    def _login(self, host, port, user, password, protocol, record):
        with self.lock:
            self.commands.append((protocol, record))
        m = self.machines.get((host, int(port)))
        if m is None or m.protocol != protocol:
            # No BMC there: pyghmi's login gives up after its own retries.
            if protocol == 'ipmi':
                raise pyghmi_exc.IpmiException('timeout')
            raise ConnectionRefusedError(111, 'Connection refused')
        m.logins += 1
        m.calls.append(('login', user))
        if m.hang:
            self._release.wait()
            raise pyghmi_exc.IpmiException('Session no longer connected')
        if m.login_errors:
            raise m.login_errors.pop(0)
        if m.login_error is not None:
            raise m.login_error
        if user != m.user:
            raise pyghmi_exc.IpmiException('Unauthorized name in RAKP2')
        if password != m.password:
            raise pyghmi_exc.IpmiException('Incorrect password provided')
        return m

    def ipmi_command(self, bmc=None, userid=None, password=None, port=623, **kwargs):
        user = userid.decode('utf-8') if isinstance(userid, bytes) else userid
        pw = password.decode('utf-8') if isinstance(password, bytes) else password
        m = self._login(bmc, port, user, pw, 'ipmi', dict(bmc=bmc, userid=userid, password=password, port=port))
        return FakeIpmiCommand(self, m)

    def redfish_command(self, bmc, userid, password, verifycallback, port=443, **kwargs):
        m = self._login(bmc, port, userid, password, 'redfish',
                        dict(bmc=bmc, userid=userid, password=password, verifycallback=verifycallback, port=port))
        if verifycallback is not None and not verifycallback(m.host.encode('ascii')):
            raise pyghmi_exc.UnrecognizedCertificate('Unknown certificate', m.host.encode('ascii'))
        return FakeRedfishCommand(self, m, verifycallback)

    def release(self):
        """Let every hung login return."""
        self._release.set()


# --------------------------------------------------------------------------- FRU bytes
def _tl(text):
    data = text.encode('latin-1') if isinstance(text, str) else bytes(text)
    return bytes(bytearray([0xc0 | len(data)])) + data


def _area(fixed, fields):
    body = bytearray(fixed)
    for f in fields:
        body += _tl(f)
    body.append(0xc1)
    while (len(body) + 1) % 8:
        body.append(0)
    body[1] = (len(body) + 1) // 8
    body.append((-sum(body)) & 0xff)
    return bytes(body)


def encode_fru(product, board, product_extra=(), board_extra=()):
    """FRU device 0 bytes (header, board and product areas) as a BMC stores them.

    ``product``: manufacturer, name, model, version, serial, asset tag.
    ``board``: manufacturer, name, serial, model.
    """
    board_area = _area([0x01, 0, 0x00] + list(struct.pack('<I', 0)[:3]), list(board) + [''] + list(board_extra))
    product_area = _area([0x01, 0, 0x00], list(product) + [''] + list(product_extra))
    header = bytearray([0x01, 0x00, 0x00, 1, 1 + len(board_area) // 8, 0x00, 0x00])
    header.append((-sum(header)) & 0xff)
    return bytes(header) + board_area + product_area
