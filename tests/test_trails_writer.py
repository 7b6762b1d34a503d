"""The trail writer on a real nats-server and real stores: batches, acks, bad messages, its command."""

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import Heartbeat, TrailOutcome, Wave, encode
from nervous.server import EmbeddedServer
from nervous.trail_stream import TrailPublisher, stream_name
from organs.trails import TrailsConfig, TrailWriter, open_store
from organs.trails.service import TrailService, child_config, serve
from tests.trail_fixtures import ROOT, store_args, trail_event, until


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store location of each kind."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_dsn")
    return str(tmp_path / "trails.sqlite")


async def test_published_events_are_stored_in_batches_acked_and_heartbeats_count_them(
    bus: Bus, location: str
) -> None:
    beats: list[Heartbeat] = []
    await bus.subscribe(subjects.trails_heartbeat(), Heartbeat, lambda msg, raw: beats.append(msg))
    stop = asyncio.Event()
    config = TrailsConfig(batch_size=64, heartbeat_s=0.2)
    writer = asyncio.create_task(serve(config, location, bus.url, stop))
    publisher = TrailPublisher(bus)
    await publisher.ensure_stream()
    events = [trail_event(i) for i in range(500)]
    outcomes = [TrailOutcome(id=e.id, npc=e.npc, tick=e.tick + 5, after_ticks=5, reward=0.5)
                for e in events[:50]]
    acks = await asyncio.wait_for(publisher.publish_many(events + outcomes), 20)
    assert not [a for a in acks if isinstance(a, Exception)]
    with open_store(location) as store:
        await until(lambda: store.counts() == (500, 50), 20, "every event and outcome stored")
        assert {r.event.id for r in store.last(n=1000)} == {e.id for e in events}
    info = await bus.js.stream_info(stream_name())
    await until(lambda: beats and beats[-1].requests == 550, 5, "a heartbeat counting 550 rows")
    assert beats[-1].domain == "trails" and beats[-1].service == "writer" and beats[-1].errors == 0
    stop.set()
    assert await asyncio.wait_for(writer, 10) == 0
    info = await bus.js.stream_info(stream_name())
    assert info.state.messages == 0  # a work queue: every acked event has left the stream


async def test_malformed_messages_are_counted_terminated_never_redelivered_and_the_rest_stored(
    bus: Bus, tmp_path: Path
) -> None:
    config = TrailsConfig(ack_wait_s=1.0, heartbeat_s=0.2)
    with open_store(str(tmp_path / "trails.sqlite")) as store:
        service = TrailService(config, bus, TrailWriter(store))
        await service.start()
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        bad_json = msgspec.msgpack.decode(encode(trail_event(3)))
        bad_json[10] = "{not json"  # the situation field
        hostile = [b"\xc1 not msgpack", encode(Wave(cell="m", npc=1, region="math", confidence=0.5, value=1.0,
                                                     tick=1)), msgspec.msgpack.encode(bad_json), b""]
        for i, payload in enumerate(hostile):
            await bus.js.publish(subjects.trail_event(), payload, headers={"Nats-Msg-Id": f"bad-{i}"})
        publisher = TrailPublisher(bus)
        await publisher.publish_many([trail_event(i) for i in range(100)])
        await until(lambda: store.counts()[0] == 100 and service.bad == 4, 10, "100 stored, 4 counted bad")
        await asyncio.sleep(2.5)  # beyond ack_wait_s: a terminated message does not come back
        assert service.bad == 4 and service.redelivered == 0 and store.counts() == (100, 0)
        info = await bus.js.stream_info(stream_name())
        assert info.state.messages == 0
        await service.heartbeat()
        stop.set()
        await asyncio.wait_for(task, 5)


def test_the_command_serves_until_sigterm_and_refuses_bad_input_in_one_line(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "organs.trails", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})

    bad = run("serve", "--url", nats_server.url, "--dsn", "mysql://x")
    assert (bad.returncode, bad.stderr) == (2, "error: trails.dsn='mysql://x': must start with postgresql://\n")
    away = run("serve", "--url", "nats://127.0.0.1:1", "--store", str(tmp_path / "t.sqlite"))
    assert away.returncode == 2 and away.stderr.startswith("error: cannot connect to bus at nats://127.0.0.1:1")
    assert away.stderr.count("\n") == 1
    location = str(tmp_path / "served.sqlite")
    proc = subprocess.Popen([sys.executable, "-m", "organs.trails", "serve", "--url", nats_server.url,
                             *store_args(location)], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async def publish_one() -> None:
            async with Bus(BusConfig(url=nats_server.url, name="t")) as bus:
                publisher = TrailPublisher(bus)
                await publisher.ensure_stream()
                await publisher.publish(trail_event(1))
                with open_store(location) as store:
                    await until(lambda: store.counts() == (1, 0), 20, "the event stored by the command")

        asyncio.run(publish_one())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_child_config_round_trips_the_trails_config() -> None:
    config = TrailsConfig(batch_size=7, dsn="postgresql://u@h/db")
    child = child_config(config, config.location(), "nats://127.0.0.1:4222")
    assert child["location"] == "postgresql://u@h/db" and child["url"] == "nats://127.0.0.1:4222"
    assert TrailsConfig(**child["trails"]) == config


async def test_deliveries_are_read_from_the_ack_subject_as_nats_py_reads_them(bus: Bus) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    from organs.trails.service import deliveries

    publisher = TrailPublisher(bus)
    await publisher.ensure_stream()
    await publisher.publish_many([trail_event(1)])
    await bus.js.add_consumer(stream_name(), ConsumerConfig(durable_name="redeliver", ack_wait=1.0,
                                                            ack_policy=AckPolicy.EXPLICIT))
    sub = await bus.js.pull_subscribe_bind(durable="redeliver", stream=stream_name())
    (first,) = await sub.fetch(1, timeout=5)
    (again,) = await sub.fetch(1, timeout=5)  # not acked: delivered again after ack_wait
    assert (deliveries(first.reply), deliveries(again.reply)) == (1, 2)
    assert deliveries(again.reply) == again.metadata.num_delivered
    assert deliveries("not.an.ack") == 1
    await again.ack()
    await sub.unsubscribe()
