"""World throughput against its peers, measured in one run: `python -m benchmarks.world`.

Prints one JSON object. Core figures step B envs with random *legal* actions (sampled from the
action masks every tick) and include building observations; the batch is split over one worker
process per core (`world.multiprocess`, outputs in shared memory), and the single-process figures
are printed beside them.

Every PettingZoo env — ours at stage 3, MAgent2 battle_v4 (162 agents), MPE2 simple_spread_v3 —
runs PettingZoo's canonical random loop (`action_space(agent).sample()` per agent every step), and
MiniGrid DoorKey-8x8 samples `action_space.sample()` every step: the measurement behind the issue's
reference figures (MAgent2 ~0.28 M here). MAgent2 with actions sampled up front (the env alone) is
printed too, with its ratio, as the stricter comparison. Peers come with the `bench` extra.

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
from world.multiprocess import MultiprocessWorld


def _timed(step: Callable[[], int], seconds: float, warmup: int = 5) -> float:
    """Call `step` (which returns agent-steps done) for about `seconds`; return agent-steps per second."""
    for _ in range(warmup):
        step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done / elapsed


def core(stage: int, batch: int, seconds: float, workers: int = 1) -> float:
    """Agent-steps/s of the batched core (one process, or split over worker processes), random legal
    actions drawn from the masks every tick in the parent."""
    if workers > 1:
        world: GridWorld | MultiprocessWorld = MultiprocessWorld(stage_config(stage), batch, seed=0,
                                                                 workers=workers)
    else:
        world = GridWorld(stage_config(stage), num_envs=batch, seed=0)
    rng = np.random.default_rng(0)
    agents = world.num_envs * world.num_npcs

    def step() -> int:
        noise = rng.random(world.action_mask.shape, dtype=np.float32)
        actions = np.argmax(noise * world.action_mask, axis=-1)
        world.step(actions)
        return agents

    try:
        return _timed(step, seconds)
    finally:
        if isinstance(world, MultiprocessWorld):
            world.close()


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


def pettingzoo_loop(make: Callable[[], object], seconds: float) -> float:
    """Agent-steps/s of a PettingZoo parallel env in its canonical random loop (PettingZoo's docs):
    ``{agent: env.action_space(agent).sample() for agent in env.agents}`` every step."""
    env = make()
    env.reset(seed=0)
    for agent in env.possible_agents:
        env.action_space(agent).seed(0)

    def step() -> int:
        if not env.agents:
            env.reset()
        actions = {agent: env.action_space(agent).sample() for agent in env.agents}
        env.step(actions)
        return len(actions)

    return _timed(step, seconds)


def pettingzoo_presampled(make: Callable[[], object], seconds: float) -> float:
    """Agent-steps/s of a PettingZoo parallel env with actions sampled up front (the env alone)."""
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


def minigrid_doorkey(seconds: float) -> float:
    """Steps/s of MiniGrid DoorKey-8x8 with a random action sampled every step."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the envs)

    env = gym.make("MiniGrid-DoorKey-8x8-v0")
    env.reset(seed=0)
    env.action_space.seed(0)

    def step() -> int:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
        return 1

    return _timed(step, seconds)


def magent2_battle(seconds: float) -> float:
    """Agent-steps/s of MAgent2 battle_v4 (default map, 162 agents)."""
    from magent2.environments import battle_v4

    return pettingzoo_loop(lambda: battle_v4.parallel_env(), seconds)


def magent2_battle_presampled(seconds: float) -> float:
    """Agent-steps/s of MAgent2 battle_v4 with actions sampled up front (the env alone, stricter)."""
    from magent2.environments import battle_v4

    return pettingzoo_presampled(lambda: battle_v4.parallel_env(), seconds)


def mpe2_simple_spread(seconds: float) -> float:
    """Agent-steps/s of MPE2 simple_spread_v3 (3 agents, discrete actions)."""
    from mpe2 import simple_spread_v3

    return pettingzoo_loop(lambda: simple_spread_v3.parallel_env(), seconds)


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
    parser.add_argument("--batch", type=int, default=8192, help="envs in the batched core (>= 256)")
    parser.add_argument("--workers", type=int, default=0, help="core worker processes (0: one per core)")
    args = parser.parse_args()
    if args.batch < 256:
        parser.error(f"--batch={args.batch}: must be >= 256")
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or cores
    missing: list[str] = []
    result = {
        "cores": cores,
        "batch": args.batch,
        "core_workers": workers,
        "core_stage0_agent_steps_per_s": round(core(0, args.batch, args.seconds, workers)),
        "core_stage5_agent_steps_per_s": round(core(5, args.batch, args.seconds, workers)),
        "core_stage0_single_process_agent_steps_per_s": round(core(0, args.batch, args.seconds)),
        "core_stage5_single_process_agent_steps_per_s": round(core(5, args.batch, args.seconds)),
        "pettingzoo_stage3_agent_steps_per_s": round(pettingzoo_loop(lambda: parallel_env(stage=3),
                                                                     args.seconds)),
        "minigrid_doorkey_steps_per_s": peer(minigrid_doorkey, args.seconds, missing, "minigrid"),
        "magent2_battle_agent_steps_per_s": peer(magent2_battle, args.seconds, missing, "magent2"),
        "mpe2_simple_spread_agent_steps_per_s": peer(mpe2_simple_spread, args.seconds, missing, "mpe2"),
        "magent2_battle_presampled_agent_steps_per_s": peer(magent2_battle_presampled, args.seconds, missing,
                                                            "magent2"),
    }
    for key in ("minigrid_doorkey_steps_per_s", "magent2_battle_agent_steps_per_s",
                "mpe2_simple_spread_agent_steps_per_s", "magent2_battle_presampled_agent_steps_per_s"):
        if result[key] is not None:
            result[key] = round(result[key])
    if result["magent2_battle_agent_steps_per_s"]:
        result["ratio_stage0_vs_magent2"] = round(
            result["core_stage0_agent_steps_per_s"] / result["magent2_battle_agent_steps_per_s"], 2)
        result["ratio_stage5_vs_magent2"] = round(
            result["core_stage5_agent_steps_per_s"] / result["magent2_battle_agent_steps_per_s"], 2)
    if result["magent2_battle_presampled_agent_steps_per_s"]:
        strict = result["magent2_battle_presampled_agent_steps_per_s"]
        stage0 = result["core_stage0_agent_steps_per_s"]
        result["ratio_stage0_vs_magent2_presampled"] = round(stage0 / strict, 2)
    if result["minigrid_doorkey_steps_per_s"]:
        result["ratio_pettingzoo_stage3_vs_minigrid"] = round(
            result["pettingzoo_stage3_agent_steps_per_s"] / result["minigrid_doorkey_steps_per_s"], 2)
    result |= observation_encoding(min(args.batch, 1024))
    if missing:
        result["missing_peers"] = missing  # install with: pip install -e ".[bench]"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
