"""The organ host service over a real nats-server, with organs loaded in real worker processes.

Malformed requests get error replies and the service keeps serving; a request arriving while its organ
loads waits for that load (bounded by its deadline); corrupt weights are an error reply naming the
file; and, with ``python -m organs.host`` as a real process, unloading gives the worker's memory back
and SIGTERM drains.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.messages import (
    CellError,
    Heartbeat,
    OrganCharge,
    OrganEvent,
    OrganGate,
    OrganState,
    VisionReply,
    VisionRequest,
    decode,
    encode,
)
from nervous.server import EmbeddedServer
from organs.host.config import OrganHostConfig
from organs.host.memory import descendants, tree_rss_bytes
from organs.host.service import serve
from organs.vision.frames import label_grid, render, window_labels, window_pixels
from tests.live import until
from world.core import GridWorld
from world.stages import stage_config

pytestmark = pytest.mark.slow
DETECT = "detect"
#: Unloading must bring the host's process tree back to its size before the load, within this margin.
RSS_MARGIN_MIB = 16


@pytest.fixture(scope="module")
def window() -> tuple[bytes, np.ndarray]:
    frame = GridWorld(stage_config(5), seed=21).frame(0)
    x, y = int(frame["npc_x"][3]), int(frame["npc_y"][3])
    return window_pixels(render(frame, "fog"), x, y).tobytes(), window_labels(label_grid(frame), x, y)


async def raw_request(bus: Bus, subject: str, data: bytes, timeout: float = 60.0) -> VisionReply | CellError:
    reply = await bus.nc.request(subject, data, timeout=timeout)
    return decode(reply.data, VisionReply | CellError, subject)  # type: ignore[arg-type]


class Feed:
    """Everything the host publishes: events, charges, heartbeats."""

    def __init__(self) -> None:
        self.events: list[OrganEvent] = []
        self.charges: list[OrganCharge] = []
        self.beats: list[Heartbeat] = []

    async def listen(self, bus: Bus, organ: str = "vision") -> None:
        await bus.subscribe(subjects.organ_event(organ), OrganEvent, lambda m, r: self.events.append(m))
        await bus.subscribe(subjects.organ_charge(organ), OrganCharge, lambda m, r: self.charges.append(m))
        await bus.subscribe(subjects.organ_host_heartbeat(), Heartbeat, lambda m, r: self.beats.append(m))

    def states(self) -> list[OrganState]:
        return [e.state for e in self.events]


@pytest.fixture
async def service(nats_server: EmbeddedServer, bus: Bus) -> AsyncIterator[tuple[asyncio.Event, Feed]]:
    feed = Feed()
    await feed.listen(bus)
    stop = asyncio.Event()
    config = OrganHostConfig(unload_after_s=60, heartbeat_s=0.2,
                             bus=BusConfig(url=nats_server.url, name="organ-host"))
    task = asyncio.create_task(serve(config, stop))
    await until(lambda: feed.beats, 10, "the host's first heartbeat")
    yield stop, feed
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0


async def test_the_service_answers_waits_for_its_load_and_survives_malformed_requests(
        service, bus: Bus, window) -> None:
    stop, feed = service
    pixels, truth = window
    subject = subjects.organ("vision", DETECT)

    # malformed before anything is loaded: an error reply naming the field, nothing loaded
    bad = await raw_request(bus, subject, b"\x93garbage")
    assert isinstance(bad, CellError) and "bad VisionRequest" in bad.error
    odd = msgspec.msgpack.encode(["vision_request", 1, 0, 0, 2.0, 14, 8, bytes(112 * 112 * 3)])
    bad = await raw_request(bus, subject, odd)
    assert isinstance(bad, CellError) and bad.field == "side" and "even" in bad.error
    assert feed.states() == []

    # the first request starts the load; one arriving during it with a short deadline gives up on time,
    # one with a long deadline waits for the same load
    first = asyncio.create_task(
        raw_request(bus, subject, encode(VisionRequest(npc=1, deadline_s=60, pixels=pixels))))
    await until(lambda: feed.states() == [OrganState.LOADING], 10, "LOADING")
    t0 = time.monotonic()
    hurried = await raw_request(bus, subject, encode(VisionRequest(npc=2, deadline_s=0.3, pixels=pixels)))
    assert isinstance(hurried, CellError) and hurried.field == "deadline_s"
    assert "vision still loading after the request's 0.3 s" in hurried.error
    assert time.monotonic() - t0 < 2.0
    patient = await raw_request(bus, subject, encode(VisionRequest(npc=3, deadline_s=60, pixels=pixels)))
    done = await first
    assert isinstance(done, VisionReply) and isinstance(patient, VisionReply), (done, patient)
    assert (np.frombuffer(patient.codes, np.uint8).reshape(15, 15) == truth).mean() >= 0.99
    assert feed.states().count(OrganState.LOADING) == 1
    ready = next(e for e in feed.events if e.state == OrganState.READY)
    assert ready.rss_mib > 50  # a worker process with torch and the network in it

    # malformed while loaded, then a good one: the service keeps serving
    bad = await raw_request(bus, subject, b"")
    assert isinstance(bad, CellError)
    ok = await bus.request(subject, VisionRequest(npc=4, pixels=pixels), VisionReply, timeout=10)
    assert ok.npc == 4 and ok.cost > 0

    # a governor closes npc 5's gate: refused, and not charged
    await bus.publish(subjects.organ_gate("vision"), OrganGate(npc=5, organ="vision", open=False))
    await bus.flush()
    await asyncio.sleep(0.1)
    with pytest.raises(BusError, match="the vision gate of npc 5 is closed"):
        await bus.request(subject, VisionRequest(npc=5, pixels=pixels), VisionReply, timeout=10)
    await until(lambda: len(feed.charges) == 3, 5, "three charges")
    assert sorted(c.npc for c in feed.charges) == [1, 3, 4]
    await until(lambda: feed.beats and feed.beats[-1].errors >= 5, 5, "errors counted in the heartbeat")

    stop.set()  # drain: the organ is unloaded and its worker ends
    await until(lambda: feed.states()[-1] == OrganState.UNLOADED, 30, "UNLOADED on stop")
    assert feed.events[-1].reason == "host stopping"


async def test_corrupt_weights_are_an_error_reply_naming_the_file(nats_server: EmbeddedServer, bus: Bus,
                                                                   window, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken-vision.pt"
    corrupt.write_bytes(os.urandom(4096))
    config = OrganHostConfig(weights={"vision": str(corrupt)}, bus=BusConfig(url=nats_server.url))
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, stop))
    try:
        await asyncio.sleep(0.5)
        subject = subjects.organ("vision", DETECT)
        for _ in range(2):  # it fails each time, never hangs, and the service keeps answering
            ask = VisionRequest(npc=0, deadline_s=60, pixels=window[0])
            reply = await raw_request(bus, subject, encode(ask))
            assert isinstance(reply, CellError)
            assert f"vision weights {corrupt}: not a readable weight file" in reply.error, reply.error
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


def _host_process(url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "organs.host", "--url", url, "--organs", "vision", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_unloading_returns_the_workers_memory_and_sigterm_drains(nats_server: EmbeddedServer, bus: Bus,
                                                                       window) -> None:
    feed = Feed()
    await feed.listen(bus)
    proc = _host_process(nats_server.url, "--unload-after-s", "1.5", "--heartbeat-s", "0.2")
    try:
        await until(lambda: feed.beats, 30, "the host process's first heartbeat")
        await asyncio.sleep(0.5)
        base = tree_rss_bytes(proc.pid)
        subject = subjects.organ("vision", DETECT)
        reply = await bus.request(subject, VisionRequest(npc=0, deadline_s=60, pixels=window[0]), VisionReply,
                                  timeout=60)
        assert reply.npc == 0
        loaded = tree_rss_bytes(proc.pid)
        workers = descendants(proc.pid)
        assert len(workers) == 1
        await until(lambda: feed.states()[-1:] == [OrganState.UNLOADED], 30, "the idle unload")
        unloaded = tree_rss_bytes(proc.pid)
        mib = 1 << 20
        assert loaded - base > 100 * mib, (base / mib, loaded / mib)  # torch and the network, in the worker
        assert unloaded <= base + RSS_MARGIN_MIB * mib, (base / mib, loaded / mib, unloaded / mib)
        assert descendants(proc.pid) == [] and not Path(f"/proc/{workers[0]}").exists()

        ask = VisionRequest(npc=0, deadline_s=60, pixels=window[0])
        await bus.request(subject, ask, VisionReply, timeout=60)
        workers = descendants(proc.pid)
        assert len(workers) == 1
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert feed.events[-1].state == OrganState.UNLOADED and feed.events[-1].reason == "host stopping"
        assert not Path(f"/proc/{workers[0]}").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
