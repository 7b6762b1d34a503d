"""The governor in the in-process (training) runtime: tick rates, CPU quotas, gates and what thinking costs.

``GovernedReflex`` plugs into the trainer's and evaluator's ``reflex(world, actions)`` seam: the brains
propose an action for every NPC every world tick (one batched forward), and the governed reflex decides
what happens, with the same semantics as the live organism (``agents.npc``):

- **Tick rate.** An NPC at r Hz calls its brain once every ``p = 20 / r`` world ticks (``BrainClock``):
  at 5 Hz once every 4 ticks. The calls are **staggered**: NPC n's brain ticks are the world ticks t
  with ``t % p == n % p`` (``own_tick``), so N NPCs at one rate wake N / p at a tick instead of all N
  at one tick and none at the next p - 1 (UE's budget allocator staggers its ticks the same way); at
  20 Hz (p = 1) every tick is every NPC's. Between brain calls it **stays** (the live world server's
  rule for an NPC that sent no action), while its cells and nerves still run every world tick as
  reflexes: a nerve may move it (out of danger, round an obstacle) as it may override a brain's
  action. An NPC that is born (episode start, respawn) calls its brain at its first own tick (this
  one or within its period: at 20 Hz at once; the NPCs of an episode that restarts at 5 Hz are woken a
  quarter a tick over 4 ticks, not all at one); a new, faster rate takes effect at its next own tick
  of the new period (within it), a slower one after the current period. Repeating the brain's last
  action instead was measured and rejected: on stage 2 (heuristic brains, 200 episodes) NPCs at 10 Hz
  overshoot what they walk to and oscillate around it (success 0.07 against 0.72 at 20 Hz), while
  staying gives 0.84 at 10 Hz.
- **What it costs.** Every brain call charges ``lifeforce.per_brain_call`` and every escalation
  ``lifeforce.per_escalation`` (with ``per_tick`` on every living tick) through ``GridWorld.charge``:
  thinking is paid for in lifeforce, so a good governor raises reward, not only saves compute.
- **CPU.** A simulated meter prices each NPC's work with ``governor.costs.CostModel`` (reflexes every
  tick, brain calls, escalations; measured from the real parts). A **quota** of q % is a token bucket
  of CPU seconds (refilled at q/100 core, holding at most one governor period's worth, starting empty
  and kept across the NPC's lives, as its cgroup is): a brain call due while the bucket holds less than
  the call's cost waits for the next tick with credit (counted as ``throttled``). The
  governor fits the quotas of each env's living NPCs into ``governor.cpu_budget`` (an env is one
  machine).
- **Governor ticks.** Every ``20 / governor_hz`` world ticks the governor decides for all NPCs of all
  envs at once (one ``decide_batch`` when it has one, e.g. the learned network; else one ``decide`` per
  env) from ``governor.inputs`` features built of the world's arrays, the cells' waves and collapse
  events (``nervous.collapse.BatchCollapse``) and the meter.
- **Gates.** A collapse event on a region whose gate is open asks the ``escalator`` (the cortex link,
  ``organs.link.CortexLink``) for a plan; while an NPC follows a plan its actions come from the plan,
  and its brain is **not called**: no ``per_brain_call``, no simulated CPU, no credit spent (those
  samples stay out of the PPO loss, as overridden ones do). The tick its plan ends (done or invalid)
  the brain is due at once, its period having passed meanwhile (the live world server does not wake an
  NPC a plan acts for, ``agents.world_server``, and wakes it the tick its plan ends). An event waits for its
  gate up to ``collapse_hold_ticks`` world ticks (as long as the governor's inputs hold it) and is used
  up when offered to the escalator: gates are decided at governor ticks *from* the collapses held, so
  an event that fired between two governor ticks would otherwise never meet the gate it opens. A plan
  steps every world tick whatever the NPC's tick rate (following a path is a reflex's work, not a
  brain call), and nerves leave its steps alone (``NerveBank.apply(keep=...)``).
- **Organ gates.** Each decision's vision organ gates (``governor.organ_gates``) that changed go to an
  escalator that takes them (``organ_gate(OrganGate)``, row ``b * N + n``); with
  ``cortex.vision_gate=governed`` the link looks only for NPCs whose gate is open.

Samples where the brain was not called, was overridden by a nerve or was following a plan are reported
as overridden, so the trainer keeps them out of the PPO loss: the brain did not choose them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from governor.baselines import Governor, make_governor
from governor.config import WORLD_HZ, GovernorConfig
from governor.costs import DEFAULT_COSTS, CostModel
from governor.decisions import Decisions
from governor.inputs import CPU_LOAD, NUM_REGIONS, GlobalContext, GovernorInputs
from governor.organ_gates import VISION
from nervous.cells import CellBank
from nervous.cells.base import WaveArrays
from nervous.collapse import BatchCollapse
from nervous.lifeforce import LifeforceConfig, lifeforce_cost
from nervous.messages import OrganGate
from nervous.nerves import NerveBank
from world import GridWorld
from world.tiles import A

#: Weight of the newest world tick in the reward-rate and CPU-use moving averages.
RATE_EMA = 0.05


def own_tick(npc: np.ndarray | int, period: np.ndarray | int, after: np.ndarray | int) -> np.ndarray:
    """The first world tick later than after that is NPC npc's brain tick at period p (world ticks): its
    brain ticks are the t with ``t % p == npc % p``, staggered over the NPCs (both runtimes)."""
    npc, period, after = np.asarray(npc), np.asarray(period), np.asarray(after)
    return after + (npc - after - 1) % period + 1


class BrainClock:
    """Which NPCs call their brain at each world tick, for tick rates in Hz over a [B, N] batch: NPC n
    at its own ticks (``own_tick``)."""

    def __init__(self, shape: tuple[int, ...], rate: int = WORLD_HZ) -> None:
        self.period = np.full(shape, WORLD_HZ // rate, dtype=np.int64)
        """World ticks between two brain calls."""
        self.wait = np.zeros(shape, dtype=np.int64)
        """World ticks until the next brain call (0 or less: due now)."""
        self.npc = np.broadcast_to(np.arange(shape[-1], dtype=np.int64), shape)
        """Each row's NPC index n (its brain ticks' phase)."""
        self.tick = 0
        """The world tick now (ticks advanced so far)."""

    def set_rates(self, rate: np.ndarray) -> None:
        """New tick rates (Hz, each dividing 20): a shorter period shortens the current wait, to the NPC's
        next own tick at it (this tick or within the period)."""
        rate = np.asarray(rate, dtype=np.int64)
        if np.any(rate < 1) or np.any(WORLD_HZ % rate):
            raise ValueError(f"tick rates {sorted(set(rate.ravel().tolist()))}: each must divide {WORLD_HZ}")
        self.period = np.broadcast_to(WORLD_HZ // rate, self.wait.shape)
        self.wait = np.minimum(self.wait, own_tick(self.npc, self.period, self.tick - 1) - self.tick)

    def due(self) -> np.ndarray:
        """bool [B, N]: brains due at this tick."""
        return self.wait <= 0

    def advance(self, called: np.ndarray) -> None:
        """One world tick passed; called bool [B, N] are the brains that ran at it (next: at their own
        tick after it)."""
        after = own_tick(self.npc, self.period, self.tick) - self.tick - 1
        self.wait = np.where(called, after, self.wait - 1)
        self.tick += 1

    def reset(self, rows: np.ndarray) -> None:
        """Rows bool [B, N] (born, or their episode restarted) call their brain at their first own tick from
        this one on (within their period)."""
        rows = np.asarray(rows, dtype=bool)
        first = own_tick(self.npc, self.period, self.tick - 1) - self.tick
        self.wait[rows] = first[rows]


class Trails(Protocol):
    """Where decisions are recorded (``organs.trails.recorder.TrailRecorder``)."""

    def gates(self, world: GridWorld, before: np.ndarray, after: np.ndarray, features: np.ndarray) -> None:
        """Record the gates that changed at a governor tick."""
        ...

    def tick(self, world: GridWorld) -> None:
        """One world tick passed (outcomes of earlier decisions)."""
        ...


class Escalator(Protocol):
    """The cortex link of the in-process runtime: escalations in, plan actions out."""

    def escalate(self, world: GridWorld, requests: np.ndarray, priority: np.ndarray,
                 confidence: np.ndarray, waves: WaveArrays) -> np.ndarray:
        """Ask for plans for requests bool [B, N, R] (combined confidence [B, N, R], the cell bank's waves
        of this tick over M = B * N rows); bool [B, N]: the NPCs that escalated (each one is charged)."""
        ...

    def follow(self, world: GridWorld, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actions with plan steps in place [B, N], following bool [B, N]) for this tick."""
        ...

    def reset(self, rows: np.ndarray) -> None:
        """Drop the plans of rows bool [B, N] (died, or their episode restarted)."""
        ...


