"""A virtual BMC: pyghmi's IPMI 2.0 (lanplus) BMC server in front of a :class:`Machine`.

What it answers (netfn/command), beyond the RMCP+ session handshake pyghmi does:

* chassis (0x00): Get Chassis Status 0x01, Chassis Control 0x02 (off, on, cycle, reset, soft),
  Chassis Identify 0x04, Set/Get System Boot Options 0x08/0x09 (parameters 0-7; 5 = boot flags
  with the valid, persistent and EFI bits);
* application (0x06): Get Device ID 0x01, Cold Reset 0x02, Get Self Test Results 0x04, Get Device
  GUID 0x08, Get System GUID 0x37, Get Channel Authentication Capabilities 0x38, Get Session Info
  0x3d, Get Channel Info 0x42, Get Channel Cipher Suites 0x54 (plus pyghmi's Set Session Privilege
  Level 0x3b and Close Session 0x3c);
* sensor (0x04): Get Sensor Thresholds 0x27, Get Sensor Reading 0x2d;
* storage (0x0a): Get FRU Inventory Area Info 0x10, Read FRU Data 0x11, Get SDR Repository Info
  0x20, Get SDR Repository Allocation Info 0x21, Reserve SDR Repository 0x22, Get SDR 0x23;
* transport (0x0c): Get LAN Configuration Parameters 0x02 (IP 3, MAC 5, mask 6, gateway 12,
  VLAN 20, cipher suites 22-24, ...).

Anything else is answered "invalid command" (0xc1).  Faults (drop, delay, max_sessions, next_boot_only) are
applied per packet by :meth:`VirtualBmc.packet_hook`.
"""

import ipaddress
import logging
import random
import struct
import time
import uuid

import pyghmi.ipmi.bmc

from ingot_lab import load_pyghmi_compat
from ingot_lab.faults import Faults
from ingot_lab.machines import BOOT_DEVICE_SELECTORS, PowerStateError
from ingot_lab.records import SdrRepository, encode_fru

compat = load_pyghmi_compat()

log = logging.getLogger('ingot_lab.vbmc')

#: IANA enterprise numbers for ``--vendor`` names (Get Device ID's manufacturer id).  Vendors not
#: listed (and Lenovo/IBM, whose ids make pyghmi's client load its Lenovo OEM code) get 32473, the
#: number IANA reserves for documentation (RFC 5612): real, and named by ipmitool.
MANUFACTURER_IDS = {
    'dell': 674,
    'hp': 11,
    'hpe': 11,
    'hewlett': 11,
    'supermicro': 10876,
    'intel': 343,
    'quanta': 7244,
}
DOCUMENTATION_ENTERPRISE_NUMBER = 32473
DEFAULT_PRODUCT_ID = 0x0100
DEFAULT_FIRMWARE = (1, 0x23)   # shown as 1.23
LAN_CHANNEL = 1
MAX_FRU_READ = 224

# a request repeated on its session within this many seconds is a retransmission (see handle_raw_request)
RETRANSMIT_WINDOW = 10.0
# A request that takes longer than this (seconds) is logged as slow.
SLOW_REQUEST = 2.0

CC_INVALID_COMMAND = 0xC1
CC_RESERVATION_CANCELLED = 0xC5
CC_REQUEST_DATA_LENGTH_INVALID = 0xC7
CC_PARAMETER_OUT_OF_RANGE = 0xC9
CC_NOT_PRESENT = 0xCB
CC_INVALID_DATA_FIELD = 0xCC
CC_NOT_SUPPORTED_IN_PRESENT_STATE = 0xD5
CC_UNSPECIFIED = 0xFF
CC_PARAMETER_NOT_SUPPORTED = 0x80

SELECTOR_DEVICES = {v: k for k, v in BOOT_DEVICE_SELECTORS.items()}
_UNSUPPORTED_SEEN = set()   # (netfn, cmd) already logged at INFO level


def manufacturer_id_for(vendor):
    name = (vendor or '').lower()
    for key, number in MANUFACTURER_IDS.items():
        if key in name:
            return number
    return DOCUMENTATION_ENTERPRISE_NUMBER


