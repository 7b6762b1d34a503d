"""mode=eval with trails.record=true: its gate decisions and escalations go into the trail store beside the
checkpoint under their own run name, and the eval prints and saves each NPC's last escalations."""

from __future__ import annotations

import json

import pytest

from organs.trails.store import open_store
from train.modes import eval_mode, train_mode
from world.replay import load_replay

OVERRIDES = ("+experiment=quick", "brain.hidden=16", "ppo.num_envs=2", "world=stage4", "governor=heuristic",
             "cortex.backend=engine")


@pytest.mark.slow
def test_eval_records_trails_and_reports_each_npcs_last_escalations(compose_run, tmp_path, capsys) -> None:
    summary = train_mode(compose_run(*OVERRIDES, "total_agent_steps=512"), tmp_path / "run")
    capsys.readouterr()
    job = tmp_path / "eval-job"
    result = eval_mode(compose_run(*OVERRIDES, "mode=eval", f"checkpoint={summary['checkpoint']}",
                                   "episodes=4", "world.max_steps=150", "trails.record=true",
                                   "trails.eval_last=2", "record=true"), job)
    printed = capsys.readouterr().out
    trails = result["trails"]
    assert trails["store"] == str(tmp_path / "run" / "trails.sqlite")  # beside the checkpoint, as eval's json
    assert trails["run"] == "eval-eval-job" and trails["events"] > 0
    assert load_replay(result["replay"]).extra["trails_run"] == trails["run"]  # the viewer's panel filter
    last = trails["last_escalations"]
    escalations = result["results"]["brain"]["cortex/escalations"]
    assert escalations > 0 and 0 < len(last) <= escalations
    with open_store(trails["store"], create=False) as store:
        stored = [r for r in store.records(kind="escalation", run=trails["run"])]
    assert len(stored) == escalations
    for npc, rows in last.items():
        mine = sorted((r for r in stored if r.event.npc == int(npc)), key=lambda r: r.event.tick,
                      reverse=True)
        assert [row["id"] for row in rows] == [r.event.id for r in mine[:2]]  # the newest two, newest first
        assert all(row["cortex"] == "planned" and row["fallback"] == "" for row in rows)
    saved = json.loads((tmp_path / "run" / "eval_stage4.json").read_text())
    assert saved["trails"]["last_escalations"] == last
    assert f"last 2 escalations of each of the {len(last)} NPCs that escalated" in printed
    first = next(iter(last.values()))[0]
    assert first["id"] in printed and "python -m organs.trails query --store" in printed


def test_eval_without_trails_record_writes_no_trails(compose_run, tmp_path, capsys) -> None:
    summary = train_mode(compose_run(*OVERRIDES[:-1], "total_agent_steps=256"), tmp_path / "run")
    result = eval_mode(compose_run(*OVERRIDES[:-1], "mode=eval", f"checkpoint={summary['checkpoint']}",
                                   "episodes=1", "world.max_steps=10"), tmp_path / "job")
    assert "trails" not in result and not (tmp_path / "run" / "trails.sqlite").exists()
    assert "trails:" not in capsys.readouterr().out
