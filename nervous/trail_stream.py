"""The decision-trails stream on JetStream and the helper that publishes trail events into it.

One stream per env, ``NIMMERVERSE_<ENV>_TRAILS``, captures ``{env}.trails.decision.*``
(``TrailEvent`` on ``.event``, ``TrailOutcome`` on ``.outcome``). It is the buffer between the
processes that decide (governor, NPCs, cortex client) and the one trail writer
(``python -m organs.trails serve``), not the record: the store is. So it is a work queue (a message
leaves the stream once the writer acked it, after its commit) with limits (``max_age_s``,
``max_bytes``) and ``discard=new``: a full stream refuses new publishes (the publisher retries, then
raises) rather than silently dropping events it had already acknowledged.

De-duplication: every publish carries ``Nats-Msg-Id`` = the event id (``<id>:outcome`` for an
outcome), so a retry after a lost ack, a broker restart or a republishing process is dropped by the
stream inside ``duplicate_window_s``; beyond the window the store's primary key drops it.

``ensure_trail_stream(js, config)`` creates the stream idempotently (and with ``update=True`` brings
its limits to ``config``); ``TrailPublisher(bus)`` publishes with retries until a deadline, keeping the
same message id on every attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, PubAck, RetentionPolicy, StorageType, StreamConfig, StreamInfo

from nervous import subjects
from nervous.bus import Bus
from nervous.messages import TrailEvent, TrailKind, TrailOutcome, encode

#: Errors after which a publish is tried again with the same message id.
RETRYABLE = (
    TimeoutError,  # nats.errors.TimeoutError is one: no ack in time (broker away, restarting)
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,  # the stream is not there yet (a broker starting up)
    nats.js.errors.ServiceUnavailableError,  # JetStream not ready, or the stream full (discard=new)
    nats.errors.OutboundBufferLimitError,  # disconnected, the client's buffer full
    nats.errors.ConnectionReconnectingError,
)


@dataclass
class TrailStreamConfig:
    """Limits of the trails stream (the writer's buffer)."""

    max_age_s: float = 7 * 24 * 3600.0
    """Seconds an event waits in the stream for the writer at most (then it is dropped)."""
    max_bytes: int = 1 << 30
    """Bytes the stream holds at most; beyond, publishes are refused until the writer catches up."""
    duplicate_window_s: float = 120.0
    """Seconds within which a repeated event id (Nats-Msg-Id) is dropped by the stream."""

    def __post_init__(self) -> None:
        if not self.max_age_s > 0:
            raise ValueError(f"trails.stream.max_age_s={self.max_age_s!r}: must be > 0")
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1 << 20:
            raise ValueError(f"trails.stream.max_bytes={self.max_bytes!r}: must be an integer >= 1 MiB")
        if not 0 < self.duplicate_window_s <= self.max_age_s:
            raise ValueError(
                f"trails.stream.duplicate_window_s={self.duplicate_window_s!r}: must be in (0, max_age_s]"
            )


class TrailStreamError(RuntimeError):
    """The trails stream could not be created or brought to its configured limits."""


class TrailPublishError(RuntimeError):
    """A trail event was not acknowledged by the stream before the publisher's deadline."""


def stream_name() -> str:
    """Name of the trails stream of the current env."""
    return f"NIMMERVERSE_{subjects.env().upper()}_TRAILS"


def stream_config(config: TrailStreamConfig) -> StreamConfig:
    """The JetStream configuration of the trails stream."""
    return StreamConfig(
        name=stream_name(),
        subjects=[subjects.trails_pattern()],
        retention=RetentionPolicy.WORK_QUEUE,
        discard=DiscardPolicy.NEW,
        storage=StorageType.FILE,
        max_age=config.max_age_s,
        max_bytes=config.max_bytes,
        duplicate_window=config.duplicate_window_s,
    )


async def ensure_trail_stream(
    js: JetStreamContext, config: TrailStreamConfig, update: bool = False
) -> StreamInfo:
    """The trails stream, created if missing; with update, its limits set to config."""
    wanted = stream_config(config)
    try:
        info = await js.stream_info(wanted.name)
    except nats.js.errors.NotFoundError:
        try:
            return await js.add_stream(wanted)
        except nats.js.errors.BadRequestError:  # created meanwhile by another process
            info = await js.stream_info(wanted.name)
    have = info.config
    if have.retention != RetentionPolicy.WORK_QUEUE:
        raise TrailStreamError(f"stream {wanted.name} exists with retention {have.retention}, not workqueue")
    if update and (have.max_age, have.max_bytes, have.duplicate_window) != (
        wanted.max_age, wanted.max_bytes, wanted.duplicate_window
    ):
        try:
            return await js.update_stream(wanted)
        except nats.js.errors.APIError as exc:
            reason = exc.description
            raise TrailStreamError(f"stream {wanted.name}: cannot set its limits: {reason}") from None
    return info


def trail_id(run: str, npc: int, tick: int, kind: TrailKind | str, region: str, decision: int | None = None
             ) -> str:
    """A deterministic event id: one decision of one kind per NPC, tick and region in a run.

    ``decision`` (the deciding process's own decision count) tells apart two decisions at the same world
    tick: a governor that decides while the world stalls opens and closes a gate at one tick, and without
    it the close would share the open's id and the stream's dedup would drop it."""
    safe_run = "".join(c if c.isalnum() or c in "_.-" else "-" for c in run)[:64]
    made = f"{safe_run}:{npc}:{tick}:{TrailKind(kind).value}:{region}"
    return made if decision is None else f"{made}:{decision}"


def msg_id(msg: TrailEvent | TrailOutcome) -> str:
    """The Nats-Msg-Id of a trail message: the event id, suffixed for an outcome."""
    return msg.id if isinstance(msg, TrailEvent) else f"{msg.id}:outcome"


class TrailPublisher:
    """Publishes trail events and outcomes into the trails stream, retrying with the same id."""

    def __init__(
        self,
        bus: Bus,
        stream: TrailStreamConfig | None = None,
        timeout_s: float = 2.0,
        deadline_s: float = 30.0,
        window: int = 256,
    ) -> None:
        self.bus = bus
        self.stream = stream or TrailStreamConfig()
        self.timeout_s, self.deadline_s, self.window = timeout_s, deadline_s, window
        self.event_subject, self.outcome_subject = subjects.trail_event(), subjects.trail_outcome()
        self.published = 0
        """Messages the stream acknowledged (duplicates included)."""
        self.duplicates = 0
        """Acks that said the stream already had that id."""
        self.retries = 0
        """Attempts after the first."""

    async def ensure_stream(self) -> StreamInfo:
        """Create the trails stream if it is missing (its limits are the writer's to set)."""
        return await ensure_trail_stream(self.bus.js, self.stream)

    async def publish(self, msg: TrailEvent | TrailOutcome) -> PubAck:
        """Publish one event or outcome; TrailPublishError if no ack came before the deadline."""
        subject = self.event_subject if isinstance(msg, TrailEvent) else self.outcome_subject
        payload, headers = encode(msg), {"Nats-Msg-Id": msg_id(msg)}
        deadline = time.monotonic() + self.deadline_s
        delay = 0.05
        while True:
            try:
                ack = await self.bus.js.publish(subject, payload, timeout=self.timeout_s, headers=headers)
            except RETRYABLE as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    reason = str(exc) or type(exc).__name__
                    raise TrailPublishError(
                        f"trail {msg_id(msg)} on {subject}: no ack within {self.deadline_s:g} s: {reason}"
                    ) from None
                self.retries += 1
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
                continue
            except nats.js.errors.APIError as exc:
                raise TrailPublishError(f"trail {msg_id(msg)} on {subject}: {exc.description}") from None
            self.published += 1
            self.duplicates += bool(ack.duplicate)
            return ack

    async def publish_many(
        self, msgs: Iterable[TrailEvent | TrailOutcome]
    ) -> Sequence[PubAck | TrailPublishError]:
        """Publish many, pipelined; per message its ack or its TrailPublishError.

        Every message goes out at once through nats-py's asynchronous JetStream publish (at most
        ``window`` acks outstanding); one whose ack did not come within ``timeout_s`` or said no is
        published again the careful way (``publish``: retries with the same id until the deadline),
        so the fast path costs no safety: the stream's dedup drops a message that did arrive twice.
        """
        batch = list(msgs)
        js = self.bus.js
        futures: list[asyncio.Future[PubAck] | None] = []
        for k in range(0, len(batch), self.window):
            chunk = batch[k:k + self.window]
            for m in chunk:
                subject = self.event_subject if isinstance(m, TrailEvent) else self.outcome_subject
                try:
                    futures.append(await js.publish_async(subject, encode(m),
                                                          headers={"Nats-Msg-Id": msg_id(m)}))
                except Exception:  # stalled, disconnected: this one goes the careful way
                    futures.append(None)
            pending = [f for f in futures[k:] if f is not None]
            if pending:  # a window at a time: acks of this one before the next goes out
                _, late = await asyncio.wait(pending, timeout=self.timeout_s)
                for f in late:
                    f.cancel()
        results: list[PubAck | TrailPublishError | None] = []
        careful: list[int] = []
        for i, f in enumerate(futures):
            if f is not None and f.done() and not f.cancelled() and f.exception() is None:
                ack = f.result()
                self.published += 1
                self.duplicates += bool(ack.duplicate)
                results.append(ack)
            else:
                results.append(None)
                careful.append(i)
        if careful:
            gate = asyncio.Semaphore(self.window)

            async def one(msg: TrailEvent | TrailOutcome) -> PubAck | TrailPublishError:
                async with gate:
                    try:
                        return await self.publish(msg)
                    except TrailPublishError as exc:
                        return exc

            self.retries += len(careful)
            retried = await asyncio.gather(*(one(batch[i]) for i in careful))
            for i, result in zip(careful, retried, strict=True):
                results[i] = result
        return results  # type: ignore[return-value]
