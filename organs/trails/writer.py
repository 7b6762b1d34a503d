"""The trail writer's sink: trail events and outcomes into a store, in batches, counted.

The same ``TrailWriter`` serves the bus service (``organs.trails.service``: a batch per fetched
slice of the stream) and batched training, which feeds it in-process::

    writer = TrailWriter(open_store(TrailsConfig().location(run_dir)))
    writer.write_many(events_and_outcomes)   # one transaction per call

``write_many`` returns once the batch is committed; a repeated id is skipped (counted in
``repeats``), so feeding the same events twice stores them once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from nervous.messages import TrailEvent, TrailOutcome
from organs.trails.store import TrailStore


class TrailWriter:
    """Writes trail events and outcomes into one store, one transaction per batch."""

    def __init__(self, store: TrailStore) -> None:
        self.store = store
        self.events = 0
        """Events stored (new ones)."""
        self.outcomes = 0
        """Outcomes stored (new ones)."""
        self.repeats = 0
        """Events and outcomes skipped because their id was already stored."""
        self.batches = 0
        """Transactions committed."""
        self.last_commit_s = 0.0
        """Seconds the last commit took."""

    def write_many(self, msgs: Iterable[TrailEvent | TrailOutcome]) -> int:
        """Store a batch in one transaction; how many of its messages were new. TrailStoreError on failure."""
        batch = list(msgs)
        if not batch:
            return 0
        start = time.perf_counter()
        new_events, new_outcomes = self.store.insert(batch)
        self.last_commit_s = time.perf_counter() - start
        self.batches += 1
        self.events += new_events
        self.outcomes += new_outcomes
        self.repeats += len(batch) - new_events - new_outcomes
        return new_events + new_outcomes

    def close(self) -> None:
        """Close the store."""
        self.store.close()
