"""`python -m benchmarks.train`'s sample-efficiency keys on a tiny run, and its full-curriculum reader."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import train as bench

ROOT = Path(__file__).resolve().parents[1]
#: A tiny stage-0 run: 32 envs x 16 ticks x 4 NPCs = 2048 agent steps per update.
TINY = ["ppo.num_envs=32", "ppo.num_steps=16", "curriculum.window=128", "curriculum.min_episodes=128"]
STEPS_PER_UPDATE = 32 * 16 * 4


@pytest.fixture(scope="module")
def train_run(tmp_path_factory) -> Path:
    """The folder of a real tiny `python -m train` run (`+experiment=quick`)."""
    tmp = tmp_path_factory.mktemp("train")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run([sys.executable, "-m", "train", "+experiment=quick",
                             f"hydra.run.dir={tmp / 'run'}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return tmp / "run"


@pytest.mark.slow
def test_the_full_curriculum_reader_takes_wall_time_and_steps_from_a_real_runs_summary(train_run):
    summary = json.loads((train_run / "summary.json").read_text())
    out = bench.full_curriculum(train_run)
    assert out["full_curriculum_wall_s"] == round(summary["wall_s"], 1) > 0
    assert out["full_curriculum_agent_steps"] == summary["agent_steps"] == 2048
    assert out["full_curriculum_finished"] is False and out["full_curriculum_stage"] == 0
    passed = {row["stage"]: row["stage_steps"] for row in summary["passed"]}  # the quick run passes none
    for stage in range(6):
        assert out[f"full_curriculum_stage{stage}_agent_steps_to_pass"] == passed.get(stage)
    # the run is not the full_curriculum experiment, and the note says so
    assert "does not name +experiment=full_curriculum" in out["full_curriculum_wall_s_note"]


@pytest.mark.slow
def test_a_tiny_stage0_run_reports_steps_to_pass_heuristics_of_every_stage_and_notes(capsys):
    # a bar of 1.0 over 128 NPC-episodes is out of a fresh brain's reach: stage 0 runs to its 5 s cap unpassed
    out = bench.main(["--stages", "0", "--caps", "5", "--episodes", "20", "--stage5-updates", "0",
                      *TINY, "++curriculum.stage_thresholds={0:1.0}"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out
    # the fast mode's keys are all still there
    for key in ("cores", "train_agent_steps_per_s", "stage0_success", "stage0_random_success",
                "stage0_heuristic_success", "train_agent_steps", "train_wall_s"):
        assert out[key] is not None, key
    assert out["train_agent_steps"] % STEPS_PER_UPDATE == 0 and out["train_wall_s"] >= 5  # ran to its cap
    for stage in range(6):
        assert 0.0 <= out[f"stage{stage}_heuristic_success"] <= 1.0
    assert out["stage0_heuristic_success"] > out["stage0_random_success"]
    assert out["stage0_passed"] is False
    assert out["stage0_agent_steps_to_pass"] is None and out["stage0_wall_s"] is None
    assert "stage0_success_note" not in out  # trained, so measured
    for stage in range(1, 6):
        assert out[f"stage{stage}_success"] is None and out[f"stage{stage}_agent_steps_to_pass"] is None
        assert out[f"stage{stage}_success_note"] == "not trained: --stages 0 leaves it out " \
                                                    "(--stages 0,1,2,3,4,5 trains on to it)"
    assert out["full_curriculum_wall_s"] is None
    assert out["full_curriculum_wall_s_note"].startswith("not given: --full-curriculum-run PATH")


def test_a_run_folder_without_a_summary_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--stages", "0", "--full-curriculum-run", str(tmp_path)])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--full-curriculum-run='{tmp_path}': no summary.json there" in line


@pytest.mark.parametrize("stages", ["0,2", "1", "0,1,2,3,4,5,6", "a"])
def test_stages_that_are_not_a_prefix_of_the_curriculum_are_refused(stages, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--stages", stages])
    assert exit_info.value.code == 2
    assert f"--stages={stages!r}" in capsys.readouterr().err


def test_fewer_caps_than_stages_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--stages", "0,1,2,3", "--caps", "300,900,900"])
    assert exit_info.value.code == 2
    assert "give one cap per stage trained (4)" in capsys.readouterr().err
