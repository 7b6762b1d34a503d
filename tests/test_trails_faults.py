"""Faults mid-stream of 10,000 trail events: no acked event lost, none stored twice, on both stores.

The writer runs as its own process (``python -m organs.trails serve``), the events come from a paced
publisher in this process; the store is read from here as a third party would read it.
"""

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from nervous.bus import Bus, BusConfig
from nervous.server import EmbeddedServer
from nervous.trail_stream import stream_name
from tests.trail_fixtures import publish_paced, start_writer, stored_ids, until

N = 10_000


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store location of each kind."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_dsn")
    return str(tmp_path / "trails.sqlite")


def assert_exactly_once(location: str, acked: set[str]) -> None:
    """Every acked event stored, none twice, nothing that was not published."""
    ids = stored_ids(location)
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice, f"{len(twice)} events stored more than once"
    lost = acked - set(ids)
    assert not lost, f"{len(lost)} acked events lost"
    assert len(ids) == len(acked) == N


async def until_drained(bus: Bus, timeout: float = 60.0) -> None:
    """Wait until the trails stream is empty: a work queue, it is once the writer acked everything."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := (await bus.js.stream_info(stream_name())).state.messages) > 0:
        assert asyncio.get_running_loop().time() < deadline, f"{left} events still in the stream"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_kill9_of_the_writer_mid_stream_loses_and_duplicates_nothing(
    nats_server: EmbeddedServer, location: str, tmp_path: Path
) -> None:
    """Five kills, timed by the publisher's progress, not by the writer's commits (a kill timed by the
    store's row count always follows a commit, so it would never land between an ack and a commit)."""
    log = tmp_path / "writer.log"
    writers = [start_writer(nats_server.url, location, log, "--ack-wait-s", "2")]
    acked: set[str] = set()
    try:
        async with Bus(BusConfig(url=nats_server.url, name="trail-test")) as bus:
            publishing = asyncio.create_task(publish_paced(bus, N, acked))
            for sixth in range(1, 6):
                await until(lambda k=sixth: len(acked) >= k * N // 6, 60, f"{sixth}/6 of the events acked")
                await until(lambda: bool(stored_ids(location)), 60, "the writer storing")
                os.kill(writers[-1].pid, signal.SIGKILL)
                assert writers[-1].wait(10) == -signal.SIGKILL
                assert len(stored_ids(location)) < N, "the kill was not in the middle of the stream"
                writers.append(start_writer(nats_server.url, location, log, "--ack-wait-s", "2"))
            await asyncio.wait_for(publishing, 120)
            await until_drained(bus)
            await asyncio.sleep(3.0)  # beyond ack_wait_s: whatever a dead writer held came again by now
            assert_exactly_once(location, acked)
    finally:
        for proc in writers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
    assert writers[-1].returncode == 0, log.read_text()[-2000:]


@pytest.mark.slow
async def test_a_broker_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(
    nats_server: EmbeddedServer, location: str, tmp_path: Path
) -> None:
    log = tmp_path / "writer.log"
    writer = start_writer(nats_server.url, location, log, "--ack-wait-s", "2")
    try:
        async with Bus(BusConfig(url=nats_server.url, name="trail-test")) as bus:
            acked: set[str] = set()
            publishing = asyncio.create_task(publish_paced(bus, N, acked, deadline_s=60.0))
            await until(lambda: len(acked) >= N // 3, 60, "a third of the events acked")
            await until(lambda: bool(stored_ids(location)), 60, "the writer storing")
            nats_server.kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(nats_server.start)  # same port and JetStream store
            publisher = await asyncio.wait_for(publishing, 180)
            assert publisher.retries > 0, "the broker did not go away mid-stream"
            await until_drained(bus)
            await asyncio.sleep(3.0)
            assert_exactly_once(location, acked)
            assert writer.poll() is None, "the writer did not survive the broker's restart"
    finally:
        if writer.poll() is None:
            writer.send_signal(signal.SIGTERM)
            writer.wait(15)
    assert writer.returncode == 0, log.read_text()[-2000:]
