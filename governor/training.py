"""Training the learned governor in the in-process runtime (``python -m train +experiment=governor``).

A fresh network first imitates ``governor.warm_start`` (the heuristic governor by default;
``governor.imitation``), then PPO improves on it. The NPCs' brains are frozen (a design choice, not
measured against training both: the governor learns against a fixed target, where brains trained
along would move under it and get fewer samples as it slows them): the PPO brains of
``checkpoint=<training checkpoint>``, or, without one, the scripted heuristic (``governor.drivers``).
``ppo.num_envs`` worlds of ``world`` (default stage 2) run under a ``LearnedGovernor`` that samples
its decisions and makes one PPO update per ``governor.rollout_ticks`` governor ticks; its reward is
the NPCs' world reward (brain calls and escalations already cost lifeforce) minus
``governor.cpu_charge`` per simulated CPU-second. PPO weighs the brain calls its rates ask for against
that reward by a Lagrange multiplier, which after each update follows the measured brain calls per
NPC-second (``governor/calls_multiplier``), holding them at or under ``governor.calls_target`` of the
fastest rate (``governor.learned``).

Files in the run folder: ``governor.pt`` (the network; ``governor=learned governor.checkpoint=...``
deploys it; also the optimiser and counters, for ``resume=<run folder>``), ``metrics.jsonl`` and
wandb (``governor/`` metrics), and at the end ``governor_compare.json`` and ``pareto.png``: every
governor on the same brains and seeds (``governor.compare``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from agents.brain import Brain
from governor.compare import compare_governors, pareto_png
from governor.drivers import BrainDriver, Driver, ScriptedDriver
from governor.imitation import imitate, record_teacher
from governor.learned import LearnedGovernor, load_network
from governor.runtime import GovernedReflex
from nervous.cells import CellBank
from nervous.config import NervousConfig
from nervous.nerves import NerveBank
from organs.link import make_link
from train.checkpoint import load_checkpoint, saved_run_config
from train.config import ConfigError, RunConfig
from train.nervous_link import close_nervous
from train.tracking import Tracker
from world import GridWorld, WorldConfig, stage_config

#: The file of a governor run's network and training state.
GOVERNOR_FILE = "governor.pt"
#: Episode statistics averaged into the env/ metrics.
ENV_KEYS = ("success", "return", "length", "deaths")


def driver_factory(run: RunConfig) -> tuple[Callable[[], Driver], NervousConfig, str]:
    """(new driver, the nervous config it runs with, a description) for run.checkpoint or the script."""
    if not run.checkpoint:
        nervous = run.nervous
        script = "the heuristic script"
        return (lambda: ScriptedDriver(CellBank(nervous.cell), seed=run.seed)), nervous, script
    state = load_checkpoint(run.checkpoint)
    saved = saved_run_config(state)
    meta = state["brain_meta"]
    brain = Brain(saved.brain, meta["n_brains"], proprio_size=meta["proprio_size"])
    brain.load_state_dict(state["brain"])
    brain.requires_grad_(False)
    BrainDriver(brain, saved.nervous)  # checks the widths once, here
    where = f"brains of {run.checkpoint}"
    return (lambda: BrainDriver(brain, saved.nervous, seed=run.seed)), saved.nervous, where


class GovernorTraining:
    """A learned governor trained by PPO over frozen brains on batched worlds."""

    def __init__(self, run: RunConfig, make_driver: Callable[[], Driver], nervous: NervousConfig) -> None:
        if run.governor.kind != "learned":
            raise ConfigError(f"governor={run.governor.kind}: mode=governor trains the learned governor "
                              "(+experiment=governor chooses it)")
        torch.set_num_threads(run.runtime.torch_threads)
        torch.manual_seed(run.seed)
        self.run, self.nervous = run, nervous
        self.world_config: WorldConfig = run.world or stage_config(2)
        self.world = GridWorld(self.world_config, num_envs=run.ppo.num_envs, seed=run.seed, autoreset=True)
        self.driver = make_driver()
        try:
            net = load_network(run.governor)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.imitation_loss: float | None = None
        if run.governor.warm_start and not run.governor.checkpoint and not run.resume:
            teacher_world = GridWorld(self.world_config, num_envs=run.ppo.num_envs, seed=run.seed + 1,
                                      autoreset=True)
            x, level, gates = record_teacher(teacher_world, make_driver(), run.governor, nervous,
                                             run.governor.warm_start_ticks)
            self.imitation_loss = imitate(net, x, level, gates, seed=run.seed)
        self.governor = LearnedGovernor(run.governor, net, learning=True, seed=run.seed)
        nerves = NerveBank(nervous.nerves) if nervous.nerves.enabled else None
        # with cortex.backend=engine (or http) its open gates escalate, so the gate heads learn what they cost
        self.reflex = GovernedReflex(run.governor, nervous.lifeforce, nerves, cells=self.driver.bank,
                                     governor_factory=lambda _: self.governor,
                                     escalator=make_link(run.cortex, nervous.lifeforce))
        self.npc_ticks = 0
        self.elapsed = 0.0

    @property
    def ticks_per_step(self) -> int:
        """World ticks of one training step: the governor ticks of one PPO update."""
        return self.run.governor.rollout_ticks * self.reflex.period_ticks

    def train_step(self) -> dict[str, float]:
        """Run one update's worth of world ticks (the governor learns inside); the metrics."""
        start = time.perf_counter()
        world = self.world
        totals = dict.fromkeys(ENV_KEYS, 0.0)
        episodes = 0.0
        for _ in range(self.ticks_per_step):
            actions, _ = self.reflex(world, self.driver(world))
            world.step(actions)
            if world.env_done.any():
                stats = world.pop_stats()
                n = stats["episodes"]
                episodes += n
                for key in ENV_KEYS:
                    totals[key] += stats[key] * n
        self.npc_ticks += self.ticks_per_step * world.num_envs * world.num_npcs
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        metrics = {"charts/SPS": self.ticks_per_step * world.num_envs * world.num_npcs / seconds,
                   "charts/stage": float(self.world_config.stage), "perf/elapsed_s": self.elapsed,
                   "governor/updates": float(self.governor.updates)}
        if episodes:
            metrics.update({f"env/{key}": totals[key] / episodes for key in ENV_KEYS})
            metrics["charts/success"] = totals["success"] / episodes
            metrics["charts/episodic_return"] = totals["return"] / episodes
        metrics.update(self.reflex.pop_stats())
        calls = metrics.get("governor/brain_calls_per_npc_s")
        if calls is not None:  # the calls constraint: dual ascent on the rate just measured
            metrics["governor/calls_multiplier"] = self.governor.dual_step(calls)
        return metrics

    def state(self) -> dict[str, Any]:
        """What governor.pt holds: the learned governor's state, counters and the run's config."""
        return self.governor.state_dict() | {"npc_ticks": self.npc_ticks, "elapsed_s": self.elapsed,
                                             "config": OmegaConf.to_container(OmegaConf.structured(self.run))}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from governor.pt's state."""
        self.governor.load_state_dict(state)
        self.npc_ticks, self.elapsed = int(state.get("npc_ticks", 0)), float(state.get("elapsed_s", 0.0))


