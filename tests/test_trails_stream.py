"""The trails stream on a real nats-server: created idempotently, limits, dedup by event id, retries."""

import asyncio
import time

import msgspec
import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StreamConfig

from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import Region, TrailEvent, TrailKind, TrailOutcome
from nervous.server import EmbeddedServer
from nervous.trail_stream import (
    TrailPublisher,
    TrailPublishError,
    TrailStreamConfig,
    TrailStreamError,
    ensure_trail_stream,
    stream_name,
    trail_id,
)


def event(i: int, run: str = "r1") -> TrailEvent:
    return TrailEvent(
        id=trail_id(run, i % 4, i, TrailKind.GATE, "food"), run=run, env="dev", npc=i % 4, tick=i,
        kind=TrailKind.GATE, region=Region.FOOD, gate_open=bool(i % 2), at=time.time(),
    )


async def test_stream_is_created_once_as_a_limited_work_queue_and_updated_on_request(bus: Bus) -> None:
    first = await asyncio.wait_for(ensure_trail_stream(bus.js, TrailStreamConfig()), 5)
    again = await asyncio.wait_for(ensure_trail_stream(bus.js, TrailStreamConfig()), 5)
    assert first.config.name == again.config.name == stream_name() == "NIMMERVERSE_DEV_TRAILS"
    assert first.config.subjects == [subjects.trails_pattern()]
    assert first.config.retention == RetentionPolicy.WORK_QUEUE and first.config.discard == DiscardPolicy.NEW
    assert first.config.max_age == 7 * 24 * 3600.0 and first.config.duplicate_window == 120.0
    tighter = TrailStreamConfig(max_age_s=600.0, max_bytes=64 << 20, duplicate_window_s=30.0)
    kept = await ensure_trail_stream(bus.js, tighter)  # a publisher does not change the writer's limits
    assert kept.config.max_bytes == 1 << 30
    updated = await ensure_trail_stream(bus.js, tighter, update=True)
    assert (updated.config.max_age, updated.config.max_bytes, updated.config.duplicate_window) == (
        600.0, 64 << 20, 30.0
    )


async def test_a_stream_of_the_same_name_with_other_retention_is_refused(bus: Bus) -> None:
    await bus.js.add_stream(StreamConfig(name=stream_name(), subjects=[subjects.trails_pattern()]))
    with pytest.raises(TrailStreamError, match="retention") as err:
        await ensure_trail_stream(bus.js, TrailStreamConfig())
    assert "\n" not in str(err.value)


async def test_republished_events_and_outcomes_are_kept_once(bus: Bus) -> None:
    publisher = TrailPublisher(bus)
    await publisher.ensure_stream()
    events = [event(i) for i in range(50)]
    outcome = TrailOutcome(id=events[0].id, npc=0, tick=20, after_ticks=20, reward=1.0)
    acks = await asyncio.wait_for(publisher.publish_many(events + events[:10] + [outcome, outcome]), 10)
    assert all(not isinstance(a, Exception) for a in acks)
    assert [a.duplicate for a in acks].count(True) == 11 == publisher.duplicates
    info = await bus.js.stream_info(stream_name())
    assert info.state.messages == 51  # 50 events and one outcome (its id differs from its event's)


async def test_publishes_wait_through_a_broker_restart_and_give_up_after_the_deadline(
    nats_server: EmbeddedServer,
) -> None:
    async with Bus(BusConfig(url=nats_server.url, name="trail-pub")) as bus:
        publisher = TrailPublisher(bus, timeout_s=0.3, deadline_s=15.0)
        await publisher.ensure_stream()
        nats_server.kill()
        later = asyncio.create_task(publisher.publish(event(1)))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(nats_server.start)  # same port and JetStream store
        ack = await asyncio.wait_for(later, 20)
        assert ack.stream == stream_name() and publisher.retries >= 1
        impatient = TrailPublisher(bus, timeout_s=0.2, deadline_s=0.5)
        nats_server.kill()
        with pytest.raises(TrailPublishError, match="no ack within 0.5 s") as err:
            await asyncio.wait_for(impatient.publish(event(2)), 10)
        assert event(2).id in str(err.value) and "\n" not in str(err.value)


async def test_a_full_stream_refuses_publishes_instead_of_dropping_acked_events(bus: Bus) -> None:
    limits = TrailStreamConfig(max_bytes=1 << 20)
    await ensure_trail_stream(bus.js, limits, update=True)
    publisher = TrailPublisher(bus, limits, deadline_s=0.5)
    situation = '"' + "x" * 60_000 + '"'
    big = [msgspec.structs.replace(event(i), situation=situation) for i in range(40)]  # 2.4 MB > 1 MiB
    results = await asyncio.wait_for(publisher.publish_many(big), 30)
    refused = [r for r in results if isinstance(r, TrailPublishError)]
    kept = [r for r in results if not isinstance(r, Exception)]
    assert refused and kept and len(refused) + len(kept) == 40
    info = await bus.js.stream_info(stream_name())
    assert info.state.messages == len(kept)  # every acked event is still there


def test_stream_limits_are_checked_with_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"^trails.stream.max_age_s=0: must be > 0$"):
        TrailStreamConfig(max_age_s=0)
    with pytest.raises(ValueError, match="max_bytes"):
        TrailStreamConfig(max_bytes=1000)
    with pytest.raises(ValueError, match="duplicate_window_s"):
        TrailStreamConfig(max_age_s=60, duplicate_window_s=120)


def test_trail_ids_are_deterministic_header_safe_tokens() -> None:
    made = trail_id("2026-11-25/run 1", 7, 120, "escalation", "math")
    assert made == "2026-11-25-run-1:7:120:escalation:math"
    assert TrailEvent(id=made, run="r", env="dev", npc=7, tick=120, kind="escalation", region="math",
                      gate_open=True).id == made
    with pytest.raises(ValueError):
        trail_id("r", 1, 1, "reflex", "math")
