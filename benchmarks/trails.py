"""Decision-trails benchmark: ``python -m benchmarks.trails`` prints one JSON object.

One embedded nats-server and one throwaway PostgreSQL cluster (``organs.trails.pgserver``), both
owned by this script; the trail writer runs as its own process (``python -m organs.trails serve``)
with its default batching, on a SQLite file and on a PostgreSQL database in turn.

Keys:

- ``cores``;
- ``sqlite_events_per_s`` / ``postgres_events_per_s``: 20,000 events published as fast as the
  publisher goes (acked by the stream), consumed and committed; events over the seconds from the
  first publish until the last one is visible in the store, so a lower bound on the store's own rate;
- ``publish_to_commit_p99_ms``: events published at 1,000/s for 4 s; per event, from its ``at``
  (set just before publishing) until a reader polling the store every 5 ms first sees it, commit
  included; the worse of the two stores;
- ``lost_after_writer_kill9`` / ``duplicated_after_writer_kill9``: 10,000 events paced over about
  4 s, the writer ``kill -9``ed at half of them and restarted; acked events missing from the store,
  and rows beyond one per id, summed over both stores;
- ``lost_after_broker_restart``: the same with the nats-server killed at half and restarted 1 s later;
- ``sft_examples_per_s``: fine-tuning examples written per second by ``organs.trails.export`` (read
  from SQLite, every example validated and its boundary label checked against the encoder) from 5,000
  stage-4 escalations (32x32 seen maps after 60 ticks of wandering, each with a plan and a paid-off
  outcome, so each makes a boundary and a cortex example).

- ``live_sink_handoff_us_per_event``: what a live tick (the world server's, the governor's) spends per
  trail message handing it to ``BusTrailSink``, 100 messages a tick; the worse store's run;
- ``live_sink_events_per_s``: messages/s the sink's own task got acknowledged by the stream meanwhile
  (the writer consuming them at the same time); the worse store's run.

Targets (issue 12): >= 5,000 events/s into each store, p99 <= 250 ms, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import CollapseEvent, Heartbeat, Region, TrailEvent, TrailKind, TrailOutcome
from nervous.server import EmbeddedServer
from nervous.trail_stream import TrailPublisher, stream_name, trail_id
from organs.boundary import DeterministicEncoder, encode_call
from organs.boundary.numbers import encode_numbers
from organs.boundary.world_numbers import SeenMaps, npc_numbers
from organs.trails.bus_sink import BusTrailSink
from organs.trails.export import export
from organs.trails.pgserver import EmbeddedPostgres
from organs.trails.store import TrailStoreError, is_dsn, open_store
from world import GridWorld, stage_config

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_EVENTS = 20_000
FAULT_EVENTS = 10_000
SFT_EVENTS = 5_000
LATENCY_RATE, LATENCY_S = 1_000, 4.0


def event(run: str, i: int) -> TrailEvent:
    """The i-th event of a run: every third an escalation with a situation, the others gate decisions."""
    escalated = i % 3 == 0
    kind = TrailKind.ESCALATION if escalated else TrailKind.GATE
    situation = '{"name": "report_situation", "arguments": {"tick": %d, "npc": %d}}' % (i, i % 16)  # noqa: UP031
    return TrailEvent(
        id=trail_id(run, i % 16, i, kind, "math"), run=run, env="dev", npc=i % 16, tick=i, kind=kind,
        region=Region.MATH, gate_open=escalated or i % 2 == 0,
        inputs={"collapse": 0.8, "lifeforce": 0.5, "priority": 3.0},
        situation=situation if escalated else "", cortex_outcome="planned" if escalated else "",
        latency_ms=4.0 if escalated else 0.0, at=time.time(),
    )


class Writer:
    """The trail writer as a child process, restartable."""

    def __init__(self, url: str, location: str, log: Path) -> None:
        where = ["--dsn", location] if is_dsn(location) else ["--store", location]
        self.argv = [sys.executable, "-m", "organs.trails", "serve", "--url", url, *where]
        self.argv += ["--ack-wait-s", "2"]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the writer."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                         stdout=out, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        """kill -9 the writer and reap it."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stored_rows(location: str) -> list[str]:
    """The event id of every row in the store (empty while it does not exist)."""
    try:
        with open_store(location, create=False) as store:
            return [i for i, _ in store.event_ids()]
    except TrailStoreError:
        return []