def save_governor(training: GovernorTraining, path: Path) -> Path:
    """Write governor.pt atomically."""
    tmp = path.with_suffix(".tmp")
    torch.save(training.state(), tmp)
    tmp.replace(path)
    return path


def governor_mode(run: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Train the learned governor, then compare every governor on the same brains and seeds."""
    if run.resume:
        path = Path(run.resume) / GOVERNOR_FILE
        if not path.is_file():
            raise ConfigError(f"resume={run.resume}: the folder holds no {GOVERNOR_FILE}")
        run_dir = Path(run.resume)
    make_driver, nervous, driven_by = driver_factory(run)
    training = GovernorTraining(run, make_driver, nervous)
    if run.resume:
        training.restore(torch.load(Path(run.resume) / GOVERNOR_FILE, map_location="cpu", weights_only=False))
    tracker = Tracker(run.logger, run_dir, OmegaConf.to_container(OmegaConf.structured(run), resolve=True),
                      total=run.total_agent_steps, initial=training.npc_ticks, name=run_dir.name)
    tracker.message(f"training the learned governor on stage {training.world_config.stage} "
                    f"({training.world_config.name}), NPCs driven by {driven_by}")
    if training.imitation_loss is not None:
        tracker.message(f"warm start: imitated the {run.governor.warm_start} governor "
                        f"(cross-entropy {training.imitation_loss:.3f})")
    path = run_dir / GOVERNOR_FILE
    interrupted = False
    updates = 0
    try:
        while training.npc_ticks < run.total_agent_steps and (run.max_wall_s is None
                                                              or training.elapsed < run.max_wall_s):
            metrics = training.train_step()
            updates += 1
            tracker.log(metrics, training.npc_ticks, write=updates % run.logger.log_every == 0)
            if updates % run.checkpoint_every == 0:
                save_governor(training, path)
    except KeyboardInterrupt:
        interrupted = True
        tracker.message("interrupted: saving the governor")
    save_governor(training, path)
    close_nervous(training.reflex)
    deployed = dataclasses.replace(run.governor, checkpoint=str(path))
    tracker.message(f"comparing governors on {run.episodes} episodes (seed {run.seed})")
    rows = compare_governors(training.world_config, make_driver, deployed, nervous,
                             learned=lambda c: LearnedGovernor(c), episodes=run.episodes, seed=run.seed)
    (run_dir / "governor_compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    png = pareto_png(rows, run_dir / "pareto.png",
                     f"stage {training.world_config.stage}: return vs brain calls ({driven_by})")
    if tracker.wandb_run is not None:
        import wandb

        tracker.wandb_run.log({"governor/pareto": wandb.Image(str(png))}
                              | {f"compare/{name}/{key}": value for name, row in rows.items()
                                 for key, value in row.items()})
    tracker.close()
    summary = {"governor": str(path), "npc_ticks": training.npc_ticks, "wall_s": training.elapsed,
               "updates": training.governor.updates, "interrupted": interrupted, "driven_by": driven_by,
               "calls_multiplier": training.governor.calls_multiplier,
               "compare": rows, "pareto": str(png)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_compare(rows))
    print(f"run folder: {run_dir}/ ({GOVERNOR_FILE}, governor_compare.json, pareto.png, metrics.jsonl)\n"
          f"deploy it: python -m train governor=learned governor.checkpoint={path} ...")
    return summary


def format_compare(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per governor."""
    columns = ("success", "return", "brain_calls_per_npc_s", "cpu_s_per_npc_min", "escalations_per_100_ticks")
    header = f"{'governor':<24}" + "".join(f"{c[:14]:>16}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        lines.append(f"{name:<24}" + "".join(f"{row.get(c, float('nan')):>16.3f}" for c in columns))
    return "\n".join(lines)
