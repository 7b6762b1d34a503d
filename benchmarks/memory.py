"""Benchmark: what the brain's memory (``brain.memory=gru``) costs in training speed; prints one JSON object.

For each stage, a trainer with the run's defaults (plus overrides) is built per memory kind, one update
is run to warm up, then ``--updates`` more are timed end to end (collect, advantages, update):
``stage<k>_<memory>_agent_steps_per_s`` and the ratio ``stage<k>_gru_speed_vs_none``. The load
average is printed beside the figures (other jobs on the machine make them upper bounds).

    python -m benchmarks.memory [--stages 0,1,2] [--updates 5] [--seed 1] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from hydra import compose, initialize_config_module

from train.config import register_configs, to_run_config
from train.loop import Trainer

MEMORIES = ("none", "gru")


def agent_steps_per_s(overrides: list[str], updates: int) -> float:
    """Agent steps per second of `updates` timed updates of a trainer composed with `overrides`."""
    with initialize_config_module("conf", version_base="1.3"):
        run = to_run_config(compose("config", overrides=overrides))
    trainer = Trainer(run)
    trainer.train_step()  # warm-up: first-call allocations
    start, steps = time.perf_counter(), trainer.global_step
    for _ in range(updates):
        trainer.train_step()
    return (trainer.global_step - steps) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="0,1,2", help="comma-separated stages")
    parser.add_argument("--updates", type=int, default=5, help="timed updates per stage and memory kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. ppo.num_envs=256")
    args = parser.parse_args(argv)
    if args.updates < 1:
        parser.error(f"--updates={args.updates}: must be >= 1")
    try:
        stages = [int(s) for s in args.stages.split(",")]
    except ValueError:
        parser.error(f"--stages={args.stages!r}: give comma-separated stage numbers, e.g. 0,1,2")
    register_configs()
    out: dict = {"cores": len(os.sched_getaffinity(0)), "updates": args.updates, "seed": args.seed,
                 "overrides": args.overrides}
    for stage in stages:
        for memory in MEMORIES:
            overrides = [f"world=stage{stage}", f"brain.memory={memory}", f"seed={args.seed}",
                         "logger.mode=disabled", "logger.progress=false", *args.overrides]
            speed = agent_steps_per_s(overrides, args.updates)
            out[f"stage{stage}_{memory}_agent_steps_per_s"] = round(speed)
        out[f"stage{stage}_gru_speed_vs_none"] = round(
            out[f"stage{stage}_gru_agent_steps_per_s"] / out[f"stage{stage}_none_agent_steps_per_s"], 3)
    out["load_average"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
