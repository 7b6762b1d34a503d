"""`python -m train +experiment=governor` and governor choices as a user runs them; bad input: one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

QUIET = ["logger.mode=disabled", "logger.progress=false"]
#: A governor run in seconds: few envs, short rollouts, a small comparison.
TINY = ["+experiment=governor", "ppo.num_envs=4", "governor.rollout_ticks=4", "total_agent_steps=1600",
        "episodes=8", "checkpoint_every=1", *QUIET]


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def governor_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a tiny governor training run."""
    tmp = tmp_path_factory.mktemp("gov")
    result = run_train(*TINY, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run"


@pytest.mark.slow
def test_a_governor_run_writes_its_network_comparison_and_pareto_picture(governor_run: Path) -> None:
    summary = json.loads((governor_run / "summary.json").read_text())
    assert summary["updates"] >= 2 and summary["driven_by"] == "the heuristic script"
    saved = torch.load(governor_run / "governor.pt", map_location="cpu", weights_only=False)
    assert summary["calls_multiplier"] == saved["calls_multiplier"]  # where the constraint ended
    rows = json.loads((governor_run / "governor_compare.json").read_text())
    assert set(rows) == {"fixed", "heuristic", "budget", "learned", "budget_at_learned_calls"}
    for row in rows.values():
        assert 0.0 <= row["success"] <= 1.0 and row["brain_calls_per_npc_s"] > 0
    assert rows["fixed"]["brain_calls_per_npc_s"] == pytest.approx(20.0, rel=0.01)
    assert (governor_run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = [json.loads(line) for line in (governor_run / "metrics.jsonl").read_text().splitlines()]
    assert any("governor/policy_loss" in row for row in metrics)
    assert "governor/brain_calls_per_npc_s" in metrics[-1]


@pytest.mark.slow
def test_the_trained_governor_deploys_in_training_and_eval(governor_run: Path, tmp_path: Path) -> None:
    network = governor_run / "governor.pt"
    result = run_train("+experiment=quick", "world=stage0", "governor=learned",
                       f"governor.checkpoint={network}", f"hydra.run.dir={tmp_path / 'train'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert any(row["governor/brain_calls_per_npc_s"] > 0 for row in rows)  # 8-tick updates: 1 Hz may skip one
    assert all(1.0 <= row["governor/mean_tick_rate_hz"] <= 20.0 for row in rows)


@pytest.mark.slow
def test_resume_continues_the_governor_run(governor_run: Path, tmp_path: Path) -> None:
    before = json.loads((governor_run / "summary.json").read_text())
    result = run_train(*TINY[:-3], "total_agent_steps=3200", *QUIET, f"resume={governor_run}",
                       f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = json.loads((governor_run / "summary.json").read_text())
    assert after["npc_ticks"] > before["npc_ticks"] and after["updates"] > before["updates"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["governor=learned"], "governor.checkpoint='': the learned governor needs trained weights"),
        (["governor=learned", "governor.checkpoint=/nonexistent/governor.pt"], "no such file"),
        (["+experiment=governor", "governor=fixed"], "mode=governor trains the learned governor"),
        (["governor=budget", "governor.cpu_budget=0.01", "world=stage3"], "governor.cpu_budget=0.01"),
        (["governor=nonsense"], "governor"),
    ],
)
def test_bad_governor_choices_give_one_error_line_and_exit_2(args: list[str], message: str,
                                                             tmp_path: Path) -> None:
    result = run_train(*args, "total_agent_steps=64", *QUIET, f"hydra.run.dir={tmp_path / 'run'}",
                       cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("error:") and message in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr


def test_an_incompatible_governor_checkpoint_is_refused_with_its_name(tmp_path: Path) -> None:
    import torch

    from governor.config import GovernorConfig
    from governor.learned import LearnedGovernor

    path = tmp_path / "governor.pt"
    torch.save(LearnedGovernor(GovernorConfig(kind="learned", tick_rates=[2, 20], idle_tick_rate=2,
                                              calm_tick_rate=2)).state_dict(), path)
    result = run_train("governor=learned", f"governor.checkpoint={path}", "total_agent_steps=64", *QUIET,
                       f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: governor.checkpoint={path}: trained for tick rates [2, 20]" in result.stderr
