"""The training loop: collect, compute advantages, update, advance the curriculum (CleanRL's phases).

Slot i of every env copy is driven by brain i; all brains act in one batched forward per tick. When
a stage brings more NPC slots than any before it (4 -> 16 -> 32), the brains grow: new brain i starts
as a clone of brain i mod n_old (Adam moments included) rather than from scratch. A stage with fewer
slots than brains trains only the first ones (the rest keep their weights).

Seams for the nervous system and the viewer, all optional (None by default):
- ``senses(world) -> float32[B, N, k]``: extra features appended to proprio (e.g. wave confidences);
  give it a ``size`` attribute (k) so the brain is built wide enough.
- ``reflex(world, actions) -> (actions, overridden)``: may replace the brains' actions [B, N]; the
  overridden samples are kept out of the PPO loss (the brain did not choose them).
- ``publisher.maybe_publish(world)``: called once per tick (``viewer=live``).

Kickstarting (``ppo.teacher=heuristic``, Schmitt et al. 2018): while the teacher's weight
(``PPOConfig.teacher_weight`` of the agent steps since the stage began) is above 0, each tick also asks the
scripted heuristic (``world.heuristics.heuristic_policy``) for its action on the same views, proprio and
action masks the brains get, and PPO's loss gains the cross-entropy of the brains' policy on it. The weight
anneals from ``ppo.teacher_coef`` to ``ppo.teacher_floor`` over ``ppo.teacher_steps`` agent steps, afresh on
each curriculum stage: the student starts from the teacher's competence and PPO improves past it, as the
learned governor first imitates the heuristic governor. ``teacher=none`` costs nothing.

Memory (``brain.memory=gru``): the trainer carries each slot's memory state [G, M, H] from tick to tick
and across rollouts; it is zeroed while an NPC is dead and when its episode begins (`memory_resets`),
and each rollout keeps the state it started from, for PPO over sequences.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from agents.brain import Brain
from agents.layout import SlotLayout
from agents.ppo import ppo_update
from agents.rollout import Rollout
from train.config import RunConfig
from world import Curriculum, CurriculumConfig, GridWorld, WorldConfig, stage_config
from world.heuristics import heuristic_policy
from world.tiles import NUM_ACTIONS, PROPRIO_SIZE

#: Episode statistics averaged into the env/ metrics.
ENV_KEYS = ("success", "return", "length", "deaths", "deaths_fire", "deaths_starved", "opened", "food_eaten")


def memory_resets(world: GridWorld) -> np.ndarray:
    """Where a memory state must start afresh, bool [B, N]: the slot is dead, or its episode begins."""
    return ~world.alive | (world.t == 0)[:, None]


class Senses(Protocol):
    """Extra per-NPC observation features (the nervous system's waves)."""

    size: int

    def __call__(self, world: GridWorld) -> np.ndarray: ...


class Reflex(Protocol):
    """Reflexes that may override the brains' actions."""

    def __call__(self, world: GridWorld, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class Publisher(Protocol):
    """A live frame feed."""

    def maybe_publish(self, world: GridWorld) -> Any: ...


@contextmanager
def single_threaded(threads: int) -> Iterator[None]:
    """Run the block with one torch thread, then go back to `threads`."""
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Trainer:
    """Per-NPC PPO brains trained on batched worlds through a curriculum of stages."""

    def __init__(self, run: RunConfig, senses: Senses | None = None, reflex: Reflex | None = None,
                 publisher: Publisher | None = None, world_class: type[GridWorld] = GridWorld) -> None:
        self.run, self.senses, self.reflex, self.publisher = run, senses, reflex, publisher
        #: The world the stages are built as (a GridWorld subclass for a hand-built layout, e.g. a test's).
        self.world_class = world_class
        torch.set_num_threads(run.runtime.torch_threads)
        torch.manual_seed(run.seed)
        self.generator = torch.Generator().manual_seed(run.seed)
        #: The kickstarting teacher's random numbers (the heuristic's tie breaks and random walk).
        self.teacher_rng = np.random.default_rng(run.seed)
        stages = [run.world.stage] if run.world is not None else list(run.curriculum.stages)
        c = run.curriculum
        self.curriculum = Curriculum(CurriculumConfig(stages=stages, threshold=c.threshold, window=c.window,
                                                      min_episodes=c.min_episodes))
        self.proprio_size = PROPRIO_SIZE + (senses.size if senses is not None else 0)
        self.brain = Brain(run.brain, self.world_config(stages[0]).n_npcs, proprio_size=self.proprio_size,
                           generator=torch.Generator().manual_seed(run.seed))
        self.optimizer = torch.optim.Adam(self.brain.parameters(), lr=run.ppo.learning_rate, eps=1e-5)
        self.global_step = 0
        self.updates = 0
        self.elapsed = 0.0
        #: One row per stage passed: stage, agent steps and training seconds when it was passed.
        self.passed: list[dict[str, float]] = []
        self.stage_started = {"step": 0, "elapsed": 0.0}
        #: Mean episodic return of the last update that finished episodes (None before any).
        self.last_return: float | None = None
        self._setup_stage(clone=True)

    # ======================================================================================
    # stages
    # ======================================================================================
    def world_config(self, stage: int) -> WorldConfig:
        """The world of a stage: the chosen fixed world, else the stage's preset."""
        return self.run.world if self.run.world is not None else stage_config(stage)

    @property
    def stage(self) -> int:
        """The stage being trained."""
        return self.curriculum.stage

    def _setup_stage(self, clone: bool) -> None:
        """Build the world and rollout storage for the curriculum's current stage."""
        run = self.run
        config = self.world_config(self.stage)
        self.curriculum.config.threshold = run.curriculum.stage_thresholds.get(self.stage,
                                                                               run.curriculum.threshold)
        seed = run.seed * 1000 + self.curriculum.index
        self.world = self.world_class(config, num_envs=run.ppo.num_envs, seed=seed, autoreset=True)
        B, N = self.world.num_envs, self.world.num_npcs
        if clone:
            self.brain.grow(N, self.optimizer)
        self.layout = SlotLayout(self.brain.config.shared, B, N)
        G, M = self.layout.groups, self.layout.width
        self.rollout = Rollout(G, run.ppo.num_steps, M, self.world.V, self.proprio_size, NUM_ACTIONS,
                               self.brain.state_size, teacher=run.ppo.teacher != "none")
        self.next_done = torch.zeros(G, M, dtype=torch.bool)
        #: Each slot's memory state [G, M, H] (width 0 without memory).
        self.memory = self.brain.initial_state(G, M)

    def to_groups(self, x: np.ndarray) -> Tensor:
        """World-layout array [B, N, ...] as brain-major [G, M, ...]."""
        return self.layout.to_groups(x)

    def to_slots(self, y: Tensor) -> np.ndarray:
        """Brain-major [G, M] back to world layout [B, N]."""
        return self.layout.to_slots(y)

    def observe(self) -> tuple[Tensor, Tensor, Tensor]:
        """The current (codes, proprio, action mask), brain-major."""
        proprio = self.world.proprio
        if self.senses is not None:
            proprio = np.concatenate([proprio, np.asarray(self.senses(self.world), np.float32)], axis=-1)
        world = self.world
        return self.to_groups(world.views), self.to_groups(proprio), self.to_groups(world.action_mask)

    @property
    def teacher_coef(self) -> float:
        """The kickstarting term's weight now: annealed over the agent steps since this stage began."""
        return self.run.ppo.teacher_weight(self.global_step - int(self.stage_started["step"]))

    def teacher_actions(self) -> Tensor:
        """The teacher's actions on the world's current observations, brain-major [G, M]."""
        world = self.world
        B, N, V = world.num_envs, world.num_npcs, world.V
        actions = heuristic_policy(world.views.reshape(B * N, V, V), world.proprio.reshape(B * N, -1),
                                   world.action_mask.reshape(B * N, -1), self.teacher_rng)
        return self.to_groups(actions.reshape(B, N))

    # ======================================================================================
    # one update
    # ======================================================================================
    def train_step(self) -> dict[str, float]:
        """Collect one rollout, update every brain, advance the curriculum; return the metrics."""
        run, ppo, world, rb, brain = self.run, self.run.ppo, self.world, self.rollout, self.brain
        start = time.perf_counter()
        stage = self.stage
        successes: list[float] = []
        totals = dict.fromkeys(ENV_KEYS, 0.0)
        episodes = 0.0
        teacher_coef = self.teacher_coef  # fixed for the rollout and its update
        kickstart = teacher_coef > 0

        # --- collect ---------------------------------------------------------------------------
        # one torch thread: a tick's forward is a few small ops, each of which a second thread slows
        # (a parallel region per op; on a loaded machine each waits for a descheduled sibling)
        threads = torch.get_num_threads()
        with torch.inference_mode(), single_threaded(threads):
            for t in range(ppo.num_steps):
                codes, proprio, action_mask = self.observe()
                rb.codes[:, t] = codes
                rb.proprio[:, t] = proprio
                rb.action_mask[:, t] = action_mask
                rb.dones[:, t] = self.next_done
                alive = self.to_groups(world.alive)
                if t == 0:
                    rb.initial_state.copy_(self.memory)
                rb.resets[:, t] = reset = self.to_groups(memory_resets(world))
                if kickstart:
                    rb.teacher_actions[:, t] = self.teacher_actions()
                action, logprob, value, self.memory = brain.step(
                    rb.codes[:, t], rb.proprio[:, t], rb.action_mask[:, t], self.memory, reset,
                    generator=self.generator)
                actions = self.to_slots(action)
                if self.reflex is not None:
                    actions, overridden = self.reflex(world, actions)
                    alive = alive & ~self.to_groups(np.asarray(overridden, dtype=bool))
                rb.mask[:, t] = alive
                rb.actions[:, t] = action
                rb.logprobs[:, t] = logprob
                rb.values[:, t] = value
                if self.publisher is not None:
                    self.publisher.maybe_publish(world)
                world.step(actions)
                rb.rewards[:, t] = self.to_groups(world.rewards)
                self.next_done = self.to_groups(world.died | world.terminals | world.truncations).clone()
                if world.env_done.any():
                    successes.extend(world.last_success[world.env_done].tolist())
                    stats = world.pop_stats()
                    n = stats["episodes"]
                    episodes += n
                    for key in ENV_KEYS:
                        totals[key] += stats[key] * n
            self.global_step += ppo.num_steps * world.num_envs * world.num_npcs
            codes, proprio, _ = self.observe()
            next_value = brain.get_value(codes, proprio, self.memory, self.to_groups(memory_resets(world)))
        rollout_s = time.perf_counter() - start

        # --- advantages ------------------------------------------------------------------------
        batch = rb.batch(next_value, self.next_done, ppo.gamma, ppo.gae_lambda, teacher=kickstart)

        # --- update ----------------------------------------------------------------------------
        lr = ppo.learning_rate
        if ppo.anneal_lr:
            lr *= max(0.0, 1.0 - self.global_step / run.total_agent_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses = ppo_update(brain, self.optimizer, batch, ppo, teacher_coef)
        self.updates += 1
        update_s = time.perf_counter() - start - rollout_s
        self.elapsed += time.perf_counter() - start

        # --- curriculum and metrics ------------------------------------------------------------
        window = self.curriculum.config.window
        rolling = (self.curriculum.state_dict()["recent"] + successes)[-window:]  # what record() judges
        passed = self.curriculum.record(successes)
        rolling_success = float(np.mean(rolling)) if rolling else 0.0
        metrics: dict[str, float] = {
            "charts/SPS": ppo.num_steps * world.num_envs * world.num_npcs / (rollout_s + update_s),
            "charts/stage": float(stage),
            "charts/success": rolling_success,
            "charts/learning_rate": lr,
            "charts/episodes": episodes,
            "perf/rollout_s": rollout_s,
            "perf/update_s": update_s,
            "perf/agent_steps": float(self.global_step),
            "perf/elapsed_s": self.elapsed,
        }
        if episodes:
            metrics["charts/episodic_return"] = self.last_return = totals["return"] / episodes
            metrics["charts/episodic_length"] = totals["length"] / episodes
            metrics.update({f"env/{key}": totals[key] / episodes for key in ENV_KEYS})
        if "teacher_agreement" in losses:  # how often the brain's likeliest action is the teacher's
            metrics["charts/teacher_agreement"] = losses.pop("teacher_agreement")
        metrics.update({f"losses/{key}": value for key, value in losses.items()})
        if ppo.teacher != "none":
            metrics["charts/teacher_coef"] = teacher_coef
        pop_stats = getattr(self.reflex, "pop_stats", None)
        if pop_stats is not None:  # the governor's figures (governor.runtime.GovernedReflex)
            metrics.update(pop_stats())
        if passed:
            self.passed.append({"stage": stage, "step": self.global_step, "elapsed_s": self.elapsed,
                                "stage_steps": self.global_step - self.stage_started["step"],
                                "stage_s": self.elapsed - self.stage_started["elapsed"],
                                "success": rolling_success})
            metrics["charts/passed_stage"] = float(stage)
            if not self.curriculum.finished:
                self.stage_started = {"step": self.global_step, "elapsed": self.elapsed}
                self._setup_stage(clone=True)
        return metrics

    @property
    def done_training(self) -> bool:
        """Whether the run's budget is spent (or, with stop_when_passed, the curriculum is done)."""
        run = self.run
        return (self.global_step >= run.total_agent_steps
                or (run.max_wall_s is not None and self.elapsed >= run.max_wall_s)
                or (run.stop_when_passed and self.curriculum.finished))
