"""Is a BMC answering?  A sessionless IPMI probe (Get Channel Authentication Capabilities).

Needs no credentials and no session: one UDP datagram each way, so the lab can check hundreds of
ports in a few milliseconds before reporting that it started.
"""

import select
import socket
import time


RMCP_HEADER = b'\x06\x00\xff\x07'


def checksum(data):
    """The IPMI two's complement checksum of ``data``."""
    return (-sum(data)) & 0xFF


def ipmi_message(netfn, cmd, data=b'', seq=1, rq_addr=0x81):
    """An IPMI request message to the BMC (responder address 0x20, LUN 0)."""
    header = bytes([0x20, netfn << 2])
    body = bytes([rq_addr, (seq & 0x3F) << 2, cmd]) + bytes(data)
    return header + bytes([checksum(header)]) + body + bytes([checksum(body)])


def sessionless_packet(message):
    """``message`` in an IPMI 1.5 session header with no session (authentication type none)."""
    return RMCP_HEADER + b'\x00' + bytes(8) + bytes([len(message)]) + message


def auth_cap_request(seq=1):
    """An IPMI 1.5 sessionless Get Channel Authentication Capabilities request (channel: current,
    IPMI 2.0 extended data, administrator)."""
    return sessionless_packet(ipmi_message(0x06, 0x38, [0x8E, 0x04], seq))


def is_auth_cap_response(data):
    return len(data) >= 21 and data[:4] == RMCP_HEADER and data[19] == 0x38 and data[20] == 0x00


def probe(host, ports, timeout=5.0, interval=0.25):
    """Return the set of ``ports`` on ``host`` whose BMC answered within ``timeout`` seconds."""
    pending = set(ports)
    answered = set()
    deadline = time.monotonic() + timeout
    packet = auth_cap_request()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        next_send = 0.0
        while pending:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                for port in sorted(pending):
                    try:
                        sock.sendto(packet, (host, port))
                    except OSError:
                        pass
                next_send = now + interval
            ready = select.select([sock], (), (), max(0.0, min(next_send, deadline) - time.monotonic()))[0]
            while ready:
                try:
                    data, addr = sock.recvfrom(512)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break   # e.g. an ICMP error surfacing; the next round resends
                if addr[1] in pending and is_auth_cap_response(data):
                    pending.discard(addr[1])
                    answered.add(addr[1])
    return answered
