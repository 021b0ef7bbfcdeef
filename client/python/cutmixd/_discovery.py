"""Replica discovery: ``dns+tcp://NAME:PORT`` endpoints.

Every A/AAAA record of NAME is a daemon at ``tcp://ADDR:PORT`` (what a
Kubernetes headless Service or a Slurm hostlist gives). The name is
resolved when the client is made and again every ``discovery_interval``
seconds (default 10; every 0.5 s while it has no address at all). New
addresses are connected and used at once; an address that vanished gets no
new request and what was outstanding on it is re-sent elsewhere through the
usual failover (a late reply from it is still taken); its connection is
closed at the next resolution. A resolution that fails keeps the last set
(logged once until it works again); with no address at all the client's
timeout ends the wait with an error naming the name and the last failure.
"""

from __future__ import annotations

import logging
import socket
from typing import Callable, List, Optional, Tuple

DEFAULT_INTERVAL = 10.0
EMPTY_RETRY = 0.5          # re-resolve this often while a name has no address
SCHEME = "dns+tcp://"

log = logging.getLogger("cutmixd")

Resolver = Callable[[str, int], List[str]]


def is_discovery(endpoint: str) -> bool:
    return endpoint.startswith(SCHEME)


def parse(endpoint: str) -> Tuple[str, int]:
    """(name, port) of "dns+tcp://NAME:PORT", or ValueError."""
    rest = endpoint[len(SCHEME):]
    name, sep, port = rest.rpartition(":")
    if not sep or not name or "/" in rest or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("cutmixd.Client: %r: expected dns+tcp://NAME:PORT (a DNS name "
                         "whose A/AAAA records are the daemons, a port 1..65535)" % endpoint)
    return name, int(port)


def resolve_tcp(name: str, port: int) -> List[str]:
    """Every address of name (getaddrinfo, SOCK_STREAM), sorted, no repeats."""
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return sorted({i[4][0] for i in infos if i[0] in (socket.AF_INET, socket.AF_INET6)})


def tcp_endpoint(addr: str, port: int) -> str:
    return "tcp://[%s]:%d" % (addr, port) if ":" in addr else "tcp://%s:%d" % (addr, port)


class Source:
    """One dns+tcp:// endpoint: its name, port and the last address set."""

    def __init__(self, endpoint: str, resolver: Resolver, interval: float) -> None:
        self.endpoint = endpoint
        self.name, self.port = parse(endpoint)
        self.resolver = resolver
        self.interval = interval
        self.addrs: List[str] = []       # the last good answer
        self.next_at = 0.0
        self.error: Optional[str] = None  # the last failure (None after a success)
        self.resolutions = 0
        self.failures = 0

    def endpoints(self) -> List[str]:
        return [tcp_endpoint(a, self.port) for a in self.addrs]

    def refresh(self, now: float) -> bool:
        """Resolve again if it is time; True if it was resolved (even to
        the same set). A failure keeps the last set."""
        if now < self.next_at:
            return False
        try:
            addrs = sorted(set(self.resolver(self.name, self.port)))
        except (OSError, UnicodeError) as exc:
            self.failures += 1
            msg = "%s: cannot resolve %s: %s" % (self.endpoint, self.name, exc)
            if self.error is None:
                log.warning("cutmixd: %s (keeping the last %d address(es))", msg,
                            len(self.addrs))
            self.error = msg
            self.next_at = now + (EMPTY_RETRY if not self.addrs else self.interval)
            return False
        if self.error is not None:
            log.warning("cutmixd: %s resolves again: %d address(es)", self.endpoint, len(addrs))
        self.error = None
        self.resolutions += 1
        self.addrs = addrs
        self.next_at = now + (self.interval if addrs else min(self.interval, EMPTY_RETRY))
        return True

    def describe(self) -> str:
        s = "%s -> %s" % (self.endpoint, ", ".join(self.addrs) if self.addrs else "no address")
        if self.error:
            s += " (%s)" % self.error
        return s
