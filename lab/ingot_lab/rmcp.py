"""A small, independent IPMI 2.0 RMCP+ client (cipher suite 3 only), for tests and probes.

It exists to look at the protocol itself, where ipmitool and pyghmi's client hide it: the RMCP+
status of an Open Session Response or a RAKP message, a session that is opened and then simply
abandoned, several sessions from one UDP socket.  It is synchronous, blocking, and strict; not a
general-purpose client.

    with RmcpClient('127.0.0.1', 6230) as client:
        session = client.open_session('admin', 'password')
        code, data = session.command(0x00, 0x01)        # Get Chassis Status
        session.close()
"""

import hashlib
import hmac
import os
import socket
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ingot_lab.probe import RMCP_HEADER, ipmi_message, sessionless_packet

PAYLOAD_IPMI = 0x00
PAYLOAD_OPEN_REQUEST = 0x10
PAYLOAD_OPEN_RESPONSE = 0x11
PAYLOAD_RAKP1 = 0x12
PAYLOAD_RAKP2 = 0x13
PAYLOAD_RAKP3 = 0x14
PAYLOAD_RAKP4 = 0x15

#: (authentication, integrity, confidentiality) algorithms of cipher suites
SUITES = {3: (1, 1, 1), 17: (3, 4, 1), 0: (0, 0, 0)}

ADMINISTRATOR = 4


