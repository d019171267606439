"""The machines behind virtual BMCs.

A virtual BMC (``ingot_lab.vbmc``) only speaks IPMI; what it controls is a :class:`Machine`.  The
interface is what a BMC can do to, or learn from, the server it sits in: power, the boot device
override, the FRU data, sensors and the host NICs' MAC addresses.  :class:`MemoryMachine` keeps its
state in a JSON file; a Docker-container machine (a later issue) implements the same interface.

Boot override semantics (those of a real BMC, IPMI 2.0 section 28.13, boot flags parameter 5) live
here, in :meth:`Machine.boot_override_for_next_boot`, so every backend consumes a next-boot-only
override the same way when it boots.
"""

import abc
import dataclasses
import datetime
import hashlib
import json
import os
import time

from ingot_lab.state import write_file_atomic

POWER_ON = 'on'
POWER_OFF = 'off'

#: Boot devices a BMC can be asked to force, with the IPMI boot flags device selector of each
#: (parameter 5, data byte 2, bits 5:2).  ``default`` means "no override".
BOOT_DEVICE_SELECTORS = {
    'default': 0x0,
    'pxe': 0x1,
    'disk': 0x2,
    'safe': 0x3,
    'diag': 0x4,
    'cdrom': 0x5,
    'bios': 0x6,
    'remote_floppy': 0x7,
    'remote_cdrom': 0x8,
    'remote_media': 0x9,
    'remote_disk': 0xb,
    'floppy': 0xf,
}
BOOT_DEVICES = tuple(BOOT_DEVICE_SELECTORS)

SENSOR_TYPES = ('temperature', 'fan', 'voltage')
SENSOR_UNITS = {'temperature': 'degrees C', 'fan': 'RPM', 'voltage': 'Volts'}


class MachineError(Exception):
    """A machine refused or failed an operation."""


class PowerStateError(MachineError):
    """The operation is not possible in the machine's present power state (IPMI code 0xd5)."""


@dataclasses.dataclass(frozen=True)
class BootDevice:
    """A boot device override, as the boot flags of a BMC hold it."""

    device: str = 'default'
    persistent: bool = False
    uefi: bool = False

    def __post_init__(self):
        if self.device not in BOOT_DEVICE_SELECTORS:
            raise ValueError('unknown boot device %r (one of %s)' % (self.device, ', '.join(BOOT_DEVICES)))

    @property
    def is_override(self):
        return self.device != 'default'

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        data = data or {}
        return cls(device=data.get('device', 'default'), persistent=bool(data.get('persistent', False)),
                   uefi=bool(data.get('uefi', False)))


@dataclasses.dataclass(frozen=True)
class Sensor:
    """One analog sensor reading.

    ``value`` None means "reading unavailable" (as a powered-off CPU's temperature is).  Thresholds
    are optional; ``maximum`` is the top of the sensor's range, used to choose its IPMI conversion
    factors (the default depends on the type and the nominal value).
    """

    name: str
    type: str
    value: float = None
    nominal: float = None
    maximum: float = None
    lower_non_recoverable: float = None
    lower_critical: float = None
    lower_non_critical: float = None
    upper_non_critical: float = None
    upper_critical: float = None
    upper_non_recoverable: float = None

    def __post_init__(self):
        if self.type not in SENSOR_TYPES:
            raise ValueError('unknown sensor type %r (one of %s)' % (self.type, ', '.join(SENSOR_TYPES)))

    @property
    def unit(self):
        return SENSOR_UNITS[self.type]


class Machine(abc.ABC):
    """What a virtual BMC controls.

    Power methods are the IPMI chassis control actions.  ``power_on`` on a machine that is on, and
    ``power_off``/``power_shutdown`` on one that is off, do nothing and succeed, as on real BMCs;
    ``power_cycle`` and ``power_reset`` of a machine that is off raise :class:`PowerStateError`
    (IPMI "not supported in present state"), as the IPMI specification recommends.

    Every power-on, cycle or reset is a boot: an implementation boots from
    :meth:`boot_override_for_next_boot`, which also consumes a next-boot-only override.

    Implementations are used from one thread (the BMC server's serving loop).
    """

    name = None

    # -- power ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_power_state(self):
        """Return ``'on'`` or ``'off'``."""

    @abc.abstractmethod
    def power_on(self):
        """Power on (a boot) if off."""

    @abc.abstractmethod
    def power_off(self):
        """Hard power off, at once."""

    @abc.abstractmethod
    def power_shutdown(self):
        """Soft off: an ACPI power button press; the OS powers the machine off, maybe later."""

    @abc.abstractmethod
    def power_cycle(self):
        """Power off, then on again (a boot).  Raises PowerStateError when off."""

    @abc.abstractmethod
    def power_reset(self):
        """Hard reset (a boot).  Raises PowerStateError when off."""

    # -- boot device ---------------------------------------------------------------------------
    @abc.abstractmethod
    def get_boot_device(self):
        """Return the current :class:`BootDevice` override (``device='default'``: none)."""

    @abc.abstractmethod
    def set_boot_device(self, device, persistent=False, uefi=False):
        """Set (or with ``'default'`` clear) the boot device override."""

    # -- inventory -----------------------------------------------------------------------------
    @abc.abstractmethod
    def fru(self):
        """Return the FRU data as a dict (keys: see :data:`FRU_DEFAULTS`)."""

    @abc.abstractmethod
    def sensors(self):
        """Return the current list of :class:`Sensor` readings; names and order never change."""

    @abc.abstractmethod
    def macs(self):
        """Return the host NICs' MAC addresses, ``'02:00:...'`` strings, in NIC order."""

    def close(self):
        """Release whatever the machine holds (nothing for the memory machine)."""

    # -- shared boot semantics -----------------------------------------------------------------
    def boot_override_for_next_boot(self):
        """Return the device forced for the boot starting now (None: the firmware's own order).

        A next-boot-only override is consumed (cleared back to no override); a persistent one stays.
        """
        flags = self.get_boot_device()
        if not flags.is_override:
            return None, flags
        if not flags.persistent:
            self.set_boot_device('default')
        return flags.device, flags


