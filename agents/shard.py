"""Shards of the live organism: ``k/n`` runs the NPCs i with i mod n == k, so n hosts share one organism.

Every shard runs a supervisor (with its own fork server) for its NPCs on one shared bus; shard 0 is the
*head*: it alone runs the authoritative world server, the governor, the cell services, the organ host
and the trail writer. The other shards run NPCs only and must be given the head's bus (``bus_url``); the
world server steps all n shards' NPCs as one world. One shard (``0/1``, the default) is the whole organism
on one host.

A shard's processes connect to the bus url's servers rotated by k (``bus_url_for``): on a cluster
(``nats://a,nats://b,nats://c``) shard k starts on node k mod nodes and fails over along the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nervous.bus import server_urls

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    @property
    def head(self) -> bool:
        """Whether this shard runs the world server and the organism's shared services."""
        return self.index == 0

    def npcs(self, total: int) -> list[int]:
        """The ids of this shard's NPCs among an organism of ``total``."""
        return list(range(self.index, total, self.count))

    def bus_url_for(self, url: str) -> str:
        """The bus url this shard's processes use: its servers rotated to start at node index mod nodes."""
        servers = server_urls(url)
        k = self.index % len(servers)
        return ",".join(servers[k:] + servers[:k])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: str, bus_url: str | None = None, field: str = "runtime.organism.shard") -> Shard:
    """``"k/n"`` as a Shard; ValueError naming the field when malformed, k >= n, n < 1 or, for n > 1,
    without a bus url (the shards must share a bus)."""
    match = _SPEC.fullmatch(str(spec))
    if match is None:
        raise ValueError(f"{field}={spec!r}: must be k/n (shard k of n, e.g. 0/2)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ValueError(f"{field}={spec!r}: n must be >= 1")
    if index >= count:
        raise ValueError(f"{field}={spec!r}: k must be in 0..n-1 ({count - 1} at most)")
    if count > 1 and not bus_url:
        raise ValueError(f"{field}={spec!r}: shards share one bus; give its url (runtime.organism.bus_url)")
    return Shard(index, count)
