"""Binary records a BMC serves: the IPMI FRU and the SDR repository's full sensor records.

References: "IPMI Platform Management FRU Information Storage Definition" v1.0 rev 1.3 (common
header, chassis, board and product info areas, type/length bytes, zero checksums) and IPMI 2.0
section 43.1 (full sensor record, type 01h) and 36.3 (sensor reading conversion formula).
"""

import datetime
import math
import struct
import zlib

from ingot_lab.machines import SENSOR_TYPES
from ingot_lab.probe import checksum   # the zero checksum of FRU areas and IPMI messages alike

# -- FRU ---------------------------------------------------------------------------------------

FRU_EPOCH = datetime.datetime(1996, 1, 1)
END_OF_FIELDS = 0xC1
MAC_FIELD_PREFIX = 'MAC:'


def _field(text):
    """One type/length-coded field: 8-bit ASCII + Latin-1, up to 63 bytes."""
    data = str(text or '').encode('latin-1', 'replace')[:63]
    if len(data) == 1:
        # C1h is the end-of-fields marker, so a one-character text field cannot exist: pad it.
        data += b' '
    return bytes([0xC0 | len(data)]) + data


def _area(head, fields):
    """An info area: ``head`` (format version and length byte first), fields, end marker, padding,
    checksum, its length a multiple of 8 bytes and written into byte 1."""
    body = bytearray(head) + b''.join(_field(f) for f in fields) + bytes([END_OF_FIELDS])
    body += bytes((-(len(body) + 1)) % 8)
    body[1] = (len(body) + 1) // 8
    body.append(checksum(body))
    return bytes(body)