#: FRU fields of a machine and their defaults; ``vendor`` fills the manufacturer fields.
FRU_DEFAULTS = {
    'chassis_type': 0x17,            # rack mount chassis (SMBIOS type)
    'chassis_part_number': 'ICH-1U',
    'chassis_serial': '',
    'board_manufacturer': '',
    'board_product': 'Virtual Mainboard VMB-1',
    'board_serial': '',
    'board_part_number': 'VMB-1-A',
    'board_mfg_date': '2024-01-01T00:00:00',
    'manufacturer': '',
    'product': 'Virtual Metal VM-1',
    'part_number': 'VM-1-B',
    'version': '1.0',
    'serial': '',
    'asset_tag': '',
}

DEFAULT_VENDOR = 'Ingot Lab'


def default_sensors():
    """The sensors of a machine that is on (a small 1U server)."""
    return [
        Sensor('CPU Temp', 'temperature', 45.0, nominal=45.0, upper_non_critical=80.0, upper_critical=90.0,
               upper_non_recoverable=100.0),
        Sensor('System Temp', 'temperature', 30.0, nominal=30.0, upper_non_critical=70.0, upper_critical=80.0,
               upper_non_recoverable=90.0),
        Sensor('FAN1', 'fan', 5400.0, nominal=5400.0, lower_non_recoverable=300.0, lower_critical=500.0,
               lower_non_critical=700.0),
        Sensor('FAN2', 'fan', 5500.0, nominal=5500.0, lower_non_recoverable=300.0, lower_critical=500.0,
               lower_non_critical=700.0),
        Sensor('12V', 'voltage', 12.05, nominal=12.0, lower_critical=10.8, upper_critical=13.2),
        Sensor('5V', 'voltage', 5.02, nominal=5.0, lower_critical=4.5, upper_critical=5.5),
        Sensor('3.3V', 'voltage', 3.31, nominal=3.3, lower_critical=2.97, upper_critical=3.63),
    ]


def derived_serial(name, prefix='VM'):
    """A stable serial number for a machine name."""
    return prefix + hashlib.sha1(name.encode('utf-8')).hexdigest()[:10].upper()


def derived_mac(name, index=0, first_octets=(0x02, 0x00)):
    """A stable, locally administered MAC address for NIC ``index`` of machine ``name``."""
    digest = hashlib.sha1(('%s/%d' % (name, index)).encode('utf-8')).digest()
    octets = tuple(first_octets) + tuple(digest[:6 - len(first_octets)])
    return ':'.join('%02x' % o for o in octets)