@dataclass
class GovernorStats:
    """Counters since the last ``pop_stats``: what the governor let the NPCs spend."""

    npc_ticks: float = 0.0
    brain_calls: float = 0.0
    throttled: float = 0.0
    escalations: float = 0.0
    plan_ticks: float = 0.0
    cpu_s: float = 0.0
    governor_ticks: float = 0.0
    gate_open_ticks: float = 0.0
    rate_sum: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)
    """The learning governor's last PPO losses (``governor/...``), if it learned since."""

    def metrics(self) -> dict[str, float]:
        """The ``governor/`` metrics: per NPC-second and NPC-minute figures of simulated time."""
        npc_s = self.npc_ticks / WORLD_HZ
        if npc_s <= 0:
            return {}
        return {
            "governor/brain_calls_per_npc_s": self.brain_calls / npc_s,
            "governor/cpu_s_per_npc_min": 60.0 * self.cpu_s / npc_s,
            "governor/escalations_per_100_ticks": 100.0 * self.escalations / self.npc_ticks,
            "governor/throttled_fraction": self.throttled / max(1.0, self.brain_calls + self.throttled),
            "governor/plan_tick_fraction": self.plan_ticks / self.npc_ticks,
            "governor/mean_tick_rate_hz": self.rate_sum / self.npc_ticks,
            "governor/gate_open_fraction": self.gate_open_ticks / self.npc_ticks,
        } | self.losses


