"""The live organism with runtime.organism.trails: a supervised trail writer that stores and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from agents.forkserver import process_alive as alive
from agents.organism import Organism
from agents.supervisor import State
from nervous.trail_stream import TrailPublisher
from organs.trails.store import TrailStoreError, open_store
from tests.live import organism_config, until
from tests.trail_fixtures import trail_event

pytestmark = pytest.mark.slow


def count(location: Path) -> int:
    """Events in the store (0 while it does not exist)."""
    try:
        with open_store(str(location), create=False) as store:
            return store.counts()[0]
    except TrailStoreError:
        return 0


async def test_the_trail_writer_runs_supervised_and_comes_back_after_kill9(tmp_path: Path) -> None:
    config = organism_config(tmp_path, 1)
    config.trails = True
    async with Organism(config, trails={"ack_wait_s": 2.0, "batch_size": 64}) as org:
        sup = org.supervisor
        assert sup is not None
        bus = await org.connect_as("governor")  # the test decides as the governor would
        writer = sup.children["trails"]
        assert writer.spec.target == "organs.trails.service:child_main"
        store = Path(config.run_dir) / "trails.sqlite"
        running = asyncio.create_task(org.run(0))
        try:
            up = lambda: writer.heard_since_start and writer.state == State.RUNNING  # noqa: E731
            await until(up, 60, "the writer up")
            publisher = TrailPublisher(bus)
            await publisher.ensure_stream()
            await publisher.publish_many([trail_event(i, run="org") for i in range(100)])
            await until(lambda: count(store) == 100, 30, "100 events stored")
            pid = writer.handle.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
            await publisher.publish_many([trail_event(i, run="org") for i in range(100, 200)])
            await until(lambda: writer.pids[-1] != pid and writer.heard_since_start, 60, "the writer back")
            await until(lambda: count(store) == 200, 30, "the events sent while it was dead stored")
        finally:
            org.stop.set()
            summary = await asyncio.wait_for(running, 30)
    part = summary["parts"]["trails"]
    assert part["restarts"] == 1 and part["state"] == "STOPPED"
    assert not alive(pid)


async def test_the_live_organism_records_gate_decisions_and_escalations_once_with_their_outcomes(
    tmp_path: Path,
) -> None:
    """Stage 4 with the heuristic governor and the cortex engine: the governor publishes its gate
    decisions, the world server its escalations and every event's outcome; the writer stores them."""
    from collections import Counter

    from governor.config import GovernorConfig
    from nervous.messages import TrailKind
    from organs.config import CortexConfig
    from organs.link import CortexLink

    config = organism_config(tmp_path, 4)
    config.stage, config.trails, config.governor = 4, True, GovernorConfig(kind="heuristic")
    link = CortexLink(CortexConfig(backend="engine", outcome_ticks=20))
    k = 20
    try:
        async with Organism(config, trails={"outcome_ticks": k}, escalator=link) as org:
            summary = await org.run(15)
    finally:
        link.close()
    with open_store(str(Path(config.run_dir) / "trails.sqlite"), create=False) as store:
        records = list(store.records(run=config.run))
        assert store.counts()[0] == len(records)
    kinds = Counter(r.event.kind for r in records)
    assert kinds[TrailKind.GATE] > 0 and kinds[TrailKind.ESCALATION] > 0, kinds
    # each once: every escalation the world server counted is one stored event, no more
    assert kinds[TrailKind.ESCALATION] == summary["escalations"], (kinds, summary["escalations"])
    sent = summary["trails"]
    assert sent["failed"] == 0 and sent["dropped"] == 0 and sent["published"] == sent["queued"], sent
    escalations = [r for r in records if r.event.kind is TrailKind.ESCALATION]
    assert all(r.event.situation and r.event.cortex_request and r.event.cortex_outcome for r in escalations)
    gates = [r for r in records if r.event.kind is TrailKind.GATE]
    assert all(r.event.inputs and "lifeforce" in r.event.inputs for r in gates)
    # outcomes: every event old enough at the end has one, K ticks on (a gate's from when the world heard it)
    old = [r for r in records if r.event.tick <= summary["world_ticks"] - k - 60]
    assert old and all(r.outcome is not None and r.outcome.after_ticks == k for r in old), [
        r.event.id for r in old if r.outcome is None][:5]
    assert any(r.event.kind is TrailKind.GATE for r in old) and any(
        r.event.kind is TrailKind.ESCALATION for r in old)
