"""Decision trails of the in-process runtime: gate changes and their outcomes land in a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from governor.baselines import FixedGovernor
from governor.config import GovernorConfig
from governor.decisions import Decisions
from governor.inputs import GlobalContext
from governor.runtime import GovernedReflex
from nervous.lifeforce import LifeforceConfig
from nervous.messages import REGIONS, Region
from organs.trails.recorder import TrailRecorder
from organs.trails.store import open_store
from organs.trails.writer import TrailWriter
from world import GridWorld, stage_config

MATH = REGIONS.index(Region.MATH)


class MathGateGovernor(FixedGovernor):
    """Opens every NPC's math gate at the second governor tick and closes it at the fourth."""

    def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
        d = super().decide(features, context)
        d.gates[:, MATH] = 10 <= context.tick < 30
        d.gates &= d.alive[:, None]
        return d


def test_gate_changes_and_their_outcomes_are_stored(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "trails.sqlite"))
    writer = TrailWriter(store)
    recorder = TrailRecorder(writer.write_many, "run-a", outcome_ticks=5)
    world = GridWorld(stage_config(0), num_envs=2, seed=3)
    governed = GovernedReflex(GovernorConfig(cpu_budget=4.0), LifeforceConfig(), trails=recorder,
                              governor_factory=MathGateGovernor)
    rewards = np.zeros((2, world.num_npcs))
    for _ in range(45):
        final, _ = governed(world, np.zeros((2, world.num_npcs), dtype=np.int64))
        world.step(final)
        if 10 < world.ticks <= 15:  # the rewards of the 5 ticks after the gate opened at tick 10
            rewards += world.rewards
    recorder.flush()
    npcs = 2 * world.num_npcs
    assert store.counts() == (2 * npcs, 2 * npcs)  # one open and one close per NPC, each with its outcome
    opened = [r for r in store.last(n=100) if r.event.gate_open]
    assert len(opened) == npcs
    for record in opened:
        env, slot = divmod(record.event.npc, world.num_npcs)
        assert record.event.tick == 10 and record.event.region == Region.MATH
        assert record.event.kind == "gate" and set(record.event.inputs) >= {"lifeforce", "collapse_math"}
        assert record.outcome is not None and record.outcome.after_ticks == 5
        assert record.outcome.reward == pytest.approx(rewards[env, slot], abs=1e-6)
    writer.write_many([record.event for record in opened])  # a second delivery is stored once
    assert store.counts() == (2 * npcs, 2 * npcs)
    writer.close()


@pytest.mark.slow
def test_a_training_run_records_its_trails_into_the_run_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "train", "+experiment=quick", "world=stage0", "governor=heuristic",
         "trails.record=true", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trails"]["store"] == str(run / "trails.sqlite")
    with open_store(str(run / "trails.sqlite"), create=False) as store:
        assert store.counts() == (summary["trails"]["events"], summary["trails"]["outcomes"])


def test_escalations_through_the_cortex_link_are_recorded_with_situation_answer_and_outcome(
        tmp_path: Path) -> None:
    from tests.stage4_trails import record_stage4

    store = open_store(str(tmp_path / "trails.sqlite"))
    writer = TrailWriter(store)
    world, link, governed = record_stage4(TrailRecorder(writer.write_many, "run-b", outcome_ticks=10))
    escalations = store.last(n=1000, kind="escalation")
    assert len(escalations) == link.totals.escalations + link.stats.escalations > 0
    for record in escalations:
        event = record.event
        assert event.region in (Region.MATH, Region.FOOD)  # the heuristic governor's help regions
        assert json.loads(event.situation)["name"] == "report_situation"
        assert event.cortex_outcome == "planned" and json.loads(event.cortex_response)
        assert event.fallback == "" and event.latency_ms >= 0.0
        request = json.loads(event.cortex_request)  # what went to the cortex, the tools by name
        assert request["model"] == event.cortex_model == "nyx"
        assert request["tools"] == ["answer_lock", "go_to", "fetch_key_then_open", "open_door", "wait"]
        assert request["messages"][-1] == {"role": "user", "content": event.situation}
        assert request["tool_choice"] and request["messages"][0]["role"] == "system"
    assert any(r.outcome is not None for r in escalations)
    shown = governed.governed()["escalation_outcome"]  # the viewer's "last escalation (planned)"
    assert shown.shape == (world.num_envs, world.num_npcs) and set(shown.ravel().tolist()) <= {-1, 0}
    assert (shown == 0).sum() == ((governed.escalations > 0) & (shown == 0)).sum()
    writer.close()


def test_another_process_s_event_is_watched_once_and_gets_its_outcome_k_ticks_on() -> None:
    sent: list = []
    recorder = TrailRecorder(sent.extend, "run-c", outcome_ticks=3)
    world = GridWorld(stage_config(0), num_envs=1, seed=0)
    assert recorder.watch(world, 0, 1, "run-c:1:0:gate:math")
    assert not recorder.watch(world, 0, 1, "run-c:1:0:gate:math")  # republished: watched once
    earned = 0.0
    for _ in range(3):
        world.step(np.zeros((1, world.num_npcs), dtype=np.int64))
        earned += float(world.rewards[0, 1])
        recorder.tick(world)
    recorder.flush()
    [outcome] = sent
    assert (outcome.id, outcome.npc, outcome.after_ticks, outcome.tick) == ("run-c:1:0:gate:math", 1, 3, 3)
    assert outcome.reward == pytest.approx(earned) and not outcome.lock_opened
    assert recorder.watch(world, 0, 1, "run-c:1:0:gate:math")  # its outcome is out: a new watch counts


def test_events_still_waiting_at_the_end_or_on_a_new_world_get_their_outcome_cut_short() -> None:
    sent: list = []
    recorder = TrailRecorder(sent.extend, "run-d", outcome_ticks=40)
    world = GridWorld(stage_config(0), num_envs=1, seed=0)
    recorder.escalation(world, 0, 2, "math")
    earned = 0.0
    for _ in range(5):
        world.step(np.zeros((1, world.num_npcs), dtype=np.int64))
        earned += float(world.rewards[0, 2])
        recorder.tick(world)
    recorder.escalation(world, 0, 3, "food")
    recorder.flush()
    assert [type(m).__name__ for m in sent] == ["TrailEvent", "TrailEvent"]  # K = 40 ticks not yet over
    newer = GridWorld(stage_config(0), num_envs=1, seed=1)  # the next stage's world: the old one's NPCs end
    recorder.escalation(newer, 0, 2, "math")
    recorder.finish()  # the run ends
    first, second, third = (m for m in sent if type(m).__name__ == "TrailOutcome")
    assert (first.npc, first.after_ticks, first.tick) == (2, 5, 5) and first.reward == pytest.approx(earned)
    assert (second.npc, second.after_ticks) == (3, 0)
    assert (third.npc, third.after_ticks) == (2, 0) and recorder.pending == type(recorder.pending)()