class GovernedReflex:
    """The trainer's reflex seam with a governor: tick rates, quotas, gates, lifeforce and the CPU meter."""

    def __init__(
        self,
        config: GovernorConfig,
        lifeforce: LifeforceConfig,
        nerves: NerveBank | None = None,
        cells: CellBank | None = None,
        costs: CostModel = DEFAULT_COSTS,
        escalator: Escalator | None = None,
        governor_factory: Callable[[GovernorConfig], Governor] = make_governor,
        trails: Trails | None = None,
    ) -> None:
        self.config, self.lifeforce, self.nerves, self.cells = config, lifeforce, nerves, cells
        self.trails = trails
        self.costs, self.escalator, self.governor_factory = costs, escalator, governor_factory
        self.period_ticks = max(1, round(WORLD_HZ / config.governor_hz))
        self.stats = GovernorStats()
        self.last_overridden: np.ndarray | None = None
        """Nerve overrides of the last call, bool [B, N] (for replays and the viewer)."""
        self.decisions: list[Decisions] = []
        """The last decisions, one per env."""
        self._shape: tuple[int, int] | None = None
        self._world_id: int | None = None
        self.collapse: BatchCollapse | None = None

    # ======================================================================================
    # state
    # ======================================================================================
    def _setup(self, world: GridWorld) -> None:
        B, N = world.num_envs, world.num_npcs
        self._shape, self._world_id = (B, N), id(world)
        self.config.check_npcs(N)
        first = self.governor_factory(self.config)
        # a batched governor (the learned network) is one for all envs; the others keep state per env
        batched = hasattr(first, "decide_batch")
        others = [] if batched else [self.governor_factory(self.config) for _ in range(B - 1)]
        self.governors = [first, *others]
        self.inputs = GovernorInputs(self.config, range(B * N), machines=B)
        self.clock = BrainClock((B, N), max(self.config.tick_rates))
        self.rate = np.full((B, N), max(self.config.tick_rates), dtype=np.int64)
        self.quota = np.full((B, N), self.config.max_quota, dtype=np.float64)
        self.gates = np.zeros((B, N, NUM_REGIONS), dtype=bool)
        self.opened = np.zeros((B, N), dtype=bool)
        self.vision = np.zeros((B, N), dtype=bool)
        """Each NPC's vision organ gate as last handed to the escalator (``governor.organ_gates``)."""
        self.escalations = np.zeros((B, N), dtype=np.int64)
        self.escalation_tick = np.full((B, N), -1, dtype=np.int64)
        """This runtime's step of each NPC's last escalation in its life (-1: none)."""
        self.following = np.zeros((B, N), dtype=bool)
        self.pending = np.zeros((B, N, NUM_REGIONS), dtype=bool)
        """Collapse events waiting for their gate (at most ``collapse_hold_ticks``)."""
        self.pending_tick = np.zeros((B, N, NUM_REGIONS), dtype=np.int64)
        self.priority = np.zeros((B, N), dtype=np.int64)
        self.credit = np.zeros((B, N), dtype=np.float64)
        self.last_action = np.full((B, N), A.STAY, dtype=np.int64)
        self.reward_rate = np.zeros((B, N), dtype=np.float64)
        self.cpu_use = np.zeros((B, N), dtype=np.float64)
        self.was_alive = np.zeros((B, N), dtype=bool)
        self.period_reward = np.zeros((B, N), dtype=np.float64)
        self.period_done = np.zeros((B, N), dtype=bool)
        self.steps = 0
        self.decisions = []
        if self.cells is not None:
            self.collapse = BatchCollapse(self.cells.names, self.cells.regions)
            self.collapse.reset(B * N)

    def _births(self, world: GridWorld) -> np.ndarray:
        """bool [B, N]: NPCs that are new since the last tick (episode restart or respawn)."""
        alive = world.alive
        born = alive & ~self.was_alive
        if world.ticks > 0 and world.env_done.any():
            born |= world.env_done[:, None] & alive
        return born

    # ======================================================================================
    # the governor's tick
    # ======================================================================================
    def _decide(self, world: GridWorld) -> None:
        """Every NPC's decisions from its features; the new rates, quotas, gates and priorities."""
        B, N = self._shape  # type: ignore[misc]
        self.inputs.observe_bodies(world.lifeforce.reshape(-1), world.battery.reshape(-1),
                                   self.reward_rate.reshape(-1), self.rate.reshape(-1),
                                   self.cpu_use.reshape(-1))
        features = self.inputs.features(GlobalContext(tick=int(world.ticks))).reshape(B, N, -1)
        features[..., CPU_LOAD] = (self.cpu_use.sum(axis=1) / self.config.cpu_budget)[:, None]
        cpu = self.cpu_use.sum(axis=1)
        contexts = [GlobalContext(tick=int(world.ticks), cpu_in_use=float(c)) for c in cpu]
        governor = self.governors[0]
        batch = getattr(governor, "decide_batch", None)
        if hasattr(governor, "observe_outcome"):  # a learning governor: the last period's outcome, then PPO
            governor.observe_outcome(self.period_reward, self.period_done)
            losses = governor.maybe_learn(features)
            if losses:
                self.stats.losses = losses
        self.period_reward[:] = 0.0
        self.period_done[:] = False
        if batch is not None:
            decisions = batch(features, contexts)
        else:
            decisions = [g.decide(features[b], contexts[b]) for b, g in enumerate(self.governors)]
        self.decisions = decisions
        self.rate = np.stack([d.tick_rate for d in decisions])
        self.quota = np.stack([d.cpu_quota for d in decisions])
        self.priority = np.stack([d.llm_priority for d in decisions])
        gates = np.stack([d.gates for d in decisions])
        self.opened = np.any(gates & ~self.gates, axis=-1)
        if self.trails is not None:
            self.trails.gates(world, self.gates, gates, features)
        self.gates = gates
        self._organ_gates(decisions, N)
        self.clock.set_rates(np.maximum(self.rate, 1))
        self.stats.governor_ticks += 1

    def _organ_gates(self, decisions: list[Decisions], N: int) -> None:
        """Hand the vision gates that changed to an escalator that takes them (``organs.link.CortexLink``;
        the organ host knows NPC n of env b as row b * N + n)."""
        organ_gate = getattr(self.escalator, "organ_gate", None)
        if organ_gate is None:
            return
        vision = np.stack([d.organ_gates.get(VISION, np.zeros(N, dtype=bool)) for d in decisions])
        for b, n in np.argwhere(vision != self.vision).tolist():
            organ_gate(OrganGate(npc=b * N + n, organ=VISION, open=bool(vision[b, n])))
        self.vision = vision

    # ======================================================================================
    # one world tick
    # ======================================================================================
    def __call__(self, world: GridWorld, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(final actions [B, N], not chosen by the brain [B, N]) for the brains' proposed actions."""
        if self._world_id != id(world) or self._shape != (world.num_envs, world.num_npcs):
            self._setup(world)
        c, costs = self.config, self.costs
        if self.trails is not None:
            self.trails.tick(world)  # the last step's reward, deaths and openings: outcomes of decisions
        alive = world.alive
        actions = np.asarray(actions, dtype=np.int64)

        # --- who was born, who died ------------------------------------------------------------
        born = self._births(world)
        if born.any():
            self.clock.reset(born)
            self.inputs.forget_rows(born.reshape(-1))
            self.reward_rate[born] = 0.0
            self.cpu_use[born] = 0.0
            self.escalations[born] = 0
            self.escalation_tick[born] = -1
            self.last_action[born] = A.STAY
            self.pending[born] = False
            if self.escalator is not None:
                self.escalator.reset(born)
            if self.nerves is not None:
                self.nerves.reset(born.reshape(-1))
        if self.escalator is not None and (self.was_alive & ~alive).any():
            self.escalator.reset(self.was_alive & ~alive)
        self.pending &= alive[..., None]
        self.period_done |= born | (world.died if world.ticks > 0 else False)
        if world.ticks > 0:
            self.period_reward += world.rewards
        self.inputs.observe_alive(alive.reshape(-1))
        self.was_alive = alive.copy()
        self.reward_rate += RATE_EMA * (np.where(alive, world.rewards, 0.0) - self.reward_rate)

        # --- waves and collapse ----------------------------------------------------------------
        fired = confidence = None
        if self.collapse is not None and self.cells is not None and self.cells.last is not None:
            combined, fired = self.collapse.update(self.cells.last)
            confidence = combined
            self.inputs.observe_waves(combined)
            self.inputs.observe_collapses(fired, combined, int(world.ticks))

        # --- the governor's tick ---------------------------------------------------------------
        if self.steps % self.period_ticks == 0:
            self._decide(world)
        self.steps += 1

        # --- CPU credit refills; brains due at this tick ---------------------------------------
        self.credit = np.minimum(self.credit + self.quota / 100.0 / WORLD_HZ,
                                 self.quota / 100.0 / c.governor_hz)
        due = self.clock.due() & alive

        # --- gates: collapses on open regions escalate; plans act instead of the brain -----------
        escalated = np.zeros_like(alive)
        following = np.zeros_like(alive)
        plan_actions = actions
        if self.escalator is not None:
            if fired is not None:
                B, N = self._shape  # type: ignore[misc]
                new = fired.reshape(B, N, -1) & alive[..., None]
                self.pending |= new
                self.pending_tick[new] = self.steps
                self.pending &= self.steps - self.pending_tick < c.collapse_hold_ticks
                requests = self.pending & self.gates
                if requests.any():
                    self.pending &= ~requests  # offered once: used up, escalated or not
                    escalated = self.escalator.escalate(
                        world, requests, self.priority, confidence.reshape(B, N, -1), self.cells.last)
                    for b, n in zip(*np.nonzero(escalated), strict=True):
                        self.inputs.observe_escalation(int(b * N + n), int(world.ticks))
            plan_actions, following = self.escalator.follow(world, actions)
            following &= alive
        self.following = following

        # --- brain calls: due, alive, no plan acting for it, and with CPU credit ------------------
        called = due & ~following & (self.credit >= costs.brain_call_s)
        self.clock.advance(called)
        self.last_action = np.where(called, actions, self.last_action)
        proposed = np.where(following, plan_actions, np.where(called, actions, A.STAY))
        self.escalations += escalated
        self.escalation_tick[escalated] = self.steps - 1
        # --- nerves over whatever is proposed (a plan's steps stand as they are) -----------------
        if self.nerves is not None:
            final, over = self.nerves.apply(proposed.reshape(-1), world.views.reshape(-1, world.V, world.V),
                                            world.proprio.reshape(world.num_envs * world.num_npcs, -1),
                                            keep=following.reshape(-1))
            final, over = final.reshape(alive.shape), over.reshape(alive.shape)
            self.inputs.observe_overrides(over.reshape(-1))
        else:
            final, over = proposed, np.zeros_like(alive)
        self.last_overridden = over

        # --- what it cost ----------------------------------------------------------------------
        if self.lifeforce.per_tick > 0 or self.lifeforce.per_brain_call > 0 or self.escalator is not None:
            world.charge(lifeforce_cost(self.lifeforce, ticks=1, brain_calls=called, escalations=escalated,
                                        alive=alive))
        used = np.where(alive, costs.reflex_tick_s + costs.brain_call_s * called
                        + costs.escalation_s * escalated, 0.0)
        self.credit -= used
        self.period_reward -= c.cpu_charge * used
        self.cpu_use += RATE_EMA * (used * WORLD_HZ - self.cpu_use)
        self.inputs.observe_brain_calls(called.reshape(-1), int(world.ticks))

        s = self.stats
        s.npc_ticks += float(alive.sum())
        s.brain_calls += float(called.sum())
        s.throttled += float((due & ~following & ~called).sum())
        s.escalations += float(escalated.sum())
        s.plan_ticks += float(following.sum())
        s.cpu_s += float(used.sum())
        s.gate_open_ticks += float((self.gates.any(axis=-1) & alive).sum())
        s.rate_sum += float(self.rate[alive].sum())
        return final, ~called | over | following

    def governed(self) -> dict[str, np.ndarray]:
        """Per NPC [B, N] what the governor set, as the viewer's frame fields: ``tick_rate`` (Hz),
        ``cpu_use`` and ``cpu_quota`` (% of a core), ``llm_priority``, ``gates`` (bit k: ``REGIONS[k]``
        open), ``gate_flash`` (a gate opened at the last governor tick), ``escalations`` (this life's),
        ``escalation_ago`` (seconds, -1: none) and ``planning`` (following a plan); empty before the first
        call. CPU use is in cores, as the viewer reads it."""
        if self._shape is None:
            return {}
        bits = (self.gates.astype(np.uint8) << np.arange(NUM_REGIONS, dtype=np.uint8)).sum(axis=-1)
        ago = np.where(self.escalation_tick >= 0, (self.steps - 1 - self.escalation_tick) / WORLD_HZ, -1.0)
        return {
            "tick_rate": self.rate.astype(np.float32), "cpu_use": self.cpu_use.astype(np.float32),
            "cpu_quota": self.quota.astype(np.float32), "llm_priority": self.priority.astype(np.int8),
            "gates": bits.astype(np.uint8), "gate_flash": self.opened,
            "escalations": np.minimum(self.escalations, 65535).astype(np.uint16),
            "escalation_ago": ago.astype(np.float32), "planning": self.following.copy(),
        } | self._escalation_outcome()

    def _escalation_outcome(self) -> dict[str, np.ndarray]:
        """The escalator's last outcome per NPC (``escalation_outcome``), when it keeps one."""
        last = getattr(self.escalator, "last_outcome", None)
        if last is None or np.shape(last) != self._shape:
            return {}
        return {"escalation_outcome": np.asarray(last, dtype=np.int8).copy()}

    def pop_stats(self) -> dict[str, float]:
        """The ``governor/`` metrics since the last call (and the escalator's ``cortex/`` ones), and reset
        the counters."""
        metrics = self.stats.metrics()
        self.stats = GovernorStats()
        escalator_stats = getattr(self.escalator, "pop_stats", None)
        if escalator_stats is not None:
            metrics |= escalator_stats()
        return metrics

    def close(self) -> None:
        """Release the escalator (the cortex link's backend: a thread, an embedded server)."""
        close = getattr(self.escalator, "close", None)
        if close is not None:
            close()
