"""Benchmark: fixed-seed progressive curriculum over stages 0, 1, 2; prints one JSON object.

Each stage is passed when the rolling success (200 episodes) reaches the stage's heuristic success
(stage 0: also >= 0.9), measured here first. Wall-clock caps: 5 minutes for stage 0, 15 more for
each of stages 1 and 2; a stage not passed by its cap ends the run and is reported as reached.
After each stage ends, the brains are evaluated on it (200 episodes, sampled actions; not timed).
``*_wall_s`` is training time from the start until the stage was passed (null if it was not).

    python -m benchmarks.train [--stages 0,1,2] [--caps 300,900,900] [--episodes 200] [--seed 1]
                               [--stage5-updates 3] [overrides...]

``train_agent_steps_per_s`` is agent steps per training second over the stages run (``--stages``,
default 0,1,2; a shorter prefix such as ``--stages 0`` is a quick run). ``train_stage5_agent_steps_per_s``
times ``--stage5-updates`` updates (default 3, 0 skips it) of a fresh stage-5 trainer with the same
config, after one untimed warm-up update.

Cells and nerves run as in `python -m train` (conf/nervous/default.yaml); the ablation is
`nervous.cells=false nervous.nerves.enabled=false nervous.lifeforce.per_brain_call=0`. Per stage it
also reports deaths per NPC and episode (fire, starvation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from hydra import compose, initialize_config_module

from train.config import register_configs, to_run_config
from train.evaluate import evaluate_brain
from train.loop import Trainer
from train.nervous_link import build_nervous
from world import stage_config
from world.rollout import POLICIES, evaluate

STAGES = (0, 1, 2)


def stage5_agent_steps_per_s(overrides: list[str], updates: int) -> tuple[float, int]:
    """(agent steps per training second, agent steps) of `updates` stage-5 updates after a warm-up one."""
    with initialize_config_module("conf", version_base="1.3"):
        run = to_run_config(compose("config", overrides=[*overrides, "world=stage5"]))
    senses, reflex = build_nervous(run.nervous, run.governor)
    trainer = Trainer(run, senses=senses, reflex=reflex)
    trainer.train_step()
    steps, elapsed = trainer.global_step, trainer.elapsed
    for _ in range(updates):
        metrics = trainer.train_step()
        print(f"[{trainer.elapsed:7.1f}s] stage 5 speed update {trainer.updates} "
              f"SPS {metrics['charts/SPS']:,.0f}", file=sys.stderr, flush=True)
    steps = trainer.global_step - steps
    return steps / max(trainer.elapsed - elapsed, 1e-9), steps


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="0,1,2", help="curriculum stages to train: 0,1,2 or a prefix")
    parser.add_argument("--caps", default="300,900,900", help="wall-clock cap per stage, seconds")
    parser.add_argument("--stage5-updates", type=int, default=3, help="timed stage-5 updates (0: skip)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per baseline and evaluation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. ppo.num_envs=256")
    args = parser.parse_args(argv)
    try:
        stages = tuple(int(x) for x in args.stages.split(","))
    except ValueError:
        parser.error(f"--stages={args.stages!r}: give comma-separated stage numbers, e.g. 0,1,2")
    if not stages or stages != STAGES[:len(stages)]:
        parser.error(f"--stages={args.stages!r}: must be 0,1,2 or a prefix of it (0 or 0,1)")
    if args.stage5_updates < 0:
        parser.error(f"--stage5-updates={args.stage5_updates}: must be >= 0")
    caps = [float(c) for c in args.caps.split(",")]
    if len(caps) != len(STAGES):
        parser.error(f"--caps: give {len(STAGES)} comma-separated seconds")

    out: dict = {"cores": len(os.sched_getaffinity(0))}
    heuristic = {}
    for stage in stages:
        config = stage_config(stage)
        heuristic[stage] = evaluate(config, POLICIES["heuristic"], args.episodes, seed=0)["success"]
        out[f"stage{stage}_heuristic_success"] = round(heuristic[stage], 4)
        if stage == 0:
            random = evaluate(config, POLICIES["random"], args.episodes, seed=0)["success"]
            out["stage0_random_success"] = round(random, 4)
    thresholds = {s: max(heuristic[s], 0.9) if s == 0 else heuristic[s] for s in stages}

    register_configs()
    overrides = ["+experiment=benchmark", "logger.mode=disabled", "logger.progress=false",
                 f"seed={args.seed}"]
    pairs = ",".join(f"{s}:{t}" for s, t in thresholds.items())
    stage_list = f"[{','.join(map(str, stages))}]"
    overrides += [f"curriculum.stage_thresholds={{{pairs}}}", f"curriculum.stages={stage_list}",
                  *args.overrides]
    with initialize_config_module("conf", version_base="1.3"):
        run = to_run_config(compose("config", overrides=overrides))
    senses, reflex = build_nervous(run.nervous, run.governor)
    trainer = Trainer(run, senses=senses, reflex=reflex)
    out["cells"], out["nerves"] = run.nervous.cells, run.nervous.nerves.enabled
    stage_start = 0.0
    for index, stage in enumerate(stages):
        passed = False
        while trainer.stage == stage and not trainer.curriculum.finished:
            metrics = trainer.train_step()
            print(f"[{trainer.elapsed:7.1f}s] stage {stage} update {trainer.updates} "
                  f"SPS {metrics['charts/SPS']:,.0f} success {metrics['charts/success']:.3f}",
                  file=sys.stderr, flush=True)
            if "charts/passed_stage" in metrics:
                passed = True
                break
            if trainer.elapsed - stage_start > caps[index]:
                break
        if passed:
            out[f"stage{stage}_wall_s"] = round(trainer.passed[-1]["elapsed_s"], 1)
        else:
            out[f"stage{stage}_wall_s"] = None
        # evaluate the brains as they are now (the next stage's world may already be set up)
        t0 = time.perf_counter()
        result = evaluate_brain(trainer.brain, stage_config(stage), args.episodes, seed=12345,
                                nervous=run.nervous)
        out[f"stage{stage}_success"] = round(result["success"], 4)
        for key in ("deaths", "deaths_fire", "deaths_starved"):  # per NPC and episode: the ablation's figures
            out[f"stage{stage}_{key}"] = round(result[key], 4)
        out[f"stage{stage}_passed"] = passed
        print(f"stage {stage}: passed={passed} eval success {result['success']:.3f} "
              f"(heuristic {heuristic[stage]:.3f}; eval took {time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
        stage_start = trainer.elapsed
        if not passed:
            break
    out["train_agent_steps_per_s"] = round(trainer.global_step / max(trainer.elapsed, 1e-9))
    out["train_agent_steps"] = trainer.global_step
    out["train_wall_s"] = round(trainer.elapsed, 1)
    if args.stage5_updates:
        base = [o for o in overrides if not o.startswith("curriculum.")]  # stage 5 alone, same config
        sps, steps = stage5_agent_steps_per_s(base, args.stage5_updates)
        out["train_stage5_agent_steps_per_s"] = round(sps)
        out["train_stage5_agent_steps"] = steps
    keys = ["cores", "train_agent_steps_per_s", "train_stage5_agent_steps_per_s", "stage0_success",
            "stage0_random_success", "stage0_heuristic_success", "stage0_wall_s", "stage1_success",
            "stage1_heuristic_success", "stage1_wall_s", "stage2_success", "stage2_heuristic_success",
            "stage2_wall_s"]
    ordered = {key: out.get(key) for key in keys} | {k: v for k, v in out.items() if k not in keys}
    print(json.dumps(ordered))
    return ordered


if __name__ == "__main__":
    main()