class RmcpError(Exception):
    """The BMC refused (``status`` is the RMCP+ status code) or did not answer (status None)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def parse_ipmi_response(message):
    """(netfn, cmd, completion code, data) of an IPMI response message."""
    if len(message) < 8:
        raise RmcpError('short IPMI response')
    return message[1] >> 2, message[5], message[6], bytes(message[7:-1])


class RmcpClient:
    """One UDP socket towards one BMC (``port``); several sessions may share it."""

    def __init__(self, host, port, timeout=2.0, sock=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.own_socket = sock is None
        self.sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)

    def close(self):
        if self.own_socket:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def exchange(self, packet, accept, retries=0):
        """Send ``packet``, return the first datagram from the BMC that ``accept`` says is the
        answer (resending ``retries`` times on timeout)."""
        for _attempt in range(retries + 1):
            self.sock.sendto(packet, (self.host, self.port))
            try:
                while True:
                    data, addr = self.sock.recvfrom(4096)
                    if addr[1] == self.port and accept(data):
                        return data
            except socket.timeout:
                continue
        raise RmcpError('no answer from %s:%d' % (self.host, self.port))

    # -- sessionless ---------------------------------------------------------------------------
    def sessionless_command(self, netfn, cmd, data=b'', seq=1):
        packet = sessionless_packet(ipmi_message(netfn, cmd, data, seq))
        reply = self.exchange(packet, lambda d: len(d) > 19 and d[4] == 0 and d[14 + 5] == cmd)
        return parse_ipmi_response(reply[14:14 + reply[13]])[2:]

    def _v2_packet(self, payload_type, payload):
        return RMCP_HEADER + bytes([0x06, payload_type]) + bytes(8) + struct.pack('<H', len(payload)) + payload

    @staticmethod
    def _v2_payload(data, payload_type):
        if len(data) < 16 or data[:4] != RMCP_HEADER or data[4] != 0x06 or data[5] & 0x3F != payload_type:
            return None
        length = struct.unpack('<H', data[14:16])[0]
        return data[16:16 + length]

    def open_request(self, suite=3, tag=1, console_sid=None, privilege=0):
        """Send an RMCP+ Open Session Request; return the response payload (raises on silence)."""
        console_sid = console_sid if console_sid is not None else os.urandom(4)
        auth, integ, conf = SUITES[suite]
        payload = (bytes([tag, privilege, 0, 0]) + console_sid
                   + bytes([0, 0, 0, 8, auth, 0, 0, 0, 1, 0, 0, 8, integ, 0, 0, 0, 2, 0, 0, 8, conf, 0, 0, 0]))
        reply = self.exchange(self._v2_packet(PAYLOAD_OPEN_REQUEST, payload),
                              lambda d: (self._v2_payload(d, PAYLOAD_OPEN_RESPONSE) or b'\xff')[0] == tag)
        return self._v2_payload(reply, PAYLOAD_OPEN_RESPONSE)

    def open_session(self, user, password, suite=3, privilege=ADMINISTRATOR, set_privilege=True,
                     rakp3_password=None):
        """Run the whole RMCP+ handshake; return a :class:`Session` (raises RmcpError).

        ``set_privilege`` False skips Set Session Privilege Level; ``rakp3_password`` computes
        RAKP3 with another password (to see how the BMC answers a bad RAKP3)."""
        user = user.encode() if isinstance(user, str) else user
        password = password.encode() if isinstance(password, str) else password
        rakp3_key = password if rakp3_password is None else rakp3_password.encode()
        console_sid = os.urandom(4)
        response = self.open_request(suite, tag=1, console_sid=console_sid)
        if response[1] != 0:
            raise RmcpError('Open Session Response status 0x%02x' % response[1], response[1])
        bmc_sid = response[8:12]
        rm = os.urandom(16)
        role = 0x10 | privilege
        rakp1 = bytes([2, 0, 0, 0]) + bmc_sid + rm + bytes([role, 0, 0, len(user)]) + user
        reply = self.exchange(self._v2_packet(PAYLOAD_RAKP1, rakp1),
                              lambda d: (self._v2_payload(d, PAYLOAD_RAKP2) or b'\xff')[0] == 2)
        rakp2 = self._v2_payload(reply, PAYLOAD_RAKP2)
        if rakp2[1] != 0:
            raise RmcpError('RAKP2 status 0x%02x' % rakp2[1], rakp2[1])
        rc, guid, code = rakp2[8:24], rakp2[24:40], rakp2[40:60]
        expected = hmac.new(password, console_sid + bmc_sid + rm + rc + guid + bytes([role, len(user)]) + user,
                            hashlib.sha1).digest()
        if not hmac.compare_digest(expected, code):
            raise RmcpError('RAKP2 HMAC mismatch (wrong password)')
        sik = hmac.new(password, rm + rc + bytes([role, len(user)]) + user, hashlib.sha1).digest()
        rakp3 = (bytes([3, 0, 0, 0]) + bmc_sid
                 + hmac.new(rakp3_key, rc + console_sid + bytes([role, len(user)]) + user, hashlib.sha1).digest())
        reply = self.exchange(self._v2_packet(PAYLOAD_RAKP3, rakp3),
                              lambda d: (self._v2_payload(d, PAYLOAD_RAKP4) or b'\xff')[0] == 3)
        rakp4 = self._v2_payload(reply, PAYLOAD_RAKP4)
        if rakp4[1] != 0:
            raise RmcpError('RAKP4 status 0x%02x' % rakp4[1], rakp4[1])
        if not hmac.compare_digest(hmac.new(sik, rm + bmc_sid + guid, hashlib.sha1).digest()[:12],
                                   bytes(rakp4[8:20])):
            raise RmcpError('RAKP4 integrity check mismatch')
        session = Session(self, console_sid, bmc_sid, sik)
        if set_privilege:
            code, data = session.command(0x06, 0x3B, [privilege])   # Set Session Privilege Level
            if code:
                raise RmcpError('Set Session Privilege Level: completion code 0x%02x' % code)
        return session


class Session:
    """An established RMCP+ session (HMAC-SHA1-96 integrity, AES-CBC-128 confidentiality)."""

    def __init__(self, client, console_sid, bmc_sid, sik):
        self.client = client
        self.console_sid = console_sid
        self.bmc_sid = bmc_sid
        self.k1 = hmac.new(sik, b'\x01' * 20, hashlib.sha1).digest()
        self.aes_key = hmac.new(sik, b'\x02' * 20, hashlib.sha1).digest()[:16]
        self.sequence = 0
        self.rq_seq = 0

    def _wrap(self, message):
        pad = 16 - (len(message) + 1) % 16 if (len(message) + 1) % 16 else 0
        plain = message + bytes(range(1, pad + 1)) + bytes([pad])
        iv = os.urandom(16)
        encryptor = Cipher(algorithms.AES(self.aes_key), modes.CBC(iv)).encryptor()
        payload = iv + encryptor.update(plain) + encryptor.finalize()
        self.sequence += 1
        packet = bytearray(RMCP_HEADER + bytes([0x06, 0xC0 | PAYLOAD_IPMI]) + self.bmc_sid
                           + struct.pack('<I', self.sequence) + struct.pack('<H', len(payload)) + payload)
        pad = (len(packet) - 2) % 4
        if pad:
            pad = 4 - pad
        packet += b'\xff' * pad + bytes([pad, 0x07])
        packet += hmac.new(self.k1, bytes(packet[4:]), hashlib.sha1).digest()[:12]
        return bytes(packet)

    def _unwrap(self, data):
        if len(data) < 48 or data[:4] != RMCP_HEADER or data[4] != 0x06 or data[5] != 0xC0:
            return None
        if data[6:10] != self.console_sid:
            return None
        if hmac.new(self.k1, data[4:-12], hashlib.sha1).digest()[:12] != data[-12:]:
            return None
        length = struct.unpack('<H', data[14:16])[0]
        payload = data[16:16 + length]
        decryptor = Cipher(algorithms.AES(self.aes_key), modes.CBC(payload[:16])).decryptor()
        plain = decryptor.update(payload[16:]) + decryptor.finalize()
        return plain[:-(plain[-1] + 1)]

    def command(self, netfn, cmd, data=(), retries=0):
        """Send one IPMI request in the session; return (completion code, data bytes)."""
        self.rq_seq = (self.rq_seq + 1) & 0x3F
        seq = self.rq_seq
        packet = self._wrap(ipmi_message(netfn, cmd, bytes(data), seq))

        def accept(reply):
            message = self._unwrap(reply)
            return message is not None and len(message) >= 8 and message[5] == cmd and message[4] >> 2 == seq

        reply = self.client.exchange(packet, accept, retries)
        return parse_ipmi_response(self._unwrap(reply))[2:]

    def close(self):
        """Close Session (netfn 6, cmd 0x3c); returns its completion code."""
        return self.command(0x06, 0x3C, self.bmc_sid)[0]
