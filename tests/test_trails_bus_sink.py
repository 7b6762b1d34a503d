"""The live runtime's trail sink on a real nats-server: queued from the tick, each published once."""

import asyncio

from nervous.bus import Bus
from nervous.server import EmbeddedServer
from nervous.trail_stream import stream_name
from organs.trails.bus_sink import BusTrailSink
from tests.trail_fixtures import trail_event, until


async def test_queued_batches_are_published_into_the_stream_once_each(bus: Bus) -> None:
    sink = BusTrailSink(bus)
    sink.start()
    events = [trail_event(i) for i in range(300)]
    sink(events[:200])
    sink(events[100:])  # a republished half: the stream's dedup keeps one of each id
    await until(lambda: sink.published == 400, 20, "every message acknowledged")
    await sink.close()
    info = await bus.js.stream_info(stream_name())
    assert info.state.messages == 300
    assert sink.stats() == {"queued": 400, "published": 400, "failed": 0, "dropped": 0}
    assert sink.publisher.duplicates == 100


async def test_a_broker_away_costs_counted_failures_and_drops_never_an_exception(
    nats_server: EmbeddedServer, bus: Bus
) -> None:
    sink = BusTrailSink(bus, max_queued=150, deadline_s=1.0)
    sink.start()
    sink([trail_event(0)])
    await until(lambda: sink.published == 1, 20, "the first message acknowledged")
    nats_server.kill()
    sink([trail_event(i) for i in range(1, 101)])  # returns at once: only queued
    sink([trail_event(i) for i in range(101, 201)])  # 50 of these do not fit while the first 100 wait
    assert sink.dropped + len(sink.queue) + sink.published + sink.failed <= 201
    await asyncio.wait_for(sink.close(timeout_s=30.0), 40)
    stats = sink.stats()
    assert stats["dropped"] >= 50 and stats["failed"] > 0, stats
    assert stats["published"] + stats["failed"] == stats["queued"] == 201 - stats["dropped"], stats
