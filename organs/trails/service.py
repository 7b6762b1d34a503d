"""The trail writer as a bus service: the trails stream -> the trail store, acked after commit.

``serve(config, location, url)`` (``python -m organs.trails serve``; ``child_main`` under a
supervisor's fork server) makes sure the trails stream exists with ``config.stream``'s limits, binds
the durable pull consumer ``config.durable`` (explicit acks, ``ack_wait_s``) and loops:

1. fetch up to ``batch_size`` messages, waiting at most ``flush_interval_s`` from the first fetch
   that brought one (so an event waits at most about ``flush_interval_s`` plus two commits: while
   one batch commits, in a thread, the next is fetched);
2. decode them (``TrailEvent`` or ``TrailOutcome``); a malformed one is counted in ``bad``, logged
   (the first ten, then every thousandth) and terminated, so it is never redelivered;
3. commit the good ones in one transaction (``TrailWriter.write_many``), then ack them.

A message is acked only after its commit, so a writer killed at any moment loses nothing: what it had
not acked is delivered again after ``ack_wait_s`` and the store's primary key keeps it from being
stored twice. A broker that goes away is waited for (fetches time out until nats-py reconnects). A
store that fails a commit ends the service with status 1 and one error line (let it crash: the
supervisor restarts it, and the unacked batch comes again). A heartbeat goes to
``{env}.trails.writer.heartbeat`` every ``heartbeat_s`` (requests: rows stored; errors: bad messages).
SIGTERM or SIGINT commits the batch in hand, acks it, drains the connection and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.messages import Heartbeat, MessageDecoder, MessageError, TrailEvent, TrailOutcome
from nervous.trail_stream import TrailStreamError, ensure_trail_stream, stream_name
from organs.trails.config import TrailsConfig
from organs.trails.store import TrailStoreError, open_store, shown
from organs.trails.writer import TrailWriter

log = logging.getLogger(__name__)

#: Tokens of a version-1 ack subject ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``.
_V1_ACK_TOKENS = 9


def deliveries(reply: str) -> int:
    """How often the stream delivered a message, read from its ack subject (``$JS.ACK...``) alone: nats-py's
    ``Msg.metadata`` parses the whole subject into a dataclass with a timestamp, 35 us a message."""
    tokens = reply.split(".")
    try:
        return int(tokens[4] if len(tokens) == _V1_ACK_TOKENS else tokens[Msg.Ack.NumDelivered])
    except (IndexError, ValueError):
        return 1  # not a JetStream ack subject: nothing to count


class TrailService:
    """Moves trail messages from the stream's durable consumer into a TrailWriter."""

    def __init__(self, config: TrailsConfig, bus: Bus, writer: TrailWriter) -> None:
        self.config, self.bus, self.writer = config, bus, writer
        self.decode = MessageDecoder(TrailEvent | TrailOutcome)  # type: ignore[arg-type]
        self.sub: Any = None
        self.bad = 0
        """Malformed messages terminated."""
        self.redelivered = 0
        """Messages that came more than once (a writer died, or a commit outlasted ack_wait_s)."""
        self.beats = 0
        self.started = time.monotonic()
        self.heartbeat_subject = subjects.trails_heartbeat()

    async def start(self) -> None:
        """Ensure the stream (its limits as configured) and bind the durable pull consumer."""
        c = self.config
        js = self.bus.js
        await ensure_trail_stream(js, c.stream, update=True)
        consumer = ConsumerConfig(
            durable_name=c.durable, name=c.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=c.ack_wait_s,
            deliver_policy=DeliverPolicy.ALL, max_ack_pending=max(4 * c.batch_size, 1000), max_deliver=-1,
        )  # no filter: the stream holds only trails subjects (and a wildcard filter breaks the API subject)
        await js.add_consumer(stream_name(), consumer)  # creates it, or updates ack_wait and limits
        self.sub = await js.pull_subscribe_bind(durable=c.durable, stream=stream_name())

    async def _rebind(self) -> None:
        """Bind the consumer again after an API error (a broker that came back, a consumer recreated)."""
        await self.close()
        await self.start()

    async def heartbeat(self) -> None:
        """Publish one heartbeat with the rows stored and the bad messages."""
        self.beats += 1
        await self.bus.publish(self.heartbeat_subject, Heartbeat(
            domain="trails", service="writer", seq=self.beats, uptime_s=time.monotonic() - self.started,
            requests=self.writer.events + self.writer.outcomes, errors=self.bad,
        ))

    async def beat(self, stop: asyncio.Event) -> None:
        """Heartbeat every heartbeat_s until stop (silent while the bus is away)."""
        while not stop.is_set():
            if self.bus.connected.is_set():
                with contextlib.suppress(nats.errors.Error):
                    await self.heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.heartbeat_s)

    async def commit(self, raws: list[Msg]) -> None:
        """Decode, store in one transaction, then ack; malformed ones are counted and terminated."""
        good: list[TrailEvent | TrailOutcome] = []
        keep: list[Msg] = []
        bad: list[tuple[Msg, MessageError]] = []
        for raw in raws:
            try:
                good.append(self.decode(raw.data, raw.subject))
                keep.append(raw)
            except MessageError as exc:
                bad.append((raw, exc))
            if raw.reply and deliveries(raw.reply) > 1:
                self.redelivered += 1
        if good:  # in a thread, so the next batch is fetched meanwhile; TrailStoreError ends the service
            await asyncio.to_thread(self.writer.write_many, good)
        for raw in keep:
            await raw.ack()
        for raw, exc in bad:
            self.bad += 1
            if self.bad <= 10 or self.bad % 1000 == 0:
                log.warning("%s (%d bad trail messages so far)", exc, self.bad)
            await raw.term()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch, commit and ack in batches until stop; the batches in hand are committed before returning.

        One commit runs while the next batch is fetched; commits (and so acks) stay in order.
        """
        c = self.config
        pending: list[Msg] = []
        committing: asyncio.Task[None] | None = None
        batch_started = 0.0
        while not stop.is_set():
            if committing is not None and committing.done():
                committing, done = None, committing
                done.result()  # a failed commit ends the service here
            fetch_started = time.monotonic()
            left = c.flush_interval_s - (fetch_started - batch_started) if pending else c.flush_interval_s
            if pending and (left <= 0 or len(pending) >= c.batch_size):
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self.commit(pending))
                pending = []
                continue
            try:
                if self.sub is None:  # an earlier rebind failed: try again
                    await self._rebind()
                msgs = await self.sub.fetch(c.batch_size - len(pending), timeout=max(left, 0.005))
            except TimeoutError:  # nothing came (or the broker is away: nats-py reconnects meanwhile)
                msgs = []
            except nats.js.errors.APIError as exc:
                log.warning("trail writer: fetch failed (%s); binding the consumer again", exc.description)
                await asyncio.sleep(0.2)
                with contextlib.suppress(nats.errors.Error, nats.js.errors.APIError, TimeoutError):
                    await self._rebind()
                continue
            except nats.errors.Error as exc:  # connection closed or reconnecting
                log.debug("trail writer: fetch failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if msgs and not pending:
                batch_started = fetch_started
            pending += msgs
        if committing is not None:
            await committing
        if pending:
            await self.commit(pending)
        await self.close()

    async def close(self) -> None:
        """Unsubscribe from the consumer (a pull subscription left behind would stall the bus's drain)."""
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


async def serve(
    config: TrailsConfig, location: str, url: str | None = None, stop: asyncio.Event | None = None,
    run_dir: str | None = None,
) -> int:
    """Run the trail writer until stop (or SIGTERM/SIGINT); the exit status (start-up errors raise)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    store = await asyncio.to_thread(open_store, location)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(store.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            stack.callback(loop.remove_signal_handler, sig)
        bus = await stack.enter_async_context(Bus(BusConfig(url=url, name="trail-writer"), run_dir=run_dir))
        service = TrailService(config, bus, TrailWriter(store))
        await service.start()
        beat = asyncio.create_task(service.beat(stop))
        stack.push_async_callback(_cancel, beat)
        log.info("trail writer: %s -> %s", stream_name(), shown(location))
        try:
            await service.run(stop)
        except TrailStoreError as exc:
            log.error("%s", exc)
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def child_main(config: dict[str, Any]) -> int:
    """Entry point under a fork server: ``{"url", "location", "trails": TrailsConfig fields}`` -> exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s trail-writer %(levelname)s %(message)s",
                        force=True)
    trails = TrailsConfig(**config.get("trails", {}))
    try:
        return asyncio.run(serve(trails, config["location"], config["url"]))
    except (TrailStoreError, TrailStreamError, BusError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def child_config(config: TrailsConfig, location: str, url: str) -> dict[str, Any]:
    """The serialised config ``child_main`` takes."""
    return {"url": url, "location": location, "trails": dataclasses.asdict(config)}