class Completion(Exception):
    """Answer the request with this IPMI completion code."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _ip_bytes(address):
    try:
        return list(ipaddress.IPv4Address(address).packed)
    except ValueError:
        return [127, 0, 0, 1]


def _mac_bytes(mac):
    return [int(part, 16) for part in mac.split(':')]


class VirtualBmc(pyghmi.ipmi.bmc.Bmc):
    """One virtual BMC on one UDP port.

    ``users`` maps user names to passwords; update it in place (:meth:`set_users`) to change
    credentials of a running BMC.  ``defer(delay, func, *args)`` schedules work on the serving
    loop (used by the delay fault).
    """

    def __init__(self, name, machine, port, users, address='127.0.0.1', guid=None, bmc_mac=None,
                 manufacturer_id=None, product_id=DEFAULT_PRODUCT_ID, firmware=DEFAULT_FIRMWARE,
                 faults=None, defer=None, rng=None):
        self._users = dict(users)
        guid = uuid.UUID(str(guid)) if guid else uuid.uuid4()
        super().__init__(self._users, port=port, bmcuuid=guid, address=address)
        self.name = name
        self.machine = machine
        self.address = address
        self.bmc_mac = bmc_mac or '02:01:00:00:%02x:%02x' % (port >> 8, port & 0xFF)
        self.deviceid = 0x20
        self.revision = 0x01
        self.firmwaremajor, self.firmwareminor = firmware
        self.ipmiversion = 0x02
        self.additionaldevices = 0x8B   # chassis, FRU inventory, SDR repository, sensor device
        self.mfgid = manufacturer_id if manufacturer_id is not None else manufacturer_id_for(
            machine.fru().get('manufacturer'))
        self.prodid = product_id
        self.faults = faults or Faults()
        self.defer = defer
        self.rng = rng or random.Random(name)   # reproducible drop patterns
        self.dropped = 0
        self.sdr = SdrRepository(machine.sensors())
        self.sdr_reservation = 0
        self.fru_cache = None
        self.identify_until = 0.0
        self.boot_params = {0: [0x00], 1: [0x00], 2: [0x00], 3: [0x00], 4: [0x00, 0x00],
                            6: [0x00] * 9, 7: [0x00]}

    # -- configuration ---------------------------------------------------------------------------
    def set_users(self, users):
        """Replace the credentials (sessions being set up see the change at once)."""
        self._users.clear()
        self._users.update(users)

    def set_faults(self, faults):
        self.faults = faults

    # -- faults ----------------------------------------------------------------------------------
    def packet_hook(self, target, pkt):
        """Called by pyghmi_compat.process_packet (the patched ``process_pktqueue``) for every packet of this BMC."""
        faults = self.faults
        if faults.drop > 0 and self.rng.random() < faults.drop:
            self.dropped += 1
            return True
        if faults.delay > 0 and self.defer is not None:
            self.defer(faults.delay, compat.handle_packet, target, pkt)
            return True
        return False

    def sessionless_data(self, data, sockaddr):
        data = bytearray(data)
        if (self.faults.max_sessions is not None and len(data) >= 24 and data[0] == 6
                and data[2:4] == b'\xff\x07' and data[4] == 6 and data[5] & 0x3F == 0x10):
            live = compat.server_sessions(self.port, established_only=False)
            if len(live) >= self.faults.max_sessions:
                self._send_open_session_error(data[16:], sockaddr, 0x01)
                return None
        return super().sessionless_data(data, sockaddr)

    def _send_open_session_error(self, request, sockaddr, status):
        compat.send_plain_payload(self.serversocket, sockaddr, bytearray([request[0], status, 0, 0]) + request[4:8],
                                  'rmcpplusopenresponse')

    # -- dispatch --------------------------------------------------------------------------------
    def handle_raw_request(self, request, session):
        key = (request['netfn'], request['command'])
        # A retransmission (same session, same rqSeq, same command and data as the request just answered)
        # gets the same answer again and is not carried out twice: a client whose answer was late (a
        # power cycle of a node container takes a second on a busy host) resends, and a second cycle
        # would kill the boot the first one started. The IPMI rqSeq exists to detect such duplicates.
        ident = (getattr(session, 'seqlun', None), key, bytes(request['data']))
        last = getattr(session, 'ingot_last_request', None)
        if last is not None and last[0] == ident and time.monotonic() - last[1] < RETRANSMIT_WINDOW:
            log.info('%s: retransmitted request netfn 0x%02x cmd 0x%02x (rqSeq %s) answered again, not run again',
                     self.name, key[0], key[1], ident[0])
            if last[2] is not None:
                session.send_ipmi_response(**last[2])
            return
        started = time.monotonic()
        reply = self._dispatch(key, request, session)
        took = time.monotonic() - started
        if took > SLOW_REQUEST:
            # one process serves every vBMC of a shard: while a request runs, the others wait
            log.warning('%s: request netfn 0x%02x cmd 0x%02x took %.1f s (the other vBMCs of this process '
                        'waited)', self.name, key[0], key[1], took)
        session.ingot_last_request = (ident, time.monotonic(), reply)
        if reply is not None:
            session.send_ipmi_response(**reply)

    def _dispatch(self, key, request, session):
        """Run the handler of KEY; the answer as send_ipmi_response's arguments (None: no answer)."""
        handler = COMMANDS.get(key)
        if handler is None:
            level = logging.DEBUG if key in _UNSUPPORTED_SEEN else logging.INFO
            _UNSUPPORTED_SEEN.add(key)
            log.log(level, '%s: unsupported command netfn 0x%02x cmd 0x%02x (answered 0xc1)', self.name, *key)
            return {'code': CC_INVALID_COMMAND}
        try:
            data = handler(self, bytearray(request['data']), session)
        except Completion as done:
            return {'code': done.code}
        except PowerStateError as err:
            log.info('%s: %s', self.name, err)
            return {'code': CC_NOT_SUPPORTED_IN_PRESENT_STATE}
        except (IndexError, ValueError, struct.error):
            return {'code': CC_REQUEST_DATA_LENGTH_INVALID}
        except Exception:
            compat.log_error('%s: error handling netfn 0x%02x cmd 0x%02x' % ((self.name,) + key))
            return {'code': CC_UNSPECIFIED}
        if data is None:
            return None
        return {'data': list(data)}

    # -- chassis ---------------------------------------------------------------------------------
    def cmd_get_chassis_status(self, data, session):
        power = self.machine.get_power_state() == 'on'
        identify = 0x40
        now = time.monotonic()
        if self.identify_until == float('inf'):
            identify |= 0x20
        elif self.identify_until > now:
            identify |= 0x10
        return [(0x01 if power else 0x00) | 0x20,   # power on; restore policy "previous"
                0x10 if power else 0x00,            # last power-on via IPMI command
                identify,
                0x00]

    def cmd_chassis_control(self, data, session):
        action = data[0] & 0x0F
        names = {0: 'power-off', 1: 'power-on', 2: 'power-cycle', 3: 'hard-reset', 5: 'soft-off'}
        if action not in names:
            raise Completion(CC_INVALID_DATA_FIELD)
        before = self.machine.get_power_state()
        {0: self.machine.power_off, 1: self.machine.power_on, 2: self.machine.power_cycle,
         3: self.machine.power_reset, 5: self.machine.power_shutdown}[action]()
        log.info('%s: chassis control %s (was %s, now %s)', self.name, names[action], before,
                 self.machine.get_power_state())
        return []

    def cmd_chassis_identify(self, data, session):
        interval = data[0] if len(data) > 0 else 15
        force = len(data) > 1 and data[1] & 0x01
        self.identify_until = float('inf') if force else time.monotonic() + interval
        return []

    def cmd_get_boot_options(self, data, session):
        param = data[0] & 0x7F
        if param == 5:
            flags = self.machine.get_boot_device()
            if flags.is_override:
                byte1 = 0x80 | (0x40 if flags.persistent else 0) | (0x20 if flags.uefi else 0)
                values = [byte1, BOOT_DEVICE_SELECTORS[flags.device] << 2, 0x00, 0x00, 0x00]
            else:
                values = [0x00] * 5
        elif param in self.boot_params:
            values = self.boot_params[param]
        else:
            raise Completion(CC_PARAMETER_NOT_SUPPORTED)
        return [0x01, param] + list(values)

    BOOT_PARAM_LENGTHS = {0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 5, 6: 9}

    def cmd_set_boot_options(self, data, session):
        param = data[0] & 0x7F
        values = list(data[1:])
        if param == 7:
            self.boot_params[7] = values or [0x00]
            return []
        if param not in self.BOOT_PARAM_LENGTHS:
            raise Completion(CC_PARAMETER_NOT_SUPPORTED)
        if len(values) < (2 if param == 5 else self.BOOT_PARAM_LENGTHS[param]):
            raise Completion(CC_REQUEST_DATA_LENGTH_INVALID)
        if param == 0:
            self.boot_params[0] = [values[0] & 0x03]
        elif param == 5:
            byte1, byte2 = values[0], values[1]
            selector = (byte2 >> 2) & 0x0F
            if not byte1 & 0x80 or selector == 0:
                self.machine.set_boot_device('default')
                log.info('%s: boot device override cleared', self.name)
            else:
                device = SELECTOR_DEVICES.get(selector)
                if device is None:
                    raise Completion(CC_INVALID_DATA_FIELD)
                persistent = bool(byte1 & 0x40) and not self.faults.next_boot_only
                self.machine.set_boot_device(device, persistent=persistent, uefi=bool(byte1 & 0x20))
                log.info('%s: boot device %s (%s, %s)', self.name, device,
                         'persistent' if persistent else 'next boot only', 'EFI' if byte1 & 0x20 else 'legacy')
        else:
            self.boot_params[param] = values[:self.BOOT_PARAM_LENGTHS[param]]
        return []

    # -- application -----------------------------------------------------------------------------
    def cmd_get_device_id(self, data, session):
        return ([self.deviceid, self.revision, self.firmwaremajor & 0x7F, self.firmwareminor,
                 self.ipmiversion, self.additionaldevices]
                + list(struct.pack('<I', self.mfgid)[:3]) + list(struct.pack('<H', self.prodid))
                + [0x00, 0x00, 0x00, 0x00])

    def cmd_cold_reset(self, data, session):
        session.send_ipmi_response()
        for sess in compat.server_sessions(self.port, established_only=False):
            sess.close_server_session()
        log.info('%s: cold reset (all sessions closed)', self.name)
        return None

    def cmd_self_test(self, data, session):
        return [0x55, 0x00]

    def cmd_get_guid(self, data, session):
        return list(self.uuid.bytes_le)

    def cmd_get_channel_auth_cap(self, data, session):
        return list(self.authcap[1:])

    def cmd_get_session_info(self, data, session):
        sessions = compat.server_sessions(self.port)
        index = data[0] if data else 0
        found = None
        if index == 0:
            found = session
        elif index == 0xFF and len(data) >= 5:
            found = next((s for s in sessions if s.managedsessionid == data[1:5]), None)
        elif index == 0xFE and len(data) >= 2:
            found = sessions[data[1] - 1] if 0 < data[1] <= len(sessions) else None
        elif index <= 0x3F:
            found = sessions[index - 1] if index <= len(sessions) else None
        possible = self.faults.max_sessions or 0x3F
        head = [sessions.index(found) + 1 if found in sessions else 0, possible & 0x3F, len(sessions) & 0x3F]
        if found is None:
            return head
        addr = found.sockaddr
        host = addr[0].replace('::ffff:', '') if isinstance(addr[0], str) else '127.0.0.1'
        return (head + [0x02, getattr(found, 'clientpriv', 4) & 0x0F, 0x10 | LAN_CHANNEL]
                + _ip_bytes(host) + [0x00] * 6 + list(struct.pack('<H', addr[1])))

    def _channel(self, data):
        channel = data[0] & 0x0F
        if channel == 0x0E:
            channel = LAN_CHANNEL
        if channel != LAN_CHANNEL:
            raise Completion(CC_INVALID_DATA_FIELD)
        return channel

    def cmd_get_channel_info(self, data, session):
        channel = self._channel(data)
        active = len(compat.server_sessions(self.port))
        return [channel, 0x04, 0x01, 0x80 | min(active, 0x3F), 0xF2, 0x1B, 0x00, 0x00, 0x00]

    def cmd_get_channel_cipher_suites(self, data, session):
        channel = self._channel(data)
        list_index = data[2] & 0x3F if len(data) > 2 else 0
        if list_index:
            return [channel]
        return [channel, 0xC0, 0x03, 0x01, 0x41, 0x81]

    # -- sensors and SDR -------------------------------------------------------------------------
    def _record(self, data):
        record = self.sdr.by_number.get(data[0])
        if record is None:
            raise Completion(CC_NOT_PRESENT)
        return record

    def cmd_get_sensor_reading(self, data, session):
        record = self._record(data)
        sensors = self.machine.sensors()
        if record.number > len(sensors):
            raise Completion(CC_NOT_PRESENT)
        return record.reading(sensors[record.number - 1])

    def cmd_get_sensor_thresholds(self, data, session):
        return self._record(data).threshold_response()

    def cmd_get_sdr_repository_info(self, data, session):
        return self.sdr.info()

    def cmd_get_sdr_allocation_info(self, data, session):
        units = len(self.sdr.encoded)
        return list(struct.pack('<HHHHB', units, 64, 0, 0, 1))

    def cmd_reserve_sdr_repository(self, data, session):
        self.sdr_reservation = (self.sdr_reservation % 0xFFFF) + 1
        return list(struct.pack('<H', self.sdr_reservation))

    def cmd_get_sdr(self, data, session):
        reservation, record_id, offset, count = struct.unpack('<HHBB', bytes(data[:6]))
        if offset and reservation != self.sdr_reservation:
            raise Completion(CC_RESERVATION_CANCELLED)
        found = self.sdr.get(record_id)
        if found is None:
            raise Completion(CC_NOT_PRESENT)
        next_id, record = found
        if offset > len(record):
            raise Completion(CC_PARAMETER_OUT_OF_RANGE)
        chunk = record[offset:] if count == 0xFF else record[offset:offset + count]
        return list(struct.pack('<H', next_id)) + list(chunk)

    # -- FRU -------------------------------------------------------------------------------------
    def _fru(self, refresh=False):
        if refresh or self.fru_cache is None:
            self.fru_cache = encode_fru(self.machine.fru(), self.machine.macs())
        return self.fru_cache

    def cmd_get_fru_area_info(self, data, session):
        if data[0] != 0:
            raise Completion(CC_NOT_PRESENT)
        size = len(self._fru(refresh=True))
        return list(struct.pack('<H', size)) + [0x00]   # accessed by bytes

    def cmd_read_fru_data(self, data, session):
        fru_id, offset, count = data[0], data[1] | (data[2] << 8), data[3]
        if fru_id != 0:
            raise Completion(CC_NOT_PRESENT)
        fru = self._fru()
        if offset >= len(fru):
            raise Completion(CC_PARAMETER_OUT_OF_RANGE)
        chunk = fru[offset:offset + min(count, MAX_FRU_READ)]
        return [len(chunk)] + list(chunk)

    # -- LAN -------------------------------------------------------------------------------------
    def lan_parameter(self, param):
        ip = _ip_bytes(self.address)
        return {
            0: [0x00],                               # set in progress: set complete
            1: [0x00],                               # auth types (IPMI 1.5): none offered
            2: [0x00] * 5,
            3: ip,                                   # IP address
            4: [0x01],                               # static address
            5: _mac_bytes(self.bmc_mac),             # MAC address
            6: [255, 0, 0, 0],                       # subnet mask
            7: [0x40, 0x40, 0x10],                   # IPv4 header: TTL, flags, precedence/TOS
            12: [0, 0, 0, 0],                        # default gateway
            13: [0] * 6,
            14: [0, 0, 0, 0],                        # backup gateway
            15: [0] * 6,
            16: list(b'public') + [0] * 12,          # community string
            20: [0x00, 0x00],                        # 802.1q VLAN: disabled
            21: [0x00],
            22: [0x01],                              # one cipher suite entry
            23: [0x00, 0x03],                        # ... suite 3
            24: [0x00, 0x04] + [0x00] * 7,           # suite 3 up to administrator
        }.get(param)

    def cmd_get_lan_config(self, data, session):
        self._channel(data)
        if data[0] & 0x80:                           # revision only
            return [0x11]
        value = self.lan_parameter(data[1])
        if value is None:
            raise Completion(CC_PARAMETER_NOT_SUPPORTED)
        return [0x11] + value