def stored(location: str) -> set[str]:
    """The event ids in the store."""
    return set(stored_rows(location))


async def wait_for_count(location: str, n: int, timeout: float = 120.0, step: float = 0.02) -> float:
    """Wall time (time.time) at which the store first held n events; TimeoutError after timeout.

    One connection, counting rows every step seconds: reading every id each time (as this did before)
    took a core of its own at 20,000 rows and slowed the writer it was timing.
    """
    deadline = time.monotonic() + timeout
    store = None
    try:
        while True:
            if store is None:
                with contextlib.suppress(TrailStoreError):
                    store = open_store(location, create=False)
            if store is not None and store.counts()[0] >= n:
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{location}: fewer than {n} events after {timeout:g} s")
            await asyncio.sleep(step)
    finally:
        if store is not None:
            store.close()


async def until_drained(bus: Bus, timeout: float = 120.0) -> None:
    """Wait until the trails stream is empty (every event acked by the writer)."""
    deadline = time.monotonic() + timeout
    while (await bus.js.stream_info(stream_name())).state.messages > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("trails stream not drained")
        await asyncio.sleep(0.05)


async def throughput(bus: Bus, location: str, run: str) -> float:
    """Events/s from the first publish until the last event is in the store."""
    publisher = TrailPublisher(bus, window=512)
    events = [event(run, i) for i in range(THROUGHPUT_EVENTS)]
    start = time.time()
    for k in range(0, len(events), 2000):
        batch = events[k:k + 2000]
        for e in batch:
            e.at = time.time()
        results = await publisher.publish_many(batch)
        if any(isinstance(r, Exception) for r in results):
            raise RuntimeError(f"{run}: a publish failed")
    done = await wait_for_count(location, THROUGHPUT_EVENTS, step=0.01)
    return THROUGHPUT_EVENTS / (done - start)


async def latency(bus: Bus, location: str, run: str) -> float:
    """p99 ms from an event's publish until a reader polling every 5 ms sees it in the store."""
    publisher = TrailPublisher(bus)
    seen: dict[str, float] = {}
    sent: dict[str, float] = {}
    done = asyncio.Event()

    async def reader() -> None:
        with open_store(location, create=False) as store:
            since = max((t for _, t in store.event_ids()), default=0.0)  # the rows of earlier runs
            while not done.is_set() or not seen.keys() >= sent.keys():
                now = time.time()
                for i, stored_at in store.event_ids(since):
                    seen.setdefault(i, now)
                    since = max(since, stored_at)
                await asyncio.sleep(0.005)

    watching = asyncio.create_task(reader())
    per_tick = LATENCY_RATE // 100
    start = time.monotonic()
    for tick in range(int(LATENCY_S * 100)):
        batch = [event(run, tick * per_tick + j) for j in range(per_tick)]
        for e in batch:
            sent[e.id] = e.at = time.time()
        await publisher.publish_many(batch)
        await asyncio.sleep(max(0.0, start + (tick + 1) / 100 - time.monotonic()))
    done.set()
    await asyncio.wait_for(watching, 60)
    return float(np.percentile([(seen[i] - sent[i]) * 1e3 for i in sent], 99))


async def paced(bus: Bus, run: str, acked: set[str], publisher: TrailPublisher) -> None:
    """FAULT_EVENTS events over about 4 s, the acked ids collected as they come."""
    for k in range(0, FAULT_EVENTS, 250):
        batch = [event(run, i) for i in range(k, k + 250)]
        results = await publisher.publish_many(batch)
        acked.update(e.id for e, r in zip(batch, results, strict=True) if not isinstance(r, Exception))
        await asyncio.sleep(0.1)


