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

The learned governor is trained here first (``--train-ticks`` NPC ticks of ``+experiment=governor``
on stage 2, warm-started from the heuristic governor, seed fixed) unless ``--governor-checkpoint``
names one; the same network governs stage 4. The brains are the heuristic script unless
``--checkpoint`` names a training checkpoint. ``--live`` adds the live-organism figures (64 NPC
processes, ``benchmarks.governor_live``). The Pareto pictures (return against brain calls) are written
to ``--out`` (``pareto_stage2.png``, ``pareto_stage4.png``) and, with ``--wandb``, logged offline.
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

from governor.compare import FIGURES, compare_governors, pareto_png
from governor.config import GovernorConfig
from governor.costs import DEFAULT_COSTS, measure_costs
from governor.inputs import NUM_FEATURES, GlobalContext
from governor.learned import LearnedGovernor
from governor.training import GovernorTraining, driver_factory, save_governor
from organs.config import CortexConfig
from organs.link import CortexLink
from train.config import RunConfig
from world import stage_config


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


def train_learned(run: RunConfig, out: Path) -> tuple[Path, float]:
    """Train the learned governor for run.total_agent_steps NPC ticks; (governor.pt, seconds)."""
    make_driver, nervous, _ = driver_factory(run)
    training = GovernorTraining(run, make_driver, nervous)
    start = time.perf_counter()
    while training.npc_ticks < run.total_agent_steps:
        training.train_step()
        print(f"  governor training: {training.npc_ticks:,} / {run.total_agent_steps:,} NPC ticks",
              file=sys.stderr, flush=True)
    return save_governor(training, out / "governor.pt"), time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100, help="episodes per governor and stage")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-ticks", type=int, default=3_000_000,
                        help="NPC ticks to train the learned governor")
    parser.add_argument("--governor-checkpoint", default="", help="a trained governor.pt (skips training)")
    parser.add_argument("--checkpoint", default="", help="a training checkpoint whose brains drive the NPCs")
    parser.add_argument("--cpu-charge", type=float, default=GovernorConfig().cpu_charge)
    parser.add_argument("--out", default="runs/benchmark-governor",
                        help="folder for governor.pt and the PNGs")
    parser.add_argument("--live", action="store_true", help="also run the 64-NPC live comparison")
    parser.add_argument("--wandb", action="store_true", help="log the Pareto pictures to wandb (offline)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    config = GovernorConfig(kind="learned", cpu_charge=args.cpu_charge)
    run = RunConfig(world=stage_config(2), seed=args.seed, governor=config,
                    total_agent_steps=args.train_ticks, checkpoint=args.checkpoint or None)
    run.ppo.num_envs = 32
    result: dict[str, Any] = {"cores": os.cpu_count(), "episodes": args.episodes, "seed": args.seed}
    measured = measure_costs()
    result["costs_measured"] = measured.as_dict()
    result["costs_default"] = DEFAULT_COSTS.as_dict()
    if args.governor_checkpoint:
        path, result["learned_train_s"] = Path(args.governor_checkpoint), 0.0
    else:
        path, result["learned_train_s"] = train_learned(run, out)
        result["learned_train_npc_ticks"] = args.train_ticks
    deployed = dataclasses.replace(config, checkpoint=str(path))
    make_driver, nervous, driven_by = driver_factory(run)
    result["brains"] = driven_by
    learned = LearnedGovernor(deployed)
    result["learned_forward_us_per_npc"] = round(forward_us_per_npc(learned), 3)

    rows_by_stage: dict[int, dict[str, dict[str, float]]] = {}
    for stage in (2, 4):  # stage 4 with the cortex (the in-process planner) behind the gates
        def make_escalator(stage: int = stage) -> CortexLink | None:
            return CortexLink(CortexConfig(backend="engine")) if stage == 4 else None

        rows = compare_governors(stage_config(stage), make_driver, deployed, nervous,
                                 learned=lambda c: LearnedGovernor(c), episodes=args.episodes, seed=args.seed,
                                 make_escalator=make_escalator)
        rows_by_stage[stage] = rows
        for name, row in rows.items():
            for figure in FIGURES:
                result[f"{name}_stage{stage}_{figure}"] = round(float(row[figure]), 4)
        png = pareto_png(rows, out / f"pareto_stage{stage}.png",
                         f"stage {stage}: return vs brain calls ({driven_by})")
        result[f"pareto_stage{stage}"] = str(png)

    s2 = rows_by_stage[2]
    learned_row, fixed = s2["learned"], s2["fixed"]
    result["learned_success_vs_fixed"] = round(learned_row["success"] / max(fixed["success"], 1e-9), 4)
    result["learned_brain_calls_vs_fixed"] = round(
        learned_row["brain_calls_per_npc_s"] / fixed["brain_calls_per_npc_s"], 4)
    result["learned_cpu_vs_fixed"] = round(learned_row["cpu_s_per_npc_min"] / fixed["cpu_s_per_npc_min"], 4)
    for other in ("fixed", "heuristic", "budget"):
        result[f"learned_return_gain_vs_{other}"] = round(learned_row["return"] - s2[other]["return"], 4)
    result["learned_success_minus_budget_at_equal_calls"] = round(
        learned_row["success"] - s2["budget_at_learned_calls"]["success"], 4)
    result["budget_at_learned_calls_budget_in_ms"] = round(s2["budget_at_learned_calls"]["budget_in_ms"], 4)

    if args.live:
        from benchmarks.governor_live import run_live64

        result.update(run_live64(governor_checkpoint=str(path)))
    if args.wandb:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        with wandb.init(project="nimmerverse", mode="offline", dir=str(out), name="benchmark-governor",
                        config={k: v for k, v in result.items() if not isinstance(v, dict)}) as wb:
            wb.log({f"governor/pareto_stage{s}": wandb.Image(result[f"pareto_stage{s}"]) for s in (2, 4)})
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