COMMANDS = {
    (0x00, 0x01): VirtualBmc.cmd_get_chassis_status,
    (0x00, 0x02): VirtualBmc.cmd_chassis_control,
    (0x00, 0x04): VirtualBmc.cmd_chassis_identify,
    (0x00, 0x08): VirtualBmc.cmd_set_boot_options,
    (0x00, 0x09): VirtualBmc.cmd_get_boot_options,
    (0x06, 0x01): VirtualBmc.cmd_get_device_id,
    (0x06, 0x02): VirtualBmc.cmd_cold_reset,
    (0x06, 0x04): VirtualBmc.cmd_self_test,
    (0x06, 0x08): VirtualBmc.cmd_get_guid,
    (0x06, 0x37): VirtualBmc.cmd_get_guid,
    (0x06, 0x38): VirtualBmc.cmd_get_channel_auth_cap,
    (0x06, 0x3D): VirtualBmc.cmd_get_session_info,
    (0x06, 0x42): VirtualBmc.cmd_get_channel_info,
    (0x06, 0x54): VirtualBmc.cmd_get_channel_cipher_suites,
    (0x04, 0x27): VirtualBmc.cmd_get_sensor_thresholds,
    (0x04, 0x2D): VirtualBmc.cmd_get_sensor_reading,
    (0x0A, 0x10): VirtualBmc.cmd_get_fru_area_info,
    (0x0A, 0x11): VirtualBmc.cmd_read_fru_data,
    (0x0A, 0x20): VirtualBmc.cmd_get_sdr_repository_info,
    (0x0A, 0x21): VirtualBmc.cmd_get_sdr_allocation_info,
    (0x0A, 0x22): VirtualBmc.cmd_reserve_sdr_repository,
    (0x0A, 0x23): VirtualBmc.cmd_get_sdr,
    (0x0C, 0x02): VirtualBmc.cmd_get_lan_config,
}
