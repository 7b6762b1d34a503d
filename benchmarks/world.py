"""World throughput against its peers, measured in one run: `python -m benchmarks.world`.

Prints one JSON object. Core figures step B envs with random *legal* actions (sampled from the
action masks every tick) and include building observations. Peers (installed with the `bench`
extra) take random actions through their own APIs: MiniGrid DoorKey-8x8 (gymnasium, one agent),
MAgent2 battle_v4 (PettingZoo parallel, 162 agents), MPE2 simple_spread_v3 (PettingZoo parallel).

Targets on 2 cores: core stage 0 >= 10x MAgent2 battle, core stage 5 >= 3x MAgent2, the PettingZoo
wrapper at stage 3 >= 5x MiniGrid DoorKey. Options: --seconds per measurement, --batch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np

from world import GridWorld, parallel_env, stage_config


def _timed(step: Callable[[], int], seconds: float, warmup: int = 5) -> float:
    """Call `step` (which returns agent-steps done) for about `seconds`; return agent-steps per second."""
    for _ in range(warmup):
        step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done / elapsed


def core(stage: int, batch: int, seconds: float) -> float:
    """Agent-steps/s of the batched core with random legal actions."""
    world = GridWorld(stage_config(stage), num_envs=batch, seed=0)
    rng = np.random.default_rng(0)
    agents = world.num_envs * world.num_npcs

    def step() -> int:
        noise = rng.random(world.action_mask.shape, dtype=np.float32)
        actions = np.argmax(noise * world.action_mask, axis=-1)
        world.step(actions)
        return agents

    return _timed(step, seconds)


def observation_encoding(batch: int, repeats: int = 20) -> dict[str, float]:
    """Codes vs one-hot channels (stage 5): build time per tick and bytes per NPC of each."""
    from world.tiles import NUM_CODES

    world = GridWorld(stage_config(5), num_envs=batch, seed=0)
    eye = np.eye(NUM_CODES, dtype=np.float32)
    start = time.perf_counter()
    for _ in range(repeats):
        world.refresh()
    codes = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        channels = eye[world.views]
    extra = (time.perf_counter() - start) / repeats
    return {"obs_codes_build_ms": round(codes * 1e3, 2), "obs_channels_extra_ms": round(extra * 1e3, 2),
            "obs_codes_bytes_per_npc": int(world.views[0, 0].nbytes),
            "obs_channels_bytes_per_npc": int(channels[0, 0].nbytes)}


def pettingzoo_wrapper(stage: int, seconds: float) -> float:
    """Agent-steps/s of the PettingZoo ParallelEnv (one env) with random actions."""
    env = parallel_env(stage=stage)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 7, (4096, env.config.n_npcs)).tolist()
    tick = [0]

    def step() -> int:
        if not env.agents:
            env.reset()
        row = pool[tick[0] % 4096]
        tick[0] += 1
        n = len(env.agents)
        env.step({agent: row[i] for i, agent in enumerate(env.agents)})
        return n

    return _timed(step, seconds)


def minigrid_doorkey(seconds: float) -> float:
    """Steps/s of MiniGrid DoorKey-8x8 with random actions."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the envs)

    env = gym.make("MiniGrid-DoorKey-8x8-v0")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, env.action_space.n, 4096).tolist()
    tick = [0]

    def step() -> int:
        _, _, terminated, truncated, _ = env.step(pool[tick[0] % 4096])
        tick[0] += 1
        if terminated or truncated:
            env.reset()
        return 1

    return _timed(step, seconds)


def parallel_peer(make: Callable[[], object], seconds: float) -> float:
    """Agent-steps/s of a PettingZoo parallel env with random actions drawn from its spaces up front."""
    env = make()
    env.reset(seed=0)
    samples = {agent: [env.action_space(agent).sample() for _ in range(256)] for agent in env.possible_agents}
    tick = [0]

    def step() -> int:
        if not env.agents:
            env.reset()
        i = tick[0] % 256
        tick[0] += 1
        n = len(env.agents)
        env.step({agent: samples[agent][i] for agent in env.agents})
        return n

    return _timed(step, seconds)


def magent2_battle(seconds: float) -> float:
    """Agent-steps/s of MAgent2 battle_v4 (default map, 162 agents)."""
    from magent2.environments import battle_v4

    return parallel_peer(lambda: battle_v4.parallel_env(), seconds)


def mpe2_simple_spread(seconds: float) -> float:
    """Agent-steps/s of MPE2 simple_spread_v3 (3 agents, discrete actions)."""
    from mpe2 import simple_spread_v3

    return parallel_peer(lambda: simple_spread_v3.parallel_env(), seconds)


def peer(measure: Callable[[float], float], seconds: float, missing: list[str], name: str) -> float | None:
    """Measure a peer, or record it as missing when its package is not installed."""
    try:
        return measure(seconds)
    except ImportError:
        missing.append(name)
        return None


def main() -> None:
    """Run every measurement and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--batch", type=int, default=4096, help="envs in the batched core (>= 256)")
    args = parser.parse_args()
    if args.batch < 256:
        parser.error(f"--batch={args.batch}: must be >= 256")
    missing: list[str] = []
    result = {
        "cores": len(os.sched_getaffinity(0)),
        "batch": args.batch,
        "core_stage0_agent_steps_per_s": round(core(0, args.batch, args.seconds)),
        "core_stage5_agent_steps_per_s": round(core(5, args.batch, args.seconds)),
        "pettingzoo_stage3_agent_steps_per_s": round(pettingzoo_wrapper(3, args.seconds)),
        "minigrid_doorkey_steps_per_s": peer(minigrid_doorkey, args.seconds, missing, "minigrid"),
        "magent2_battle_agent_steps_per_s": peer(magent2_battle, args.seconds, missing, "magent2"),
        "mpe2_simple_spread_agent_steps_per_s": peer(mpe2_simple_spread, args.seconds, missing, "mpe2"),
    }
    for key in ("minigrid_doorkey_steps_per_s", "magent2_battle_agent_steps_per_s",
                "mpe2_simple_spread_agent_steps_per_s"):
        if result[key] is not None:
            result[key] = round(result[key])
    if result["magent2_battle_agent_steps_per_s"]:
        result["ratio_stage0_vs_magent2"] = round(
            result["core_stage0_agent_steps_per_s"] / result["magent2_battle_agent_steps_per_s"], 2)
        result["ratio_stage5_vs_magent2"] = round(
            result["core_stage5_agent_steps_per_s"] / result["magent2_battle_agent_steps_per_s"], 2)
    if result["minigrid_doorkey_steps_per_s"]:
        result["ratio_pettingzoo_stage3_vs_minigrid"] = round(
            result["pettingzoo_stage3_agent_steps_per_s"] / result["minigrid_doorkey_steps_per_s"], 2)
    result |= observation_encoding(min(args.batch, 1024))
    if missing:
        result["missing_peers"] = missing  # install with: pip install -e ".[bench]"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