async def writer_kill9(bus: Bus, writer: Writer, location: str, run: str) -> tuple[int, int]:
    """(lost, duplicated) after a kill -9 of the writer at half the stream and its restart."""
    acked: set[str] = set()
    publishing = asyncio.create_task(paced(bus, run, acked, TrailPublisher(bus)))
    while len(acked) < FAULT_EVENTS // 2:
        await asyncio.sleep(0.01)
    writer.kill9()
    writer.start()
    await publishing
    await until_drained(bus)
    await asyncio.sleep(3.0)  # beyond ack_wait_s: redeliveries of what the dead writer held are in
    rows = [i for i in stored_rows(location) if i.startswith(run + ":")]
    return len(acked - set(rows)), len(rows) - len(set(rows))


async def broker_restart(server: EmbeddedServer, bus: Bus, location: str, run: str) -> int:
    """Acked events lost after the nats-server is killed at half the stream and restarted 1 s later."""
    acked: set[str] = set()
    publisher = TrailPublisher(bus, timeout_s=1.0, deadline_s=60.0)
    publishing = asyncio.create_task(paced(bus, run, acked, publisher))
    while len(acked) < FAULT_EVENTS // 2:
        await asyncio.sleep(0.01)
    server.kill()
    await asyncio.sleep(1.0)
    await asyncio.to_thread(server.start)
    await publishing
    await until_drained(bus)
    await asyncio.sleep(3.0)
    ids = {i for i in stored(location) if i.startswith(run + ":")}
    return len(acked - ids)


async def one_store(server: EmbeddedServer, location: str, name: str, folder: Path) -> dict[str, Any]:
    """Every measurement against one store, with one writer process (restarted where a fault kills it)."""
    writer = Writer(server.url, location, folder / f"writer-{name}.log")
    writer.start()
    try:
        async with Bus(BusConfig(url=server.url, name=f"bench-{name}")) as bus:
            beats: list[Heartbeat] = []
            await bus.subscribe(subjects.trails_heartbeat(), Heartbeat, lambda msg, raw: beats.append(msg))
            await TrailPublisher(bus).ensure_stream()
            while not beats:  # the writer is up: its store open, its consumer bound
                await asyncio.sleep(0.01)
            rate = await throughput(bus, location, f"{name}-rate")
            p99 = await latency(bus, location, f"{name}-latency")
            lost_kill, dup_kill = await writer_kill9(bus, writer, location, f"{name}-kill")
            lost_broker = await broker_restart(server, bus, location, f"{name}-broker")
            handoff_us, sink_rate = await live_sink(bus, f"{name}-live")
    finally:
        writer.stop()
    return dict(rate=rate, p99=p99, lost_kill=lost_kill, dup_kill=dup_kill, lost_broker=lost_broker,
                handoff_us=handoff_us, sink_rate=sink_rate)


async def live_sink(bus: Bus, run: str) -> tuple[float, float]:
    """(us per event a tick spends handing events to the live sink, events/s the sink gets acked): the
    world server's path, 100 events a tick for THROUGHPUT_EVENTS events, the broker up."""
    sink = BusTrailSink(bus)
    sink.start()
    events = [event(run, i) for i in range(THROUGHPUT_EVENTS)]
    handed = 0.0
    start = time.perf_counter()
    for k in range(0, len(events), 100):
        t0 = time.perf_counter()
        sink(events[k:k + 100])
        handed += time.perf_counter() - t0
        await asyncio.sleep(0)  # the tick's await: the sink's task runs between ticks
    await sink.close(timeout_s=120.0)
    elapsed = time.perf_counter() - start
    if sink.failed or sink.dropped:
        raise RuntimeError(f"live sink: {sink.stats()}")
    return 1e6 * handed / len(events), len(events) / elapsed