def _mfg_date_bytes(when):
    if isinstance(when, str):
        when = datetime.datetime.fromisoformat(when)
    minutes = max(0, int((when.replace(tzinfo=None) - FRU_EPOCH).total_seconds() // 60))
    return struct.pack('<I', minutes)[:3]


def encode_fru(info, macs=()):
    """Encode FRU device 0 of a machine: common header, chassis, board and product info areas.

    ``info`` is :meth:`ingot_lab.machines.Machine.fru`.  The host NICs' MAC addresses, for which
    IPMI has no standard place, go into the product area's custom fields as ``"MAC:02:00:..."``,
    one per NIC, in NIC order (``ipmitool fru`` shows them as "Product Extra"; pyghmi's
    ``get_inventory()`` as ``product_extra``).
    """
    chassis = _area([0x01, 0, int(info.get('chassis_type', 0x17)) & 0xFF],
                    [info.get('chassis_part_number'), info.get('chassis_serial')])
    board = _area([0x01, 0, 0x00] + list(_mfg_date_bytes(info.get('board_mfg_date', FRU_EPOCH))),
                  [info.get('board_manufacturer'), info.get('board_product'), info.get('board_serial'),
                   info.get('board_part_number'), ''])
    product = _area([0x01, 0, 0x00],
                    [info.get('manufacturer'), info.get('product'), info.get('part_number'),
                     info.get('version'), info.get('serial'), info.get('asset_tag'), '']
                    + [MAC_FIELD_PREFIX + mac.lower() for mac in macs])
    offset = 8
    header = bytearray([0x01, 0x00])
    for area in (chassis, board, product):
        header.append(offset // 8)
        offset += len(area)
    header += bytes([0x00, 0x00])
    header.append(checksum(header))
    return bytes(header) + chassis + board + product


def macs_from_fru_fields(fields):
    """The MAC addresses in a list of FRU custom fields (pyghmi's ``product_extra``)."""
    macs = []
    for field in fields or ():
        if isinstance(field, (bytes, bytearray)):
            field = field.decode('latin-1')
        if isinstance(field, str) and field.upper().startswith(MAC_FIELD_PREFIX):
            macs.append(field[len(MAC_FIELD_PREFIX):].strip().lower())
    return macs


# -- SDR ---------------------------------------------------------------------------------------

SENSOR_TYPE_CODES = {'temperature': 0x01, 'voltage': 0x02, 'fan': 0x04}
UNIT_CODES = {'temperature': 1, 'voltage': 4, 'fan': 18}
ENTITY_IDS = {'temperature': 0x07, 'voltage': 0x07, 'fan': 0x1D}   # system board, fan device
THRESHOLD_READING_TYPE = 0x01
SDR_VERSION = 0x51

# (attribute, bit) of the six thresholds, in the order of the readable threshold mask bits and of
# the Get Sensor Thresholds response.
THRESHOLDS = (
    ('lower_non_critical', 0),
    ('lower_critical', 1),
    ('lower_non_recoverable', 2),
    ('upper_non_critical', 3),
    ('upper_critical', 4),
    ('upper_non_recoverable', 5),
)


def _signed(value, bits):
    return value & ((1 << bits) - 1)


class SensorRecord:
    """One full sensor record and the linear conversion (y = M * x * 10^R, B = 0) behind it."""

    def __init__(self, number, sensor):
        if sensor.type not in SENSOR_TYPES:
            raise ValueError(sensor.type)
        self.number = number
        self.name = sensor.name
        self.type = sensor.type
        full_scale = sensor.maximum or self._default_full_scale(sensor)
        step = full_scale / 255.0
        self.r_exp = int(math.floor(math.log10(step))) - 1
        self.m = int(math.ceil(round(step / 10 ** self.r_exp, 6)))
        self.thresholds = {attr: getattr(sensor, attr) for attr, _bit in THRESHOLDS
                           if getattr(sensor, attr) is not None}
        self.nominal = sensor.nominal

    @staticmethod
    def _default_full_scale(sensor):
        if sensor.type == 'temperature':
            return 255.0
        if sensor.type == 'fan':
            return 25500.0
        return (sensor.nominal or sensor.value or 12.0) * 1.275

    @property
    def resolution(self):
        return self.m * 10.0 ** self.r_exp

    def raw(self, value):
        return max(0, min(255, int(round(value / self.resolution))))

    def value(self, raw):
        return raw * self.resolution

    def encode(self, record_id):
        readable = 0
        for attr, bit in THRESHOLDS:
            if attr in self.thresholds:
                readable |= 1 << bit
        lower_mask = (readable & 0b111) << 4          # LNR/LC/LNC comparisons returned
        upper_mask = ((readable >> 3) & 0b111) << 4   # UNR/UC/UNC comparisons returned
        name = self.name.encode('latin-1', 'replace')[:16]
        body = bytearray([
            0x20, 0x00, self.number,                  # owner: the BMC (0x20), LUN 0; sensor number
            ENTITY_IDS[self.type], 0x01,              # entity id, instance
            0x7F,                                     # initialisation: scanning, events, thresholds...
            0x44 if readable else 0x40,               # auto re-arm; thresholds readable (or none)
            SENSOR_TYPE_CODES[self.type], THRESHOLD_READING_TYPE,
            0x00, lower_mask,                         # assertion event mask / lower threshold mask
            0x00, upper_mask,                         # deassertion event mask / upper threshold mask
            readable, 0x00,                           # readable, settable threshold masks
            0x00, UNIT_CODES[self.type], 0x00,        # units 1 (unsigned), base unit, modifier unit
            0x00,                                     # linear
            self.m & 0xFF, (self.m >> 2) & 0xC0,      # M (10 bits), tolerance 0
            0x00, 0x00,                               # B = 0, accuracy 0
            0x00,                                     # accuracy exp, direction unspecified
            (_signed(self.r_exp, 4) << 4) | 0x0,      # R exponent, B exponent 0
            0x01 if self.nominal is not None else 0x00,   # nominal reading given
            self.raw(self.nominal or 0), 0x00, 0x00,  # nominal, normal max, normal min
            0xFF, 0x00,                               # sensor maximum, minimum reading
        ])
        for attr in ('upper_non_recoverable', 'upper_critical', 'upper_non_critical',
                     'lower_non_recoverable', 'lower_critical', 'lower_non_critical'):
            body.append(self.raw(self.thresholds[attr]) if attr in self.thresholds else 0)
        body += bytes([0x00, 0x00, 0x00, 0x00, 0x00])  # hysteresis +/-, reserved x2, OEM
        body.append(0xC0 | len(name))
        body += name
        header = struct.pack('<HBBB', record_id, SDR_VERSION, 0x01, len(body))
        return header + bytes(body)

    def reading(self, sensor):
        """Get Sensor Reading response data for the current ``sensor``."""
        if sensor.value is None:
            return [0x00, 0xC0 | 0x20, 0x00]      # events + scanning enabled, reading unavailable
        raw = self.raw(sensor.value)
        value = self.value(raw)
        status = 0
        for attr, bit in THRESHOLDS:
            limit = self.thresholds.get(attr)
            if limit is None:
                continue
            limit = self.value(self.raw(limit))
            if (attr.startswith('lower') and value <= limit) or (attr.startswith('upper') and value >= limit):
                status |= 1 << bit
        return [raw, 0xC0, status]

    def threshold_response(self):
        """Get Sensor Thresholds response data."""
        readable = 0
        values = []
        for attr, bit in THRESHOLDS:
            if attr in self.thresholds:
                readable |= 1 << bit
                values.append(self.raw(self.thresholds[attr]))
            else:
                values.append(0)
        return [readable] + values


class SdrRepository:
    """The SDR repository of a BMC: one full sensor record per sensor, record ids 1..n."""

    def __init__(self, sensors):
        self.records = [SensorRecord(i + 1, s) for i, s in enumerate(sensors)]
        self.by_number = {r.number: r for r in self.records}
        self.encoded = [r.encode(i + 1) for i, r in enumerate(self.records)]
        # The "most recent addition" timestamp doubles as a content stamp, so that clients caching
        # SDRs by (manufacturer, product, firmware, timestamp), as pyghmi does, never mix up two
        # BMCs with different sensors.
        self.timestamp = zlib.crc32(b''.join(self.encoded)) & 0x7FFFFFFF

    def info(self):
        """Get SDR Repository Info response data."""
        count = len(self.encoded)
        return ([SDR_VERSION] + list(struct.pack('<H', count)) + list(struct.pack('<H', 0x0000))
                + list(struct.pack('<I', self.timestamp)) + list(struct.pack('<I', 0))
                + [0x02])   # operation support: Reserve SDR Repository supported

    def get(self, record_id):
        """Return (next record id, record bytes) or None; record id 0 is the first record."""
        index = 0 if record_id == 0 else record_id - 1
        if not 0 <= index < len(self.encoded):
            return None
        next_id = index + 2 if index + 1 < len(self.encoded) else 0xFFFF
        return next_id, self.encoded[index]
