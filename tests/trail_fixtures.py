"""Helpers for the trail writer's tests: events, a writer process, a paced publisher, store polling."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from nervous.bus import Bus
from nervous.messages import Region, TrailEvent, TrailKind
from nervous.trail_stream import TrailPublisher, trail_id
from organs.trails.store import TrailStoreError, is_dsn, open_store

ROOT = Path(__file__).resolve().parents[1]


def trail_event(i: int, run: str = "t") -> TrailEvent:
    """The i-th event of a test stream (escalations with JSON, gate decisions without)."""
    escalated = i % 3 == 0
    kind = TrailKind.ESCALATION if escalated else TrailKind.GATE
    return TrailEvent(
        id=trail_id(run, i % 16, i, kind, "math"), run=run, env="dev", npc=i % 16, tick=i, kind=kind,
        region=Region.MATH, gate_open=escalated or i % 2 == 0, inputs={"collapse": 0.5, "priority": 3.0},
        situation='{"name": "report_situation", "arguments": {"tick": %d}}' % i if escalated else "",  # noqa: UP031
        cortex_outcome="planned" if escalated else "", latency_ms=3.5 if escalated else 0.0, at=time.time(),
    )


def store_args(location: str) -> list[str]:
    """The serve command's store arguments for a location."""
    return ["--dsn", location] if is_dsn(location) else ["--store", location]


def start_writer(url: str, location: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``python -m organs.trails serve`` as a child process, its output appended to log."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "organs.trails", "serve", "--url", url, *store_args(location), *extra],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT,
        )


def stored_ids(location: str) -> list[str]:
    """Every event id in the store (empty while it does not exist yet)."""
    try:
        with open_store(location, create=False) as store:
            return [i for i, _ in store.event_ids()]
    except TrailStoreError:
        return []


async def until(check, timeout: float, what: str, step: float = 0.05) -> None:  # noqa: ANN001
    """Wait until check() holds; AssertionError naming what did not happen."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(step)


async def publish_paced(bus: Bus, n: int, acked: set[str], chunk: int = 250, pause_s: float = 0.03,
                        deadline_s: float = 30.0) -> TrailPublisher:
    """Publish n events in paced chunks, adding the ids the stream acknowledged to acked as they come."""
    publisher = TrailPublisher(bus, timeout_s=1.0, deadline_s=deadline_s, window=64)
    for start in range(0, n, chunk):
        events = [trail_event(i) for i in range(start, min(start + chunk, n))]
        results = await publisher.publish_many(events)
        acked.update(e.id for e, r in zip(events, results, strict=True) if not isinstance(r, Exception))
        await asyncio.sleep(pause_s)
    return publisher
