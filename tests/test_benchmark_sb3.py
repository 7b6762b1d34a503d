"""`python -m benchmarks.sb3`: SB3 PPO (SuperSuit recipe) beside our PPO on a tiny budget; bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import sb3 as bench
from world import parallel_env

ROOT = Path(__file__).resolve().parents[1]


def test_flat_observations_from_the_world_arrays_are_the_envs_flat_observations():
    env = parallel_env(stage=3, obs="flat")
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        core = env.core
        flat = bench.flat_observations(core.views[0], core.proprio[0], core.action_mask[0])
        np.testing.assert_array_equal(flat, np.stack([obs[a] for a in env.possible_agents]))
        obs, *_ = env.step({a: int(rng.integers(0, 7)) for a in env.agents})


def test_the_sb3_flat_policy_samples_from_the_models_own_distribution():
    from stable_baselines3 import PPO

    vec = bench.sb3_vec_env(stage=3, seed=0)
    try:
        model = PPO("MlpPolicy", vec, n_steps=bench.SB3_N_STEPS, device="cpu", verbose=0)
        obs = vec.reset()
        with torch.no_grad():
            probs = model.policy.get_distribution(torch.as_tensor(obs)).distribution.probs.numpy()
    finally:
        vec.close()
    V = parallel_env(stage=3).config.view_size
    views, proprio, mask = obs[:, :V * V].reshape(-1, V, V), obs[:, V * V:V * V + 20], obs[:, V * V + 20:]
    policy = bench.SB3FlatPolicy(model)
    rng = np.random.default_rng(1)
    draws = np.stack([policy(views, proprio, mask, rng) for _ in range(2000)])  # [2000, M]
    freq = np.stack([(draws == a).mean(axis=0) for a in range(7)], axis=1)  # [M, 7]
    assert np.abs(freq - probs).max() < 0.05  # 2000 draws: a few standard errors of ~0.011


@pytest.mark.slow
def test_a_tiny_budget_gives_both_sides_figures(capsys):
    out = bench.main(["--stage", "3", "--budget", "20000", "--evals", "2", "--episodes", "10",
                      "ppo.num_envs=8", "ppo.num_steps=16"])
    assert out["stage"] == 3 and 0.0 < out["heuristic_success"] <= 1.0
    for side in ("sb3", "ours", "ours_bare"):
        assert out[f"{side}_agent_steps"] >= 20000
        assert out[f"{side}_agent_steps_per_s"] > 0 and out[f"{side}_train_s"] > 0
        assert 0.0 <= out[f"{side}_success"] <= 1.0
        curve = out[f"{side}_curve"]
        assert len(curve) == 2 and 10000 <= curve[0][0] < curve[1][0] == out[f"{side}_agent_steps"]
        reached = out[f"{side}_agent_steps_to_heuristic"]
        assert reached is None or reached in [steps for steps, _ in curve]
    # SB3 steps whole rollouts of 4 copies x 16 NPCs x 256 ticks
    assert out["sb3_agent_steps"] % (bench.SB3_COPIES * 16 * bench.SB3_N_STEPS) == 0
    assert out["ours_agent_steps"] % (8 * 16 * 16) == 0


def test_without_sb3_installed_it_names_the_extra_and_exits_2():
    code = ("import sys; sys.modules['stable_baselines3'] = None\n"
            "from benchmarks.sb3 import main\n"
            "main(['--budget', '1000'])\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ['benchmarks.sb3: stable_baselines3 is not installed; install the peer baseline with '
                     'pip install -e ".[sb3]"']


@pytest.mark.parametrize("args, message", [(["--stage", "6"], "--stage=6: must be a stage 0-5"),
                                           (["--budget", "0"], "--budget=0: must be >= 1")])
def test_bad_arguments_are_refused_naming_the_flag(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
