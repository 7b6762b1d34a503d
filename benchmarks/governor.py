"""Governor benchmark: ``python -m benchmarks.governor [--episodes 100] [--live]``, one JSON object.

Every governor (fixed, heuristic, budget, learned) on stages 2 and 4 (with the cortex's in-process
planner behind the gates) over the same brains and seeds
(in-process runtime, ``governor.compare``): success, mean return, brain calls per NPC-second,
simulated CPU-seconds per NPC-minute and escalations per 100 NPC ticks, as ``<governor>_stage<s>_<figure>``.
On stage 2 the learned governor against the others (``learned_success_vs_fixed``,
``learned_brain_calls_vs_fixed``, ``learned_cpu_vs_fixed`` as ratios; ``learned_return_gain_vs_fixed``
and over heuristic and budget as differences; ``learned_success_minus_budget_at_equal_calls``, the
budget allocator given the learned governor's brain calls), the governor's forward time per NPC and
the cost model (measured now against the embedded defaults).

Each stage has its own learned governor, trained here first (seed fixed, warm-started from the
heuristic governor, under ``governor.calls_target``): ``--train-ticks`` NPC ticks on stage 2 and
``--train-ticks-stage4`` on stage 4 with the cortex's planner behind its gates (``+experiment=governor
world=stage4 cortex.backend=engine``), unless ``--governor-checkpoint`` / ``--governor-checkpoint-stage4``
name them. Every governor runs on the same seeds. The brains are the heuristic script unless
``--checkpoint`` names a training checkpoint. CPU is priced with today's ``DEFAULT_COSTS`` and, on stage
2 for fixed and learned, once more with the reflex tick priced as cells and nerves run batched for 64
NPCs in one process (``batched_reflex_tick_s``; ``*_cpu_s_per_npc_min_batched_reflex``,
``learned_cpu_vs_fixed_batched_reflex``). ``--live`` adds the live-organism figures (64 NPC processes,
``benchmarks.governor_live``). The Pareto pictures (return against brain calls) are written to ``--out``
(``pareto_stage2.png``, ``pareto_stage4.png``) and, with ``--wandb``, logged offline. ``benchmark_s`` is
the whole run's wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from governor.baselines import make_governor
from governor.compare import FIGURES, compare_governors, evaluate_governor, pareto_png
from governor.config import GovernorConfig
from governor.costs import DEFAULT_COSTS, measure_costs
from governor.inputs import NUM_FEATURES, GlobalContext
from governor.learned import LearnedGovernor
from governor.training import GovernorTraining, driver_factory, format_compare, save_governor
from nervous.cells import CellBank
from nervous.config import NervousConfig
from nervous.nerves import NerveBank
from organs.config import CortexConfig
from organs.link import CortexLink
from train.config import RunConfig
from train.nervous_link import close_nervous
from world import GridWorld, stage_config


def forward_us_per_npc(governor: LearnedGovernor, envs: int = 32, npcs: int = 32, repeats: int = 20) -> float:
    """Microseconds of one batched governor decision per NPC (B envs x N NPCs at once)."""
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1, size=(envs, npcs, NUM_FEATURES)).astype(np.float32)
    features[..., 0] = 1.0
    contexts = [GlobalContext(tick=0)] * envs
    governor.decide_batch(features, contexts)
    start = time.perf_counter()
    for _ in range(repeats):
        governor.decide_batch(features, contexts)
    return (time.perf_counter() - start) / repeats / (envs * npcs) * 1e6


def train_learned(run: RunConfig, path: Path) -> tuple[Path, float, float]:
    """Train the learned governor for run.total_agent_steps NPC ticks; (governor.pt, seconds, the calls
    multiplier it ended with)."""
    make_driver, nervous, _ = driver_factory(run)
    training = GovernorTraining(run, make_driver, nervous)
    start = time.perf_counter()
    try:
        while training.npc_ticks < run.total_agent_steps:
            metrics = training.train_step()
            print(f"  governor training, stage {run.world.stage}: {training.npc_ticks:,} / "
                  f"{run.total_agent_steps:,} NPC ticks, "
                  f"{metrics.get('governor/brain_calls_per_npc_s', float('nan')):.2f} calls/NPC-s, "
                  f"multiplier {training.governor.calls_multiplier:.2f}", file=sys.stderr, flush=True)
    finally:
        close_nervous(training.reflex)
    return save_governor(training, path), time.perf_counter() - start, training.governor.calls_multiplier


def batched_reflex_tick_s(npcs: int = 64, ticks: int = 300, seed: int = 0) -> float:
    """CPU seconds per NPC of one world tick of reflexes run batched in one process (the cell bank's step
    and the nerves over all npcs NPCs at once, stage 4): the in-process path, which the world server
    takes over from the NPC processes."""
    config = stage_config(4)
    world = GridWorld(config, num_envs=max(1, npcs // config.n_npcs), seed=seed, autoreset=True)
    nervous = NervousConfig()
    cells, nerves = CellBank(nervous.cell), NerveBank(nervous.nerves)
    rng = np.random.default_rng(seed)
    m = world.num_envs * world.num_npcs
    spent = 0.0
    for _ in range(ticks):
        views, proprio = world.views.reshape(m, world.V, world.V), world.proprio.reshape(m, -1)
        proposed = rng.integers(0, world.action_mask.shape[-1], size=m)
        start = time.process_time()
        cells.step(views, proprio, world.ticks)
        final, _ = nerves.apply(proposed, views, proprio)
        spent += time.process_time() - start
        world.step(final.reshape(world.num_envs, world.num_npcs))
    return spent / ticks / m


def stage_run(stage: int, config: GovernorConfig, args: argparse.Namespace) -> RunConfig:
    """The governor training run of a stage: stage 4 with the cortex (the in-process planner) on."""
    if stage == 4:
        run = RunConfig(world=stage_config(4), seed=args.seed, governor=dataclasses.replace(
            config, warm_start_ticks=args.stage4_warm_start_ticks), total_agent_steps=args.train_ticks_stage4,
            checkpoint=args.checkpoint or None)
        run.ppo.num_envs = args.stage4_envs
        run.cortex.backend = "engine"
    else:
        run = RunConfig(world=stage_config(2), seed=args.seed, governor=config,
                        total_agent_steps=args.train_ticks, checkpoint=args.checkpoint or None)
        run.ppo.num_envs = 32
    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100, help="episodes per governor and stage")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-ticks", type=int, default=2_000_000,
                        help="NPC ticks to train the learned governor on stage 2")
    parser.add_argument("--train-ticks-stage4", type=int, default=800_000,
                        help="NPC ticks to train the learned governor on stage 4 (cortex on)")
    parser.add_argument("--stage4-envs", type=int, default=16, help="worlds of stage 4 in its training")
    parser.add_argument("--stage4-warm-start-ticks", type=int, default=64,
                        help="governor ticks of the heuristic teacher recorded on stage 4")
    parser.add_argument("--governor-checkpoint", default="",
                        help="a trained stage-2 governor.pt (skips its training)")
    parser.add_argument("--governor-checkpoint-stage4", default="",
                        help="a trained stage-4 governor.pt (skips its training)")
    parser.add_argument("--checkpoint", default="", help="a training checkpoint whose brains drive the NPCs")
    parser.add_argument("--cpu-charge", type=float, default=GovernorConfig().cpu_charge)
    parser.add_argument("--calls-target", type=float, default=GovernorConfig().calls_target)
    parser.add_argument("--out", default="runs/benchmark-governor",
                        help="folder for the governor.pt files and the PNGs")
    parser.add_argument("--live", action="store_true", help="also run the 64-NPC live comparison")
    parser.add_argument("--wandb", action="store_true", help="log the Pareto pictures to wandb (offline)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    config = GovernorConfig(kind="learned", cpu_charge=args.cpu_charge, calls_target=args.calls_target)
    result: dict[str, Any] = {"cores": os.cpu_count(), "episodes": args.episodes, "seed": args.seed,
                              "calls_target": args.calls_target}
    measured = measure_costs()
    result["costs_measured"] = measured.as_dict()
    result["costs_default"] = DEFAULT_COSTS.as_dict()
    # today's prices with only the reflex tick re-priced: cells and nerves batched in one process
    batched = dataclasses.replace(DEFAULT_COSTS, reflex_tick_s=batched_reflex_tick_s())
    result["costs_batched_reflex"] = batched.as_dict()

    checkpoints = {2: args.governor_checkpoint, 4: args.governor_checkpoint_stage4}
    rows_by_stage: dict[int, dict[str, dict[str, float]]] = {}
    for stage in (2, 4):  # each stage's own learned governor; stage 4 with the cortex behind the gates
        run = stage_run(stage, config, args)
        suffix = "" if stage == 2 else "_stage4"
        if checkpoints[stage]:
            path, result[f"learned_train_s{suffix}"] = Path(checkpoints[stage]), 0.0
        else:
            path, seconds, multiplier = train_learned(run, out / f"governor_stage{stage}.pt")
            result[f"learned_train_s{suffix}"] = round(seconds, 1)
            result[f"learned_train_npc_ticks{suffix}"] = run.total_agent_steps
            result[f"learned_calls_multiplier{suffix}"] = round(multiplier, 3)
        deployed = dataclasses.replace(run.governor, checkpoint=str(path))
        make_driver, nervous, driven_by = driver_factory(run)
        result["brains"] = driven_by
        if stage == 2:
            result["learned_forward_us_per_npc"] = round(forward_us_per_npc(LearnedGovernor(deployed)), 3)

        def make_escalator(stage: int = stage) -> CortexLink | None:
            return CortexLink(CortexConfig(backend="engine")) if stage == 4 else None

        rows = compare_governors(stage_config(stage), make_driver, deployed, nervous,
                                 learned=lambda c: LearnedGovernor(c), episodes=args.episodes, seed=args.seed,
                                 make_escalator=make_escalator, equal_calls=stage == 2)
        if stage == 2:  # the same governors with the reflex tick priced as batched in one process
            for name in ("fixed", "learned"):
                factory = (lambda c: LearnedGovernor(c)) if name == "learned" else make_governor
                row = evaluate_governor(stage_config(2), make_driver(), dataclasses.replace(
                    deployed, kind=name), nervous, args.episodes, args.seed, costs=batched, factory=factory)
                rows[name]["cpu_s_per_npc_min_batched_reflex"] = row["cpu_s_per_npc_min"]
        rows_by_stage[stage] = rows
        for name, row in rows.items():
            for figure in (*FIGURES, "gate_open_fraction", "cpu_s_per_npc_min_batched_reflex"):
                if figure in row:
                    result[f"{name}_stage{stage}_{figure}"] = round(float(row[figure]), 4)
        png = pareto_png(rows, out / f"pareto_stage{stage}.png",
                         f"stage {stage}: return vs brain calls ({driven_by})")
        result[f"pareto_stage{stage}"] = str(png)
        print(f"stage {stage} (learned governor trained on stage {stage}):\n{format_compare(rows)}",
              file=sys.stderr, flush=True)

    s2 = rows_by_stage[2]
    learned_row, fixed = s2["learned"], s2["fixed"]
    result["learned_success_vs_fixed"] = round(learned_row["success"] / max(fixed["success"], 1e-9), 4)
    result["learned_brain_calls_vs_fixed"] = round(
        learned_row["brain_calls_per_npc_s"] / fixed["brain_calls_per_npc_s"], 4)
    result["learned_cpu_vs_fixed"] = round(learned_row["cpu_s_per_npc_min"] / fixed["cpu_s_per_npc_min"], 4)
    result["learned_cpu_vs_fixed_batched_reflex"] = round(
        learned_row["cpu_s_per_npc_min_batched_reflex"] / fixed["cpu_s_per_npc_min_batched_reflex"], 4)
    for other in ("fixed", "heuristic", "budget"):
        result[f"learned_return_gain_vs_{other}"] = round(learned_row["return"] - s2[other]["return"], 4)
    result["learned_success_minus_budget_at_equal_calls"] = round(
        learned_row["success"] - s2["budget_at_learned_calls"]["success"], 4)
    result["budget_at_learned_calls_budget_in_ms"] = round(s2["budget_at_learned_calls"]["budget_in_ms"], 4)
    s4 = rows_by_stage[4]
    result["learned_stage4_return_gain_vs_heuristic"] = round(
        s4["learned"]["return"] - s4["heuristic"]["return"], 4)

    if args.live:
        from benchmarks.governor_live import run_live64

        result.update(run_live64(checkpoint=args.governor_checkpoint or str(out / "governor_stage2.pt")))
    if args.wandb:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        with wandb.init(project="nimmerverse", mode="offline", dir=str(out), name="benchmark-governor",
                        config={k: v for k, v in result.items() if not isinstance(v, dict)}) as wb:
            wb.log({f"governor/pareto_stage{s}": wandb.Image(result[f"pareto_stage{s}"]) for s in (2, 4)})
    result["benchmark_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
