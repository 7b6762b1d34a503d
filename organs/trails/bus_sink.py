"""The live runtime's trail sink: trail messages handed over synchronously, published on the bus behind.

A ``TrailRecorder`` in a live process (the world server, the governor service) calls the sink from its
tick; ``BusTrailSink`` only queues the batch (microseconds) and wakes its own asyncio task, which
publishes everything queued with ``TrailPublisher.publish_many`` (pipelined, each with its event id as
``Nats-Msg-Id``, so a retry is deduplicated by the stream). The tick never waits for the broker and
never sees its errors: a message the stream did not acknowledge before the publisher's deadline is
counted in ``failed``; beyond ``max_queued`` waiting messages (a broker away for long) new ones are
counted in ``dropped`` and not kept. The first failure of each kind is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from nervous.bus import Bus
from nervous.messages import TrailEvent, TrailOutcome
from nervous.trail_stream import TrailPublisher, TrailPublishError, TrailStreamConfig

log = logging.getLogger(__name__)


class BusTrailSink:
    """Queues trail messages from a tick and publishes them into the trails stream in its own task."""

    def __init__(self, bus: Bus, stream: TrailStreamConfig | None = None, max_queued: int = 100_000,
                 deadline_s: float = 30.0) -> None:
        if not isinstance(max_queued, int) or max_queued < 1:
            raise ValueError(f"max_queued={max_queued!r}: must be an integer >= 1")
        self.publisher = TrailPublisher(bus, stream, deadline_s=deadline_s, window=1024)
        self.max_queued = max_queued
        self.queue: deque[TrailEvent | TrailOutcome] = deque()
        self.queued = 0
        """Messages handed to the sink and kept (all but the dropped)."""
        self.published = 0
        """Messages the stream acknowledged."""
        self.failed = 0
        """Messages the stream did not acknowledge before the publisher's deadline."""
        self.dropped = 0
        """Messages refused because ``max_queued`` were waiting already."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._warned: set[str] = set()

    def __call__(self, batch: list[TrailEvent | TrailOutcome]) -> None:
        """Queue a batch for publishing (never blocks, never raises for the broker)."""
        room = self.max_queued - len(self.queue)
        if room < len(batch):
            self.dropped += len(batch) - max(room, 0)
            self._warn("dropped", f"trail sink: {self.max_queued} messages waiting; dropping new ones")
            batch = batch[:max(room, 0)]
        self.queue.extend(batch)
        self.queued += len(batch)
        if batch:
            self._wake.set()

    def start(self) -> None:
        """Start publishing in the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="trail-sink")

    async def _run(self) -> None:
        stream_ready = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not stream_ready:  # the writer sets the limits; a publisher only makes sure it exists
                try:
                    await self.publisher.ensure_stream()
                    stream_ready = True
                except Exception as exc:  # broker away: the publishes below retry until their deadline
                    self._warn("stream", f"trail sink: cannot reach the trails stream yet: {exc}")
            while self.queue:
                batch = list(self.queue)
                self.queue.clear()
                try:
                    results = await self.publisher.publish_many(batch)
                except Exception as exc:  # disconnected mid-way: none of them is known to have landed
                    results = [TrailPublishError(str(exc))] * len(batch)
                failed = sum(isinstance(r, Exception) for r in results)
                self.published += len(batch) - failed
                self.failed += failed
                if failed:
                    first = next(r for r in results if isinstance(r, Exception))
                    self._warn("failed", f"trail sink: {failed} messages not acknowledged: {first}")
            if self._closing:
                return

    def _warn(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s (logged once)", text)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Publish what is queued (waiting at most timeout_s), then stop; what is left counts as failed."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.failed += len(self.queue)
            self.queue.clear()

    def stats(self) -> dict[str, int]:
        """queued, published, failed, dropped."""
        return {"queued": self.queued, "published": self.published, "failed": self.failed,
                "dropped": self.dropped}
