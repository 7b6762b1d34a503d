"""Benchmark: fixed-seed progressive curriculum over stages 0, 1, 2 (or on to 5); prints one JSON object.

Each stage is passed when the rolling success (1024 episodes) reaches the stage's heuristic success
(stage 0: also >= 0.9), measured here first. Wall-clock caps: 5 minutes for stage 0, 15 more for
each later stage; a stage not passed by its cap ends the run and is reported as reached.
After each stage ends, the brains are evaluated on it (200 episodes, sampled actions; not timed).
``*_wall_s`` is training time from the start until the stage was passed (null if it was not).

    python -m benchmarks.train [--stages 0,1,2] [--caps 300,900,900,900,900,900] [--episodes 200]
                               [--seed 1] [--stage5-updates 3] [--full-curriculum-run PATH] [overrides...]

``train_agent_steps_per_s`` is agent steps per training second over the stages run (``--stages``,
default 0,1,2; a shorter prefix such as ``--stages 0`` is a quick run). ``train_stage5_agent_steps_per_s``
times ``--stage5-updates`` updates (default 3, 0 skips it) of a fresh stage-5 trainer with the same
config, after one untimed warm-up update.

Sample efficiency (issue 17):

- ``stageK_heuristic_success`` for every stage 0-5: the scripted heuristic under ``world.rollout.evaluate``,
  ``--episodes`` episodes, seed 0, 50 envs, the same seed, batch shape and episode count as the brains'
  evaluation (``stageK_success``), so the two are compared on the same episodes.
- ``stageK_agent_steps_to_pass``: agent steps trained on stage K until it was passed (all NPCs' steps,
  counted from the stage's start), for each stage trained; null if it was not passed by its cap.
- ``stage3_success``, ``stage4_success``, ``stage5_success`` (like stages 0-2's): the shorter protocol is
  this same curriculum run taken further, ``--stages 0,1,2,3,4,5``: one set of brains trained through the
  stages in order, each stage under its cap, evaluated after its stage ends. A stage the run did not train
  (not in ``--stages``, or an earlier stage was not passed by its cap) reads null, with
  ``stageK_success_note`` saying why.
- ``full_curriculum_wall_s``: training seconds of a finished ``python -m train +experiment=full_curriculum``
  run, read from the ``summary.json`` of the run folder given by ``--full-curriculum-run`` (its
  ``wall_s``: the trainer's clock, which leaves out checkpoint writes), with that run's agent steps to pass
  each stage (``full_curriculum_stageK_agent_steps_to_pass``); null with ``full_curriculum_wall_s_note``
  when no folder is given.

Cells and nerves run as in `python -m train` (conf/nervous/default.yaml); the ablation is
`nervous.cells=false nervous.nerves.enabled=false nervous.lifeforce.per_brain_call=0`. Per stage it
also reports deaths per NPC and episode (fire, starvation). The peer baseline (Stable-Baselines3 PPO on
the same stage and budget) is `python -m benchmarks.sb3`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from train.config import register_configs, to_run_config
from train.evaluate import evaluate_brain
from train.loop import Trainer
from train.nervous_link import build_nervous
from world import stage_config
from world.rollout import POLICIES, evaluate

#: The stages the curriculum can train, in order; ``--stages`` is a prefix of it.
STAGES = (0, 1, 2, 3, 4, 5)
#: Seed and batch shape of every evaluation here, the heuristic's and the brains' alike.
EVAL_SEED, EVAL_ENVS = 0, 50


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


def full_curriculum(run_dir: Path) -> dict:
    """The figures of a finished training run's folder: its ``summary.json``'s wall time, agent steps and
    agent steps to pass each stage; ValueError naming the folder if it holds no readable summary."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ValueError(f"--full-curriculum-run={str(run_dir)!r}: no summary.json there "
                         "(give the folder of a finished `python -m train +experiment=full_curriculum` run)")
    try:
        summary = json.loads(path.read_text())
        wall_s, passed = float(summary["wall_s"]), list(summary["passed"])
        steps_to_pass = {int(row["stage"]): int(row["stage_steps"]) for row in passed}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--full-curriculum-run={str(run_dir)!r}: summary.json lacks wall_s or passed "
                         f"stages ({error})") from None
    out: dict = {"full_curriculum_wall_s": round(wall_s, 1),
                 "full_curriculum_agent_steps": summary.get("agent_steps"),
                 "full_curriculum_finished": summary.get("finished"),
                 "full_curriculum_stage": summary.get("stage")}
    for stage in STAGES:
        out[f"full_curriculum_stage{stage}_agent_steps_to_pass"] = steps_to_pass.get(stage)
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if not (overrides.is_file() and "experiment=full_curriculum" in overrides.read_text()):
        out["full_curriculum_wall_s_note"] = (f"{run_dir}/.hydra/overrides.yaml does not name "
                                              "+experiment=full_curriculum: check the run is that experiment")
    elif not summary.get("finished"):
        out["full_curriculum_wall_s_note"] = (f"the run did not finish the curriculum (it ended on stage "
                                              f"{summary.get('stage')}): wall_s is its time until then")
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="0,1,2",
                        help="curriculum stages to train: 0,1,2 or another prefix of 0,1,2,3,4,5")
    parser.add_argument("--caps", default="300,900,900,900,900,900",
                        help="wall-clock cap per stage, seconds (one per stage trained, at least)")
    parser.add_argument("--stage5-updates", type=int, default=3, help="timed stage-5 updates (0: skip)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per baseline and evaluation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--full-curriculum-run", type=Path, default=None,
                        help="folder of a finished `python -m train +experiment=full_curriculum` run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. ppo.num_envs=256")
    args = parser.parse_args(argv)
    try:
        stages = tuple(int(x) for x in args.stages.split(","))
    except ValueError:
        parser.error(f"--stages={args.stages!r}: give comma-separated stage numbers, e.g. 0,1,2")
    if not stages or stages != STAGES[:len(stages)]:
        parser.error(f"--stages={args.stages!r}: must be a prefix of 0,1,2,3,4,5 (0, 0,1, 0,1,2, ...)")
    if args.stage5_updates < 0:
        parser.error(f"--stage5-updates={args.stage5_updates}: must be >= 0")
    try:
        caps = [float(c) for c in args.caps.split(",")]
    except ValueError:
        parser.error(f"--caps={args.caps!r}: give comma-separated seconds, e.g. 300,900,900")
    if len(caps) < len(stages):
        parser.error(f"--caps={args.caps!r}: give one cap per stage trained ({len(stages)})")
    full_run: dict = {"full_curriculum_wall_s": None, "full_curriculum_wall_s_note":
                      "not given: --full-curriculum-run PATH reads it from a finished "
                      "+experiment=full_curriculum run's summary.json"}
    if args.full_curriculum_run is not None:
        try:
            full_run = full_curriculum(args.full_curriculum_run)
        except ValueError as error:
            parser.error(str(error))

    out: dict = {"cores": len(os.sched_getaffinity(0))}
    heuristic = {}
    for stage in STAGES:  # every stage's bar, trained or not: the same seed and episodes as the brains' eval
        config = stage_config(stage)
        heuristic[stage] = evaluate(config, POLICIES["heuristic"], args.episodes, seed=EVAL_SEED,
                                    num_envs=EVAL_ENVS)["success"]
        out[f"stage{stage}_heuristic_success"] = round(heuristic[stage], 4)
        if stage == 0:
            random = evaluate(config, POLICIES["random"], args.episodes, seed=EVAL_SEED,
                              num_envs=EVAL_ENVS)["success"]
            out["stage0_random_success"] = round(random, 4)
    thresholds = {s: max(heuristic[s], 0.9) if s == 0 else heuristic[s] for s in stages}

    register_configs()
    overrides = ["+experiment=benchmark", "logger.mode=disabled", "logger.progress=false",
                 f"seed={args.seed}"]
    pairs = ",".join(f"{s}:{t}" for s, t in thresholds.items())
    stage_list = f"[{','.join(map(str, stages))}]"
    overrides += [f"++curriculum.stage_thresholds={{{pairs}}}", f"curriculum.stages={stage_list}",
                  *args.overrides]
    with initialize_config_module("conf", version_base="1.3"):
        run = to_run_config(compose("config", overrides=overrides))
    senses, reflex = build_nervous(run.nervous, run.governor)
    trainer = Trainer(run, senses=senses, reflex=reflex)
    out["cells"], out["nerves"] = run.nervous.cells, run.nervous.nerves.enabled
    stage_start = 0.0
    trained: dict[int, bool] = {}  # stage -> passed
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
        trained[stage] = passed
        if passed:
            out[f"stage{stage}_wall_s"] = round(trainer.passed[-1]["elapsed_s"], 1)
            out[f"stage{stage}_agent_steps_to_pass"] = int(trainer.passed[-1]["stage_steps"])
        else:
            out[f"stage{stage}_wall_s"] = None
            out[f"stage{stage}_agent_steps_to_pass"] = None
        # evaluate the brains as they are now (the next stage's world may already be set up)
        t0 = time.perf_counter()
        result = evaluate_brain(trainer.brain, stage_config(stage), args.episodes, seed=EVAL_SEED,
                                num_envs=EVAL_ENVS, nervous=run.nervous)
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
    for stage in STAGES:
        if stage in trained:
            continue
        unpassed = [s for s, passed in trained.items() if not passed]
        why = (f"--stages {args.stages} leaves it out (--stages 0,1,2,3,4,5 trains on to it)"
               if stage not in stages else f"stage {unpassed[0]} was not passed within its cap")
        out[f"stage{stage}_success"] = None
        out[f"stage{stage}_success_note"] = f"not trained: {why}"
        out[f"stage{stage}_agent_steps_to_pass"] = None
    out["train_agent_steps_per_s"] = round(trainer.global_step / max(trainer.elapsed, 1e-9))
    out["train_agent_steps"] = trainer.global_step
    out["train_wall_s"] = round(trainer.elapsed, 1)
    if args.stage5_updates:
        base = [o for o in overrides if not o.lstrip("+").startswith("curriculum.")]  # stage 5 alone
        sps, steps = stage5_agent_steps_per_s(base, args.stage5_updates)
        out["train_stage5_agent_steps_per_s"] = round(sps)
        out["train_stage5_agent_steps"] = steps
    out |= full_run
    keys = ["cores", "train_agent_steps_per_s", "train_stage5_agent_steps_per_s", "stage0_success",
            "stage0_random_success", "stage0_heuristic_success", "stage0_wall_s", "stage1_success",
            "stage1_heuristic_success", "stage1_wall_s", "stage2_success", "stage2_heuristic_success",
            "stage2_wall_s"]
    keys += [f"stage{s}_{key}" for s in STAGES[3:] for key in ("success", "heuristic_success")]
    keys += [f"stage{s}_agent_steps_to_pass" for s in STAGES] + ["full_curriculum_wall_s"]
    ordered = {key: out.get(key) for key in keys} | {k: v for k, v in out.items() if k not in keys}
    print(json.dumps(ordered))
    return ordered


if __name__ == "__main__":
    main()
