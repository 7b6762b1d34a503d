"""Bus benchmark: ``python -m benchmarks.bus`` prints one JSON object measured on an embedded server.

Keys: cores; publish_msgs_per_s (typed Wave pub/sub through ``nervous.bus``, encode and validated
decode included); raw_natspy_publish_msgs_per_s (the same bytes through bare nats-py, same run);
wave_fanin_waves_per_s (six cell connections publish one WaveBatch per tick into one subscriber);
request_reply_p50_us / _p99_us (typed request/reply, responder on another connection);
jetstream_acked_msgs_per_s (pipelined, every publish acked, with Nats-Msg-Id);
cell_service_p99_us (the math cell as its own process, 16 NPCs per request). Throughputs are the
best of a few interleaved rounds, since other work shares the cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nats
import numpy as np

from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import CellRequest, Command, Heartbeat, Region, Wave, WaveBatch, encode
from world.tiles import PROPRIO_SIZE

ROOT = Path(__file__).resolve().parents[1]
PUBSUB_MSGS = 100_000
ROUNDS = 3
WAVE = Wave(cell="math", npc=3, region=Region.MATH, confidence=0.6, value=12.0, tick=5)


async def raw_pubsub(url: str, n: int) -> float:
    """Messages/s of bare nats-py publish -> subscribe of pre-encoded bytes."""
    pub, sub = await nats.connect(url), await nats.connect(url)
    payload, subject = encode(WAVE), subjects.cell_wave("rawbench")
    done, count = asyncio.Event(), 0

    async def on_msg(msg) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    await sub.subscribe(subject, cb=on_msg)
    await sub.flush()
    start = time.perf_counter()
    for _ in range(n):
        await pub.publish(subject, payload)
    await asyncio.wait_for(done.wait(), 60)
    rate = n / (time.perf_counter() - start)
    await pub.close()
    await sub.close()
    return rate


async def bus_pubsub(url: str, n: int) -> float:
    """Messages/s of typed Wave publish -> decoding subscribe through nervous.bus."""
    async with (
        Bus(BusConfig(url=url, name="bench-pub")) as pub,
        Bus(BusConfig(url=url, name="bench-sub")) as sub,
    ):
        subject = subjects.cell_wave("busbench")
        done, count = asyncio.Event(), 0

        def on_wave(msg: Wave, raw) -> None:  # a plain function: no extra coroutine per message
            nonlocal count
            count += 1
            if count == n:
                done.set()

        await sub.subscribe(subject, Wave, on_wave)
        await sub.flush()
        start = time.perf_counter()
        for _ in range(n):
            await pub.publish(subject, WAVE)
        await asyncio.wait_for(done.wait(), 60)
        return n / (time.perf_counter() - start)


async def wave_fanin(url: str, cells: int = 6, npcs: int = 512, ticks: int = 200) -> float:
    """Waves/s into one subscriber: each cell sends one WaveBatch of all its NPCs per tick."""
    rng = np.random.default_rng(0)
    total = cells * npcs * ticks
    async with Bus(BusConfig(url=url, name="fanin-sub")) as sub:
        done, count = asyncio.Event(), 0

        def on_batch(msg: WaveBatch, raw) -> None:
            nonlocal count
            count += len(msg)
            if count >= total:
                done.set()

        await sub.subscribe(subjects.all_cell_waves_pattern(), WaveBatch, on_batch)
        await sub.flush()
        pubs = [await Bus(BusConfig(url=url, name=f"fanin-{i}")).connect() for i in range(cells)]
        names = [f"cell{i}" for i in range(cells)]
        conf = rng.random(npcs, dtype=np.float32)
        value = rng.normal(size=npcs).astype(np.float32)
        ids, zeros = np.arange(npcs), np.zeros(npcs, dtype=np.uint8)
        start = time.perf_counter()
        for tick in range(ticks):
            for i, pub in enumerate(pubs):
                batch = WaveBatch.from_arrays(tick, [names[i]], [Region.FOOD], ids, zeros, conf, value)
                await pub.publish(subjects.cell_wave(names[i]), batch)
        await asyncio.wait_for(done.wait(), 60)
        rate = total / (time.perf_counter() - start)
        for pub in pubs:
            await pub.close()
    return rate


async def request_reply(url: str, n: int = 2000) -> tuple[float, float]:
    """(p50, p99) microseconds of typed request/reply to a responder on another connection."""
    async with (
        Bus(BusConfig(url=url, name="rr-server")) as server,
        Bus(BusConfig(url=url, name="rr-client")) as cli,
    ):
        subject = subjects.cortex_request()

        async def echo(msg: Command, raw) -> None:
            await raw.respond(raw.data)

        await server.subscribe(subject, Command, echo)
        await server.flush()
        cmd = Command(npc=1, tick=1, tick_rate=10)
        lat = []
        for _ in range(n):
            t = time.perf_counter()
            await cli.request(subject, cmd, Command, timeout=2)
            lat.append(time.perf_counter() - t)
    us = np.array(lat[100:]) * 1e6
    return float(np.percentile(us, 50)), float(np.percentile(us, 99))


async def jetstream_acked(bus: Bus, n: int = 20_000, window: int = 1024) -> float:
    """Acked JetStream publishes/s with Nats-Msg-Id, `window` in flight."""
    await bus.ensure_stream()
    subject = subjects.cell_wave("jsbench")
    start = time.perf_counter()
    for base in range(0, n, window):
        acks = await asyncio.gather(
            *(bus.js_publish(subject, WAVE, f"bench-{i}") for i in range(base, min(base + window, n)))
        )
        assert not any(a.duplicate for a in acks)
    return n / (time.perf_counter() - start)


async def cell_service(url: str, n: int = 2000, npcs: int = 16) -> float:
    """p99 microseconds of requests to the math cell running as its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nervous.cells.math", "--url", url, "--heartbeat-s", "0.2"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with Bus(BusConfig(url=url, name="cell-client")) as bus:
            ready = asyncio.Event()

            async def on_beat(msg: Heartbeat, raw) -> None:
                ready.set()

            await bus.subscribe(subjects.cell_heartbeat("math"), Heartbeat, on_beat)
            await asyncio.wait_for(ready.wait(), 30)
            views = np.zeros((npcs, 9, 9), dtype=np.uint8)
            proprio = np.random.default_rng(0).random((npcs, PROPRIO_SIZE), dtype=np.float32)
            req = CellRequest(
                tick=1,
                npc=np.arange(npcs, dtype="<i4").tobytes(),
                side=9,
                views=views.tobytes(),
                proprio=proprio.tobytes(),
            )
            subject, lat = subjects.cell_request("math"), []
            for _ in range(200):  # warm-up: the service's first calls import and allocate lazily
                await bus.request(subject, req, WaveBatch, timeout=2)
            for _ in range(n):
                t = time.perf_counter()
                await bus.request(subject, req, WaveBatch, timeout=2)
                lat.append(time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(10)
    return float(np.percentile(np.array(lat[100:]) * 1e6, 99))


async def main() -> dict[str, float | int]:
    """Run every measurement against one embedded server."""
    async with Bus(BusConfig(name="bench")) as bus:
        url = bus.url
        raw, ours = [], []
        for _ in range(ROUNDS):  # interleaved so both see the same machine load
            raw.append(await raw_pubsub(url, PUBSUB_MSGS))
            ours.append(await bus_pubsub(url, PUBSUB_MSGS))
        fanin = max([await wave_fanin(url) for _ in range(2)])
        p50, p99 = await request_reply(url)
        js = await jetstream_acked(bus)
        cell_p99 = await cell_service(url)
    return {
        "cores": os.cpu_count() or 1,
        "publish_msgs_per_s": round(max(ours)),
        "wave_fanin_waves_per_s": round(fanin),
        "request_reply_p50_us": round(p50, 1),
        "request_reply_p99_us": round(p99, 1),
        "jetstream_acked_msgs_per_s": round(js),
        "cell_service_p99_us": round(cell_p99, 1),
        "raw_natspy_publish_msgs_per_s": round(max(raw)),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
