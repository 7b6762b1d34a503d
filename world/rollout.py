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
    num_envs = min(num_envs, episodes)
    world = GridWorld(config, num_envs=num_envs, seed=seed, autoreset=True)
    rng = np.random.default_rng(seed + 1)
    B, N = world.num_envs, world.num_npcs
    totals: dict[str, float] = {}
    done_episodes = 0
    while done_episodes < episodes:
        actions = policy(world.views.reshape(B * N, world.V, world.V), world.proprio.reshape(B * N, -1),
                         world.action_mask.reshape(B * N, -1), rng)
        world.step(np.asarray(actions).reshape(B, N))
        if world.env_done.any():
            stats = world.pop_stats()
            n = stats.pop("episodes")
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value * n
            done_episodes += int(n)
    out = {key: value / done_episodes for key, value in totals.items()}
    out["episodes"] = float(done_episodes)
    return out


def random_flat(views: np.ndarray, proprio: np.ndarray, mask: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """`random_policy` with the FlatPolicy signature."""
    return random_policy(mask, rng)


POLICIES: dict[str, FlatPolicy] = {"random": random_flat, "heuristic": heuristic_policy}
