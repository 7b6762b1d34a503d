"""Stage sweeps through Hydra launcher plugins: joblib on one host (run), the cluster configs (composed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.errors import MissingConfigException
from omegaconf import DictConfig

from train.config import register_configs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_joblib_sweep_runs_the_stage_jobs_in_parallel_and_reports_both(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        [sys.executable, "-m", "train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         "+experiment=quick", "world=stage0,stage1", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    launcher = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["launcher"]
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 2
    rows = json.loads((sweep / "summary.json").read_text())
    jobs = [(row["job"], row["stage"], row["world"]) for row in rows]
    assert jobs == [("0", 0, "meadow"), ("1", 1, "walls")]
    table = (sweep / "summary.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["0", "1"]
    # a job starts when Hydra writes its .hydra/config.yaml in the worker and ends when it writes its
    # summary; the two jobs' spans (process set-up, training, evaluation: seconds) overlap, which one
    # job after the other (the basic launcher) cannot do. Training alone (wall_s) lasts a fraction of a
    # second in the quick experiment, too short to compare under load.
    starts = [(sweep / row["job"] / ".hydra" / "config.yaml").stat().st_mtime for row in rows]
    ends = [(sweep / row["job"] / "summary.json").stat().st_mtime for row in rows]
    assert starts[0] < ends[1] and starts[1] < ends[0], f"jobs ran one after the other: {starts} {ends}"


def launcher(name: str) -> DictConfig:
    """The composed hydra.launcher node of a launcher choice."""
    register_configs()
    with initialize_config_module("conf", version_base="1.3"):
        config = compose("config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    return config.hydra.launcher


def test_the_slurm_launcher_config_composes_over_the_submitit_plugin() -> None:
    conf = launcher("submitit_cluster")  # a key the plugin's schema lacks would fail here
    assert conf._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    ours = yaml.safe_load((REPO / "conf" / "hydra" / "launcher" / "submitit_cluster.yaml").read_text())
    assert ours.pop("defaults") == ["submitit_slurm"]
    assert {k: conf[k] for k in ours} == ours
    assert conf.gpus_per_node == 1 and conf.array_parallelism >= 6  # one job per stage, each with a GPU


def test_the_ray_launcher_config_extends_the_ray_plugins_config() -> None:
    if find_spec("hydra_plugins.hydra_ray_launcher") is not None:
        conf = launcher("ray_cluster")
        assert conf._target_.endswith("RayLauncher") and conf.ray.init.address == "auto"
        return
    # Ray is not installed by the project: what can be checked is that the file is found and that it
    # extends the plugin's `ray` config, the one piece missing here
    with pytest.raises(MissingConfigException, match="In 'hydra/launcher/ray_cluster': Could not load "
                                                     "'hydra/launcher/ray'"):
        launcher("ray_cluster")
