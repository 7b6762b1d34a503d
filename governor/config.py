"""GovernorConfig: which governor decides, how often, within which CPU budget, with its parameters."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NoReturn

from nervous.messages import REGIONS

#: World ticks per second (DESIGN: one world tick is 1/20 s); every tick rate divides it.
WORLD_HZ = 20
#: The governors that exist (``learned``: a trained network, ``governor.learned``).
KINDS = ("fixed", "heuristic", "budget", "learned")
#: Bounds of a CPU quota in percent of one core (``nervous.messages.CpuQuota``).
QUOTA_RANGE = (5.0, 100.0)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class GovernorConfig:
    """The thalamus governor: its kind, cadence, CPU budget, and each baseline's parameters."""

    kind: str = "fixed"
    """Which governor decides: fixed, heuristic, budget or learned."""
    governor_hz: float = 2.0
    """Governor ticks (decisions for all NPCs) per second."""
    tick_rates: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20])
    """Brain tick rates a governor may choose, in Hz; each divides the 20 Hz world clock."""
    cpu_budget: float = 2.0
    """Machine CPU budget in cores: the quotas of all living NPCs sum to at most 100 * cpu_budget %."""
    min_quota: float = 5.0
    """Smallest CPU quota of a living NPC, in percent of one core (5..100)."""
    max_quota: float = 100.0
    """Largest CPU quota of one NPC, in percent of one core (min_quota..100)."""
    calls_budget: float = 0.0
    """Brain calls per second one machine (env) serves for all its NPCs, 0: no limit. Above it every
    governor but fixed slows its fastest NPCs, the least urgent first, until the calls fit
    (``governor.decisions.fit_to_calls``). On 2 cores 64 live NPCs at 20 Hz (1280/s) held, 96 (1920/s)
    missed 9 % of their ticks; ``benchmarks.governor_live`` gives the learned governor 960."""
    gate_threshold: float = 0.75
    """Collapse confidence at or above which a gate may open (fixed and budget: opens every such region)."""
    collapse_hold_ticks: int = 10
    """World ticks a collapse event stays in the inputs after it fired (10: one 2 Hz governor period)."""

    # --- heuristic -------------------------------------------------------------------------------
    help_regions: list[str] = field(default_factory=lambda: ["math", "food"])
    """Regions the cortex helps with (math: locks, doors and keys; food: where food was seen, for a
    hungry NPC); heuristic gates open only on these."""
    low_lifeforce: float = 0.3
    """Lifeforce or battery below this makes an NPC urgent: fastest tick rate, priority by need."""
    vision_regions: list[str] = field(default_factory=lambda: ["math", "food"])
    """Regions whose open gate opens the NPC's vision organ gate (``governor.organ_gates``; every
    governor); []: the governor never opens it. Stage 4, 300 episodes: [math, food] keeps what vision
    adds (success 0.324 against 0.326 looking at every escalation, 0.268 blind), [math] alone 0.286."""
    vision_min_reserve: float = 0.1
    """Lifeforce and battery at or above which an NPC may spend a look (``governor.organ_gates``)."""
    danger_confidence: float = 0.5
    """Hazard wave or collapse confidence at or above which an NPC is in danger: fastest tick rate."""
    idle_reward_rate: float = 0.0
    """Reward rate at or below which a safe NPC with no collapse event is idle: idle_tick_rate."""
    idle_tick_rate: int = 1
    """Tick rate of an idle, safe NPC (one of tick_rates)."""
    calm_tick_rate: int = 5
    """Tick rate of an NPC neither urgent nor idle (one of tick_rates)."""

    # --- budget: Unreal Engine's AnimationBudgetAllocatorParameters, a frame being one world tick ----
    budget_in_ms: float = 1.0
    """UE BudgetInMs (UE's default 1.0): CPU ms of brain work per world tick (x20 per second) for all NPCs."""
    max_tick_rate: int = 20
    """UE MaxTickRate: the most world ticks between two brain calls of a throttled NPC (20: 1 Hz)."""
    state_change_throttle_in_frames: int = 30
    """UE StateChangeThrottleInFrames: world ticks an NPC keeps a tick rate before it may change (1..128)."""
    initial_estimated_work_unit_time_ms: float = 0.3
    """UE InitialEstimatedWorkUnitTimeMs: CPU ms of one brain call until the NPC's CPU use is measured."""
    work_unit_smoothing_speed: float = 5.0
    """UE WorkUnitSmoothingSpeed: per second, how fast the estimated work unit follows the measured one."""

    # --- learned: the network and its training (PPO over governor ticks) -----------------------------
    checkpoint: str = ""
    """The learned governor's weights (``governor.pt`` of a ``+experiment=governor`` run); '': a fresh one."""
    hidden: int = 64
    """Hidden width of the learned governor's network."""
    greedy: bool = True
    """Deployed learned governor: the most likely choice (false: sample, as in training)."""
    warm_start: str = "heuristic"
    """Training: the governor a fresh network first imitates (fixed, heuristic, budget; '': none)."""
    warm_start_ticks: int = 64
    """Training: governor ticks of the warm-start teacher recorded for imitation."""
    cpu_charge: float = 1.0
    """Training reward charged per simulated CPU-second an NPC used (on top of the lifeforce of thinking)."""
    calls_target: float = 0.25
    """Training: brain calls per NPC-second to stay at or under, as a fraction of the fastest tick rate
    (0.25 of 20 Hz: 5 calls/s), held by a Lagrange multiplier (1.0: unconstrained)."""
    calls_multiplier_lr: float = 1.0
    """Training: dual-ascent step of that multiplier (the weight of calls against return in PPO) per update,
    per unit of measured calls over the target (as a fraction of the fastest rate): its integral gain."""
    calls_multiplier_kp: float = 10.0
    """Training: proportional gain of that multiplier (PID Lagrangian, Stooke et al. 2020): the multiplier
    is the dual-ascent integral plus this times the calls over the target, so it falls at once when the
    calls come under it instead of winding up."""
    learning_rate: float = 3e-4
    """Adam step size of the governor's PPO."""
    gamma: float = 0.95
    """Discount per governor tick (0.95 at 2 Hz: a horizon of about 10 s)."""
    gae_lambda: float = 0.95
    """GAE lambda of the governor's PPO."""
    rollout_ticks: int = 32
    """Governor ticks per PPO update (each over every NPC slot of every env)."""
    update_epochs: int = 4
    """PPO epochs per update."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    ent_coef: float = 0.01
    """Entropy bonus."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            self._fail("kind", f"no such governor; choose one of {', '.join(KINDS)}")
        for name in ("governor_hz", "cpu_budget", "budget_in_ms", "initial_estimated_work_unit_time_ms"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                self._fail(name, "must be > 0")
        if not _is_number(self.work_unit_smoothing_speed) or not self.work_unit_smoothing_speed > 0.1:
            self._fail("work_unit_smoothing_speed", "must be > 0.1")
        self._check_tick_rates()
        low, high = QUOTA_RANGE
        if not _is_number(self.min_quota) or not low <= self.min_quota <= high:
            self._fail("min_quota", f"must be in {low:g}..{high:g} (% of a core)")
        if not _is_number(self.max_quota) or not self.min_quota <= self.max_quota <= high:
            self._fail("max_quota", f"must be in governor.min_quota..{high:g} (% of a core)")
        for name in ("gate_threshold", "low_lifeforce", "danger_confidence", "vision_min_reserve"):
            if not _is_number(getattr(self, name)) or not 0.0 <= getattr(self, name) <= 1.0:
                self._fail(name, "must be in 0..1")
        if not _is_number(self.calls_budget) or self.calls_budget < 0:
            self._fail("calls_budget", "must be >= 0 (brain calls per second; 0: no limit)")
        if not _is_number(self.idle_reward_rate):
            self._fail("idle_reward_rate", "must be a number")
        if not _is_int(self.collapse_hold_ticks) or self.collapse_hold_ticks < 1:
            self._fail("collapse_hold_ticks", "must be an integer >= 1")
        names = [r.value for r in REGIONS]
        for regions in ("help_regions", "vision_regions"):
            bad = [r for r in getattr(self, regions) if r not in names]
            if bad:
                self._fail(regions, f"{bad[0]!r} is no region; choose from {', '.join(names)}")
        self._check_budget_allocator()
        self._check_learning()

    def _check_learning(self) -> None:
        if not isinstance(self.checkpoint, str):
            self._fail("checkpoint", "must be a path or ''")
        if self.warm_start not in ("", "fixed", "heuristic", "budget"):
            self._fail("warm_start", "must be fixed, heuristic, budget or '' (none)")
        for name in ("hidden", "rollout_ticks", "update_epochs", "num_minibatches", "warm_start_ticks"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                self._fail(name, "must be an integer >= 1")
        for name in ("learning_rate", "clip_coef"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                self._fail(name, "must be > 0")
        for name in ("gamma", "gae_lambda"):
            if not _is_number(getattr(self, name)) or not 0.0 <= getattr(self, name) <= 1.0:
                self._fail(name, "must be in 0..1")
        if not _is_number(self.calls_target) or not 0.0 < self.calls_target <= 1.0:
            self._fail("calls_target", "must be in (0, 1] (of the fastest tick rate; 1: unconstrained)")
        for name in ("cpu_charge", "ent_coef", "calls_multiplier_lr", "calls_multiplier_kp"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                self._fail(name, "must be >= 0")

    def _fail(self, name: str, rule: str) -> NoReturn:
        """Raise the one-line error naming a field, its value and the rule it breaks."""
        value = getattr(self, name)
        shown = list(value) if isinstance(value, list | tuple) else value  # a ListConfig shows as a list
        raise ValueError(f"governor.{name}={shown!r}: {rule}")

    def _check_tick_rates(self) -> None:
        rates = list(self.tick_rates)
        if not rates:
            self._fail("tick_rates", "must name at least one tick rate")
        for rate in rates:
            if not _is_int(rate) or not 1 <= rate <= WORLD_HZ:
                self._fail("tick_rates", f"{rate!r} is not an integer in 1..{WORLD_HZ}")
            if WORLD_HZ % rate:
                self._fail("tick_rates", f"{rate} Hz does not divide the {WORLD_HZ} Hz world clock")
        if len(set(rates)) != len(rates):
            self._fail("tick_rates", "a tick rate is named twice")
        for name in ("idle_tick_rate", "calm_tick_rate"):
            if getattr(self, name) not in rates:
                self._fail(name, f"must be one of governor.tick_rates {rates}")

    def _check_budget_allocator(self) -> None:
        throttle = self.state_change_throttle_in_frames
        if not _is_int(throttle) or not 1 <= throttle <= 128:
            self._fail("state_change_throttle_in_frames", "must be an integer in 1..128 (world ticks)")
        if not _is_int(self.max_tick_rate) or self.max_tick_rate < 1:
            self._fail("max_tick_rate", "must be an integer >= 1 (world ticks)")
        if not self.budget_rates():
            self._fail("max_tick_rate", f"no tick rate of {list(self.tick_rates)} calls the brain at least "
                       f"every {self.max_tick_rate} world ticks")

    def budget_rates(self) -> list[int]:
        """The tick rates the budget allocator may use: those at most max_tick_rate world ticks apart."""
        return sorted(r for r in self.tick_rates if WORLD_HZ // r <= self.max_tick_rate)

    def check_npcs(self, num_npcs: int) -> None:
        """Raise ValueError naming governor.cpu_budget when num_npcs minimum quotas do not fit in it."""
        need = num_npcs * self.min_quota / 100.0
        if need > self.cpu_budget:
            raise ValueError(
                f"governor.cpu_budget={self.cpu_budget!r}: {num_npcs} NPCs at governor.min_quota="
                f"{self.min_quota:g} % need at least {need:g} cores"
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of all fields, in order."""
        return tuple(f.name for f in fields(cls))
