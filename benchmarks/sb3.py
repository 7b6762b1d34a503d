"""Benchmark: our PPO beside Stable-Baselines3 PPO on one stage, same budget, seeds and eval; prints JSON.

    python -m benchmarks.sb3 [--stage 3] [--budget 524288] [--evals 4] [--episodes 200] [--seed 1]
                             [overrides...]

The peer baseline of issue 17 ("sample efficiency, not only speed"). In one run, on the same stage, each
side trains from scratch for ``--budget`` agent steps (one NPC's one tick is one agent step; each side stops
at the first rollout boundary at or past the budget, and reports the steps it took):

- ``sb3``: Stable-Baselines3 PPO through PettingZoo's SuperSuit recipe (``world/env.py``'s docstring):
  ``obs="flat"`` -> ``black_death_v3`` -> ``pettingzoo_env_to_vec_env_v1`` -> 4 copies with
  ``concat_vec_envs_v1`` -> ``PPO("MlpPolicy", n_steps=256)``, SB3's other defaults, on the CPU; one policy
  shared by all NPCs. Seeded with ``set_random_seed(seed)`` and copy i of the world reset with seed + i.
- ``ours``: ``python -m train world=stage<K> seed=<seed>`` as configured (per-NPC brains, cells and nerves),
  with Hydra ``overrides`` on top.
- ``ours_bare``: the same without cells and nerves (``nervous.cells=false nervous.nerves.enabled=false
  nervous.lifeforce.per_brain_call=0``): the brain sees the same observation as SB3's policy and no reflex
  overrides its actions, the like-for-like comparison.

Evaluation, the same for all three and for the scripted heuristic: ``world.rollout``'s episodes of the
stage, ``--episodes`` of them (200), seed 0, 50 envs, sampled actions (SB3's policy is wrapped as a flat
policy: its action distribution, sampled with the evaluator's generator). Each side is evaluated at
``--evals`` points (budget * i / evals), untimed; ``<side>_agent_steps_to_heuristic`` is the first point at
which its success reached the heuristic's (null if none did), so its resolution is budget / evals.
``<side>_agent_steps_per_s`` is training agent steps per training second (rollouts and updates). Both
train with ``runtime.torch_threads`` torch threads. ``load_avg_1m_start`` / ``_end`` are the machine's
load average around the run: other work on the machine slows every side.

Needs the ``sb3`` extra: ``pip install -e ".[sb3]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_module

from train.config import RunConfig, register_configs, to_run_config
from train.evaluate import evaluate_brain
from train.loop import Trainer
from train.nervous_link import build_nervous
from world import parallel_env, stage_config
from world.rollout import POLICIES, evaluate

#: Seed and batch shape of every evaluation here (those of `world.rollout.BASELINE_SUCCESS`).
EVAL_SEED, EVAL_ENVS = 0, 50
#: SuperSuit copies of the world (the recipe's 4) and SB3's rollout length per copy and NPC.
SB3_COPIES, SB3_N_STEPS = 4, 256
#: The nervous ablation: no cells, no nerves, no lifeforce charge per brain call.
BARE = ["nervous.cells=false", "nervous.nerves.enabled=false", "nervous.lifeforce.per_brain_call=0"]


def flat_observations(views: np.ndarray, proprio: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """M flat observations [M, V*V + P + A] as the env's `obs="flat"` gives them, from the world's arrays."""
    return np.concatenate([views.reshape(len(views), -1), proprio, mask], axis=1, dtype=np.float32)


class SB3FlatPolicy:
    """A Stable-Baselines3 policy as a `world.rollout.FlatPolicy`: its actions sampled with the given rng."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, views: np.ndarray, proprio: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        """Actions [M] for M flat observations (view codes, proprio, action mask: the env's `obs="flat"`)."""
        obs = flat_observations(views, proprio, mask)
        with torch.no_grad():
            probs = self.model.policy.get_distribution(torch.as_tensor(obs)).distribution.probs.numpy()
        draws = rng.random((len(obs), 1))
        return np.minimum((probs.cumsum(axis=1) < draws).sum(axis=1), probs.shape[1] - 1)


def sb3_vec_env(stage: int, seed: int) -> Any:
    """The SuperSuit recipe's vec env for a stage, copy i reset with seed + i."""
    import supersuit as ss

    env = ss.black_death_v3(parallel_env(stage=stage, obs="flat"))
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    vec = ss.concat_vec_envs_v1(vec, SB3_COPIES, num_cpus=1, base_class="stable_baselines3")
    vec.venv.reset(seed=seed)  # the SB3 wrapper has no seed(); its ConcatVecEnv seeds copy i with seed + i
    return vec


def run_sb3(stage: int, points: list[int], episodes: int, seed: int, threads: int) -> dict[str, Any]:
    """Train SB3 PPO through the SuperSuit recipe, evaluating at each agent-step point; its figures."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.utils import set_random_seed

    torch.set_num_threads(threads)
    set_random_seed(seed)  # not PPO(seed=...): SuperSuit's vec env has no seed() for SB3 to call
    vec = sb3_vec_env(stage, seed)
    model = PPO("MlpPolicy", vec, n_steps=SB3_N_STEPS, device="cpu", verbose=0)
    elapsed, curve = 0.0, []
    config = stage_config(stage)
    try:
        for point in points:
            start = time.perf_counter()
            model.learn(total_timesteps=max(point - model.num_timesteps, 1), reset_num_timesteps=False)
            elapsed += time.perf_counter() - start
            success = evaluate(config, SB3FlatPolicy(model), episodes, seed=EVAL_SEED,
                               num_envs=EVAL_ENVS)["success"]
            curve.append([int(model.num_timesteps), round(success, 4)])
            print(f"[{elapsed:7.1f}s] sb3 {model.num_timesteps:,} agent steps: success {success:.3f}",
                  file=sys.stderr, flush=True)
    finally:
        vec.close()
    return {"agent_steps": int(model.num_timesteps), "train_s": elapsed, "curve": curve}


def our_run_config(stage: int, seed: int, overrides: list[str]) -> RunConfig:
    """`python -m train world=stage<K>`'s config with this benchmark's seed and overrides, no logging."""
    with initialize_config_module("conf", version_base="1.3"):
        return to_run_config(compose("config", overrides=[f"world=stage{stage}", f"seed={seed}",
                                                          "logger.mode=disabled", "logger.progress=false",
                                                          *overrides]))


def run_ours(name: str, run: RunConfig, points: list[int], episodes: int) -> dict[str, Any]:
    """Train our PPO on the run's stage, evaluating at each agent-step point; its figures."""
    senses, reflex = build_nervous(run.nervous, run.governor)
    trainer = Trainer(run, senses=senses, reflex=reflex)
    assert run.world is not None
    curve = []
    for point in points:
        while trainer.global_step < point:
            trainer.train_step()
        success = evaluate_brain(trainer.brain, run.world, episodes, seed=EVAL_SEED, num_envs=EVAL_ENVS,
                                 nervous=run.nervous)["success"]
        curve.append([trainer.global_step, round(success, 4)])
        print(f"[{trainer.elapsed:7.1f}s] {name} {trainer.global_step:,} agent steps: success {success:.3f}",
              file=sys.stderr, flush=True)
    return {"agent_steps": trainer.global_step, "train_s": trainer.elapsed, "curve": curve}


def side_figures(name: str, result: dict[str, Any], heuristic: float) -> dict[str, Any]:
    """One side's JSON keys: speed, success at the budget, agent steps to reach the heuristic, the curve."""
    reached = next((steps for steps, success in result["curve"] if success >= heuristic), None)
    return {f"{name}_agent_steps_per_s": round(result["agent_steps"] / max(result["train_s"], 1e-9)),
            f"{name}_success": result["curve"][-1][1],
            f"{name}_agent_steps_to_heuristic": reached,
            f"{name}_agent_steps": result["agent_steps"],
            f"{name}_train_s": round(result["train_s"], 1),
            f"{name}_curve": result["curve"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=int, default=3, help="the stage both train on, 0-5")
    parser.add_argument("--budget", type=int, default=524_288,
                        help="agent steps each side trains (default: 4 of our stage-3 updates, 32 of SB3's)")
    parser.add_argument("--evals", type=int, default=4, help="evaluation points (budget * i / evals)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per evaluation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for our side, e.g. ppo.num_envs=128")
    args = parser.parse_args(argv)
    if not 0 <= args.stage <= 5:
        parser.error(f"--stage={args.stage}: must be a stage 0-5")
    for flag in ("budget", "evals", "episodes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}={getattr(args, flag)}: must be >= 1")
    try:
        import stable_baselines3  # noqa: F401
        import supersuit  # noqa: F401
    except ImportError as error:
        print(f"benchmarks.sb3: {error.name} is not installed; install the peer baseline with "
              'pip install -e ".[sb3]"', file=sys.stderr)
        raise SystemExit(2) from None

    points = [args.budget * i // args.evals for i in range(1, args.evals + 1)]
    out: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "load_avg_1m_start": os.getloadavg()[0],
                           "stage": args.stage, "budget": args.budget, "episodes": args.episodes,
                           "seed": args.seed}
    config = stage_config(args.stage)
    heuristic = evaluate(config, POLICIES["heuristic"], args.episodes, seed=EVAL_SEED,
                         num_envs=EVAL_ENVS)["success"]
    out["heuristic_success"] = round(heuristic, 4)
    register_configs()
    run = our_run_config(args.stage, args.seed, args.overrides)
    bare = our_run_config(args.stage, args.seed, [*args.overrides, *BARE])
    out |= side_figures("sb3", run_sb3(args.stage, points, args.episodes, args.seed,
                                       run.runtime.torch_threads), heuristic)
    out |= side_figures("ours", run_ours("ours", run, points, args.episodes), heuristic)
    out |= side_figures("ours_bare", run_ours("ours_bare", bare, points, args.episodes), heuristic)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
