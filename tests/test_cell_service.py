"""Cells as bus services: answers, waves, heartbeats, fuzzing and a clean SIGTERM exit."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest
from nats.errors import MaxPayloadError

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.cells.service import CellService, CellServiceConfig
from nervous.messages import CellError, CellRequest, Heartbeat, Region, Wave, WaveBatch, decode, encode
from nervous.server import EmbeddedServer
from tests.nervous_senses import senses
from world.tiles import Proprio, Tile

ROOT = Path(__file__).resolve().parents[1]


def math_request(m: int = 4, tick: int = 1) -> CellRequest:
    views, proprio = senses(m)
    proprio[0, Proprio.FACING_LOCK] = 1.0
    proprio[0, Proprio.LOCK_A] = 0.3
    proprio[0, Proprio.LOCK_B] = 0.4
    proprio[0, Proprio.LOCK_SHOWN] = 0.07
    return CellRequest(
        tick=tick,
        npc=np.arange(100, 100 + m, dtype="<i4").tobytes(),
        side=views.shape[1],
        views=views.tobytes(),
        proprio=proprio.tobytes(),
    )


async def raw_request(bus: Bus, data: bytes) -> WaveBatch | CellError:
    reply = await asyncio.wait_for(bus.nc.request(subjects.cell_request("math"), data, timeout=2), 3)
    return decode(reply.data, WaveBatch | CellError, "reply")


async def test_cell_service_answers_publishes_waves_and_heartbeats(bus: Bus) -> None:
    waves: list[WaveBatch] = []
    beats: list[Heartbeat] = []

    async def on_waves(msg: WaveBatch, raw) -> None:
        waves.append(msg)

    async def on_beat(msg: Heartbeat, raw) -> None:
        beats.append(msg)

    await bus.subscribe(subjects.cell_wave("math"), WaveBatch, on_waves)
    await bus.subscribe(subjects.cell_heartbeat("math"), Heartbeat, on_beat)
    service = CellService(CellServiceConfig(cell="math"), bus)
    await service.start()
    batch = await asyncio.wait_for(bus.request(subjects.cell_request("math"), math_request(), WaveBatch), 3)
    [wave] = batch.waves()
    assert (wave.cell, wave.npc, wave.region, wave.value, wave.tick) == ("math", 100, Region.MATH, 7, 1)
    assert wave.confidence == pytest.approx(0.95)
    await asyncio.sleep(0.05)
    assert waves and waves[0] == batch
    assert beats and beats[0].service == "math"
    await service.heartbeat()
    await asyncio.sleep(0.05)
    assert beats[-1].requests == 1 and beats[-1].errors == 0


async def test_fuzzed_requests_get_error_replies_and_the_service_survives(bus: Bus) -> None:
    service = CellService(CellServiceConfig(cell="math", max_request_bytes=256 << 10), bus)
    await service.start()
    rng = np.random.default_rng(7)
    good = encode(math_request())
    row = msgspec.msgpack.decode(good)
    bad_payloads = [rng.bytes(int(n)) for n in rng.integers(0, 400, size=40)]
    bad_payloads += [
        b"",
        b'{"tick": 1, "views": "AAAA"}',  # JSON, not msgpack
        b"\xff\xfe\xfd",  # invalid msgpack
        encode(Wave(cell="x", npc=1, region=Region.MATH, confidence=0.5, value=0.0, tick=1)),  # wrong type
        msgspec.msgpack.encode([row[0], "one", *row[2:]]),  # tick as a string
        msgspec.msgpack.encode([*row[:4], row[4][:-1], *row[5:]]),  # views too short
        encode(
            CellRequest(tick=1, npc=bytes(8), side=3, views=bytes(18), proprio=bytes(16))
        ),  # proprio narrow
        encode(
            CellRequest(tick=1, npc=bytes(4), side=3, views=bytes(9), proprio=bytes(300 << 10))
        ),  # too big
    ]
    for data in bad_payloads:
        reply = await raw_request(bus, data)
        if isinstance(reply, WaveBatch):  # random bytes that happen to be a valid request are fine
            continue
        assert reply.error and "\n" not in reply.error
    assert service.errors >= len(bad_payloads) - 2
    with pytest.raises(MaxPayloadError):  # beyond the server's limit: refused before it is sent
        await bus.nc.publish(subjects.cell_request("math"), bytes(2 << 20))
    reply = await raw_request(bus, good)
    assert isinstance(reply, WaveBatch) and len(reply) == 1
    with pytest.raises(BusError, match="proprio"):
        await asyncio.wait_for(
            bus.request(
                subjects.cell_request("math"),
                CellRequest(tick=1, npc=bytes(8), side=3, views=bytes(18), proprio=bytes(16)),
                WaveBatch,
            ),
            3,
        )


async def test_request_without_reply_inbox_is_answered_on_the_response_subject(bus: Bus) -> None:
    service = CellService(CellServiceConfig(cell="math"), bus)
    await service.start()
    got: list[WaveBatch] = []

    async def on_response(msg: WaveBatch, raw) -> None:
        got.append(msg)

    await bus.subscribe(subjects.cell_response("math"), WaveBatch, on_response)
    await bus.publish(subjects.cell_request("math"), math_request(tick=3))
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    assert got and got[0].tick == 3


def test_proximity_cell_service_process_drains_and_exits_zero_on_sigterm(nats_server: EmbeddedServer) -> None:
    env = {**os.environ, "NIMMERVERSE_ENV": "staging", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nervous.cells.proximity", "--url", nats_server.url, "--heartbeat-s", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        batch = asyncio.run(asyncio.wait_for(ask_proximity(nats_server.url), 20))
        assert [(w.npc, w.value) for w in batch.waves()] == [(0, 1.0)]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out.decode()
        assert b"Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def ask_proximity(url: str) -> WaveBatch:
    """Wait for the staging proximity service's heartbeat, send a bad then a good request."""
    os.environ["NIMMERVERSE_ENV"] = "staging"
    try:
        async with Bus(BusConfig(url=url, name="probe")) as bus:
            ready = asyncio.Event()

            async def on_beat(msg: Heartbeat, raw) -> None:
                ready.set()

            await bus.subscribe(subjects.cell_heartbeat("proximity"), Heartbeat, on_beat)
            await ready.wait()
            reply = await bus.nc.request(subjects.cell_request("proximity"), b"garbage", timeout=2)
            assert isinstance(decode(reply.data, CellError, "reply"), CellError)
            views, proprio = senses(2)
            views[0, 2, 3] = Tile.WALL
            req = CellRequest(
                tick=1,
                npc=np.arange(2, dtype="<i4").tobytes(),
                side=7,
                views=views.tobytes(),
                proprio=proprio.tobytes(),
            )
            return await bus.request(subjects.cell_request("proximity"), req, WaveBatch, timeout=2)
    finally:
        os.environ.pop("NIMMERVERSE_ENV", None)
