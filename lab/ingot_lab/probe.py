"""Is a BMC answering?  A sessionless IPMI probe (Get Channel Authentication Capabilities).

Needs no credentials and no session: one UDP datagram each way, so the lab can check hundreds of
ports in a few milliseconds before reporting that it started.
"""

import select
import socket
import time


def _checksum(data):
    return (-sum(data)) & 0xFF


def auth_cap_request(seq=1):
    """An IPMI 1.5 sessionless Get Channel Authentication Capabilities request (channel: current,
    IPMI 2.0 extended data, administrator)."""
    header = [0x20, 0x06 << 2]
    body = [0x81, (seq & 0x3F) << 2, 0x38, 0x8E, 0x04]
    message = bytes(header + [_checksum(header)] + body + [_checksum(body)])
    return b'\x06\x00\xff\x07' + b'\x00' + bytes(8) + bytes([len(message)]) + message


def is_auth_cap_response(data):
    return len(data) >= 21 and data[:4] == b'\x06\x00\xff\x07' and data[19] == 0x38 and data[20] == 0x00


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
