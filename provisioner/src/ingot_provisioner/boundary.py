"""The trust boundary of the unauthenticated routes (boot, discovery, images, ramdisk, agent).

Who may call them: clients on the configured provisioning networks (anything else gets 403); a deploy token
goes only to the address the provisioner's own DHCP leased to the booting MAC (where the lease file knows that
MAC); discovery reports are rate limited per source address. See docs/provisioner-api.md, "Trust boundary"."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import deque
from typing import Optional

from .errors import ApiError, Forbidden

log = logging.getLogger("ingot_provisioner.boundary")


def client_address(host: Optional[str]):
    """The peer's address as an ``ipaddress`` object (IPv4-mapped IPv6 unwrapped), or None."""
    if not host:
        return None
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def check_network(host: Optional[str], networks: tuple, what: str) -> None:
    addr = client_address(host)
    if addr is None or not any(addr.version == net.version and addr in net for net in networks):
        raise Forbidden(f"{what}: the client {host or '(unknown)'} is not on a provisioning network "
                        f"({', '.join(str(n) for n in networks)}); boot, discovery and agent routes answer only "
                        f"nodes there (service setting provisioning_networks)", code="not_provisioning_network")


def leased_address(lease_file: Optional[str], mac: str) -> Optional[str]:
    """The address dnsmasq's lease file holds for ``mac`` (unexpired), or None when it knows no lease.

    Lines are ``EXPIRY MAC IP HOSTNAME CLIENT-ID`` (EXPIRY 0: infinite). An unreadable file is logged and
    treated as knowing no lease."""
    if not lease_file:
        return None
    try:
        with open(lease_file, encoding="ascii", errors="replace") as fh:
            lines = fh.read(4 * 1024 * 1024).splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the DHCP lease file %s: %s", lease_file, exc.strerror)
        return None
    now = time.time()
    found = None
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[1].lower() != mac:
            continue
        try:
            expiry = int(parts[0])
            ipaddress.ip_address(parts[2])
        except ValueError:
            continue
        if expiry == 0 or expiry > now:
            found = parts[2]
    return found


def check_lease(lease_file: Optional[str], mac: str, host: Optional[str], node: str) -> None:
    leased = leased_address(lease_file, mac)
    if leased is None:
        return
    addr = client_address(host)
    if addr is None or addr != client_address(leased):
        raise Forbidden(f"node '{node}': the provisioner's DHCP leased {leased} to {mac}, but the boot script was "
                        f"asked for by {host or '(unknown)'}: no deploy token for that address",
                        code="lease_mismatch")


class RateLimit:
    """At most ``per_minute`` events per key in any 60 s window (a sliding log; bounded memory)."""

    MAX_KEYS = 10000

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._log: dict = {}
        self._lock = threading.Lock()

    def check(self, key: str, what: str) -> None:
        """Raise 429 when ``key`` has used its ``per_minute`` events, without counting one more."""
        now = time.monotonic()
        with self._lock:
            times = self._log.get(key)
            while times and times[0] <= now - 60:
                times.popleft()
            if times is not None and len(times) >= self.per_minute:
                wait = max(1, int(times[0] + 60 - now) + 1)
                raise ApiError(f"{what}: more than {self.per_minute} refused attempts a minute from {key}; retry in "
                               f"{wait} s", status=429, code="rate_limited", headers={"Retry-After": str(wait)})

    def hit(self, key: str, what: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._log) >= self.MAX_KEYS and key not in self._log:
                self._log = {k: q for k, q in self._log.items() if q and q[-1] > now - 60}
                if len(self._log) >= self.MAX_KEYS:
                    raise ApiError(f"{what}: too many sources at once; retry in a minute", status=429,
                                   code="rate_limited", headers={"Retry-After": "60"})
            times = self._log.setdefault(key, deque())
            while times and times[0] <= now - 60:
                times.popleft()
            if len(times) >= self.per_minute:
                wait = max(1, int(times[0] + 60 - now) + 1)
                raise ApiError(f"{what}: more than {self.per_minute} requests a minute from {key}; retry in {wait} s",
                               status=429, code="rate_limited", headers={"Retry-After": str(wait)})
            times.append(now)