def stage4_escalations(run: str, n: int) -> list[TrailEvent | TrailOutcome]:
    """n escalations of stage-4 NPCs after 60 ticks of random moves, with numbers, situation, a plan and a
    paid-off outcome each (the 16 NPCs' numbers repeated over ticks)."""
    world = GridWorld(stage_config(4), num_envs=1, seed=0)
    seen = SeenMaps(world)
    rng = np.random.default_rng(0)
    for _ in range(60):
        world.step(rng.integers(0, 5, size=(1, world.num_npcs)))
        seen.update(world)
    encoder, messages = DeterministicEncoder(), []
    alive = [int(i) for i in np.flatnonzero(world.alive[0])]
    for i in range(n):
        npc = alive[i % len(alive)]
        event = CollapseEvent(npc=npc, region=Region.MATH, confidence=0.9, cells=["vault", "key"], tick=i)
        numbers = npc_numbers(world, 0, seen, event)
        numbers.tick = i
        situation = encoder.encode(numbers)
        event_id = trail_id(run, npc, i, TrailKind.ESCALATION, "math")
        plan = '{"name":"go_to","arguments":{"x":%d,"y":%d,"purpose":"explore"}}' % (numbers.x, numbers.y)  # noqa: UP031
        messages.append(TrailEvent(
            id=event_id, run=run, env="dev", npc=npc, tick=i, kind=TrailKind.ESCALATION, region=Region.MATH,
            gate_open=True, situation=encode_call(situation).decode(), cortex_response=plan,
            cortex_outcome="planned", latency_ms=1.0, at=time.time(), numbers=encode_numbers(numbers)))
        messages.append(TrailOutcome(id=event_id, npc=npc, tick=i + 40, after_ticks=40, reward=0.5))
    return messages


def sft_rate(folder: Path) -> float:
    """Fine-tuning examples written per second from a SQLite store of SFT_EVENTS escalations."""
    with open_store(str(folder / "sft.sqlite")) as store:
        messages = stage4_escalations("sft", SFT_EVENTS)
        for k in range(0, len(messages), 2000):
            store.insert(messages[k:k + 2000])
        started = time.perf_counter()
        counts = export(store, folder / "sft.jsonl")
        elapsed = time.perf_counter() - started
    if counts.examples != 2 * SFT_EVENTS:
        raise RuntimeError(f"sft export: {counts.summary('sft.jsonl')}, expected {2 * SFT_EVENTS}")
    return counts.examples / elapsed


async def main() -> dict[str, Any]:
    """Run the benchmark on both stores."""
    with tempfile.TemporaryDirectory(prefix="nimmerverse-trails-bench-") as tmp, EmbeddedPostgres() as pg:
        folder = Path(tmp)
        results = {}
        stores = (("sqlite", str(folder / "trails.sqlite")), ("postgres", pg.create_database("bench")))
        for name, location in stores:
            with EmbeddedServer(folder / f"nats-{name}") as server:
                results[name] = await one_store(server, location, name, folder)
        sft = sft_rate(folder)
    sq, pq = results["sqlite"], results["postgres"]
    return {
        "cores": os.cpu_count() or 1,
        "sqlite_events_per_s": round(sq["rate"]),
        "postgres_events_per_s": round(pq["rate"]),
        "publish_to_commit_p99_ms": round(max(sq["p99"], pq["p99"]), 1),
        "lost_after_writer_kill9": sq["lost_kill"] + pq["lost_kill"],
        "duplicated_after_writer_kill9": sq["dup_kill"] + pq["dup_kill"],
        "lost_after_broker_restart": sq["lost_broker"] + pq["lost_broker"],
        "sft_examples_per_s": round(sft),
        "live_sink_handoff_us_per_event": round(max(sq["handoff_us"], pq["handoff_us"]), 3),
        "live_sink_events_per_s": round(min(sq["sink_rate"], pq["sink_rate"])),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