class MemoryMachine(Machine):
    """A machine that exists only as state, persisted to a JSON file.

    ``spec`` (from the lab configuration) may hold: ``vendor``, any :data:`FRU_DEFAULTS` key,
    ``macs`` (list), ``sensors`` (list of :class:`Sensor` keyword dicts, replacing the defaults),
    ``soft_off_delay`` (seconds between a soft-off request and power off, default 0),
    ``soft_off_ignored`` (the "OS" ignores ACPI soft-off, default False), ``default_boot_device``
    (what the firmware boots without an override, default ``'disk'``).

    The state file holds power, the boot override, a pending soft-off time, the boot count and the
    last boot (device, whether it was an override, UEFI or not, when); other processes (the CLI's
    ``list``, tests) read it with ``readonly=True``.
    """

    def __init__(self, name, state_path, spec=None, readonly=False, clock=time.time):
        self.name = name
        self.state_path = state_path
        self.spec = dict(spec or {})
        self.readonly = readonly
        self._clock = clock
        self._state = self._load()

    # -- persistence ---------------------------------------------------------------------------
    @staticmethod
    def initial_state():
        return {
            'power': POWER_OFF,
            'boot': BootDevice().to_dict(),
            'soft_off_at': None,
            'boot_count': 0,
            'last_boot': None,
            'last_power_change': None,
        }

    def _load(self):
        state = self.initial_state()
        try:
            with open(self.state_path) as handle:
                state.update(json.load(handle))
        except FileNotFoundError:
            pass
        return state

    def _save(self):
        if not self.readonly:
            os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
            write_file_atomic(self.state_path, json.dumps(self._state, indent=1, sort_keys=True) + '\n', 0o644)

    def state(self):
        """A copy of the (settled) state, for ``list`` and tests."""
        self._settle()
        return json.loads(json.dumps(self._state))

    def _settle(self):
        """Apply a soft-off whose delay has passed."""
        due = self._state.get('soft_off_at')
        if due is not None and self._clock() >= due:
            self._set_power(POWER_OFF, 'soft-off', at=due)

    def _set_power(self, power, why, at=None):
        self._state['power'] = power
        self._state['soft_off_at'] = None
        self._state['last_power_change'] = {'power': power, 'why': why, 'at': at or self._clock()}
        self._save()

    def _boot(self, why):
        forced, flags = self.boot_override_for_next_boot()
        self._state['boot_count'] = self._state.get('boot_count', 0) + 1
        self._state['last_boot'] = {
            'device': forced or self.spec.get('default_boot_device', 'disk'),
            'override': forced is not None,
            'uefi': flags.uefi if forced else False,
            'why': why,
            'at': self._clock(),
        }
        self._set_power(POWER_ON, why)

    # -- power ---------------------------------------------------------------------------------
    def get_power_state(self):
        self._settle()
        return self._state['power']

    def power_on(self):
        if self.get_power_state() == POWER_OFF:
            self._boot('power-on')

    def power_off(self):
        self._settle()
        if self._state['power'] == POWER_ON or self._state.get('soft_off_at') is not None:
            self._set_power(POWER_OFF, 'power-off')

    def power_shutdown(self):
        if self.get_power_state() == POWER_OFF or self.spec.get('soft_off_ignored'):
            return
        if self._state.get('soft_off_at') is not None:
            return
        delay = float(self.spec.get('soft_off_delay', 0) or 0)
        if delay <= 0:
            self._set_power(POWER_OFF, 'soft-off')
        else:
            self._state['soft_off_at'] = self._clock() + delay
            self._save()

    def power_cycle(self):
        if self.get_power_state() == POWER_OFF:
            raise PowerStateError('%s is off: nothing to power-cycle' % self.name)
        self._boot('power-cycle')

    def power_reset(self):
        if self.get_power_state() == POWER_OFF:
            raise PowerStateError('%s is off: nothing to reset' % self.name)
        self._boot('reset')

    # -- boot device ---------------------------------------------------------------------------
    def get_boot_device(self):
        return BootDevice.from_dict(self._state.get('boot'))

    def set_boot_device(self, device, persistent=False, uefi=False):
        flags = BootDevice(device, persistent, uefi) if device != 'default' else BootDevice()
        if flags.to_dict() != self._state.get('boot'):
            self._state['boot'] = flags.to_dict()
            self._save()

    # -- inventory -----------------------------------------------------------------------------
    def fru(self):
        vendor = self.spec.get('vendor') or DEFAULT_VENDOR
        info = dict(FRU_DEFAULTS)
        info.update({'manufacturer': vendor, 'board_manufacturer': vendor,
                     'serial': derived_serial(self.name), 'board_serial': derived_serial(self.name, 'MB'),
                     'chassis_serial': derived_serial(self.name, 'CH')})
        for key in FRU_DEFAULTS:
            if self.spec.get(key) not in (None, ''):
                info[key] = self.spec[key]
        if isinstance(info['board_mfg_date'], str):
            info['board_mfg_date'] = datetime.datetime.fromisoformat(info['board_mfg_date'])
        return info

    def sensors(self):
        if self.spec.get('sensors'):
            base = [Sensor(**s) for s in self.spec['sensors']]
        else:
            base = default_sensors()
        if self.get_power_state() == POWER_ON:
            return base
        # Powered off: fans stopped, the CPU reads nothing, the rest (standby power) still reads.
        off = []
        for sensor in base:
            if sensor.type == 'fan':
                sensor = dataclasses.replace(sensor, value=0.0)
            elif sensor.type == 'temperature' and sensor.name.upper().startswith('CPU'):
                sensor = dataclasses.replace(sensor, value=None)
            off.append(sensor)
        return off

    def macs(self):
        return list(self.spec.get('macs') or [derived_mac(self.name)])


def _container_machine(*args, **kwargs):
    from ingot_lab.container_machine import ContainerMachine   # pylint: disable=import-outside-toplevel,cyclic-import
    return ContainerMachine(*args, **kwargs)


#: Machine types a lab configuration can name (``machine.type``): ``docker`` is a node container
#: (``ingot_lab.container_machine``).
MACHINE_TYPES = {'memory': MemoryMachine, 'docker': _container_machine}


def create_machine(name, spec, state_dir, readonly=False):
    """Build the machine of BMC ``name`` from its configuration ``spec``."""
    kind = (spec or {}).get('type', 'memory')
    try:
        factory = MACHINE_TYPES[kind]
    except KeyError:
        raise MachineError('unknown machine type %r (one of %s)' % (kind, ', '.join(MACHINE_TYPES)))
    return factory(name, os.path.join(state_dir, 'machines', name + '.json'), spec, readonly=readonly)
