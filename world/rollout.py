"""Evaluate a scripted or learned policy on a stage over many episodes, batched."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from world.config import WorldConfig
from world.core import GridWorld
from world.heuristics import heuristic_policy, random_policy

#: policy(views [M,V,V], proprio [M,P], action_mask [M,A], rng) -> actions [M]
FlatPolicy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def evaluate(config: WorldConfig, policy: FlatPolicy, episodes: int = 100, seed: int = 0,
             num_envs: int = 50) -> dict[str, float]:
    """Run `episodes` full episodes (rounded up to whole batches) and return the world's episode means."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes!r}: must be >= 1")
    world = GridWorld(config, num_envs=min(num_envs, episodes), seed=seed, autoreset=True)
    rng = np.random.default_rng(seed + 1)
    M = world.num_envs * world.num_npcs

    def act(world: GridWorld) -> np.ndarray:
        actions = policy(world.views.reshape(M, world.V, world.V), world.proprio.reshape(M, -1),
                         world.action_mask.reshape(M, -1), rng)
        return np.asarray(actions).reshape(world.num_envs, world.num_npcs)

    return collect_episodes(world, act, episodes)


def collect_episodes(world: GridWorld, act: Callable[[GridWorld], np.ndarray],
                     episodes: int) -> dict[str, float]:
    """Step an autoresetting world with act(world) -> actions [B, N] until `episodes` episodes have
    ended (whole batches); the episode means of `GridWorld.pop_stats`, weighted over all of them."""
    totals: dict[str, float] = {}
    done = 0
    while done < episodes:
        world.step(act(world))
        if world.env_done.any():
            stats = world.pop_stats()
            n = stats.pop("episodes")
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value * n
            done += int(n)
    out = {key: value / done for key, value in totals.items()}
    out["episodes"] = float(done)
    return out


def random_flat(views: np.ndarray, proprio: np.ndarray, mask: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """`random_policy` with the FlatPolicy signature."""
    return random_policy(mask, rng)


POLICIES: dict[str, FlatPolicy] = {"random": random_flat, "heuristic": heuristic_policy}

#: Success of the scripted baselines per stage: ``evaluate`` over 200 episodes, seed 0 (the tables in
#: `world/env.py`'s docstring and in the README quote these).
BASELINE_SUCCESS: dict[int, dict[str, float]] = {
    0: {"heuristic": 0.960, "random": 0.003},
    1: {"heuristic": 0.740, "random": 0.000},
    2: {"heuristic": 0.734, "random": 0.004},
    3: {"heuristic": 0.604, "random": 0.001},
    4: {"heuristic": 0.193, "random": 0.000},
    5: {"heuristic": 0.233, "random": 0.000},
}

