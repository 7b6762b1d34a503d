"""The hand-written governors a learned one must beat: fixed, heuristic and budget, batched over NPCs.

Each is ``decide(features, context) -> Decisions`` over the array of ``governor.inputs``. All three
give a CPU quota that follows the tick rate (``max_quota * rate / fastest rate``, at least
``min_quota``) and then fit the quotas of the living NPCs into ``cpu_budget`` (``fit_to_budget``);
dead NPCs get the slowest rate, no quota, closed gates and priority 0. With ``calls_budget`` set, every
governor but fixed first fits its tick rates to it (``fit_to_calls``: the fastest NPCs are slowed, the
least urgent first, until the living NPCs' brain calls per second fit the machine).

- ``FixedGovernor``: today's behaviour. Every NPC at the fastest tick rate (20 Hz) with a full quota
  (scaled down to the budget); a gate is open where a collapse event of at least ``gate_threshold``
  is held; every NPC has LLM priority 5.
- ``HeuristicGovernor``: hand rules. *Urgent* (in danger: hazard wave or collapse of at least
  ``danger_confidence``; or lifeforce or battery below ``low_lifeforce``) -> the fastest rate;
  *idle and safe* (not urgent, no collapse held, reward rate at most ``idle_reward_rate``) ->
  ``idle_tick_rate``; otherwise ``calm_tick_rate``. Gates open only on ``help_regions`` (regions the
  cortex can help with: lock arithmetic) with a collapse of at least ``gate_threshold``. Priority is
  ``round(10 * urgency)``, urgency being the danger confidence (when in danger) or the need
  ``(low_lifeforce - reserve) / low_lifeforce``, whichever is larger. Its vision organ gate opens with
  its math or food gate while lifeforce and battery are at least ``vision_min_reserve``
  (``governor.organ_gates``: the same rule for every governor).
- ``BudgetGovernor``: Unreal Engine's Animation Budget Allocator, a frame being one world tick. Each
  NPC has a *significance* in 0..1 (the mean of its danger, ``1 - min(lifeforce, battery)``, its
  strongest held collapse and its override rate) and an estimated *work unit* (CPU ms per brain call:
  its measured ``cpu_use / tick_rate``, smoothed at ``work_unit_smoothing_speed``, starting at
  ``initial_estimated_work_unit_time_ms``). Every NPC gets at least the slowest rate that calls its
  brain every ``max_tick_rate`` world ticks; the rest of ``budget_in_ms`` (CPU ms per world tick) buys
  faster rates in significance order, fastest level first: the most significant NPCs tick fastest and
  the rest are throttled. An NPC whose rate changed less than ``state_change_throttle_in_frames`` world
  ticks ago keeps it (and its cost). Gates as ``fixed``; priority ``round(10 * significance)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from governor.config import KINDS, WORLD_HZ, GovernorConfig
from governor.decisions import Decisions, fit_to_budget, fit_to_calls
from governor.inputs import (
    ALIVE,
    BATTERY,
    COLLAPSE,
    CPU_USE,
    LIFEFORCE,
    NUM_FEATURES,
    OVERRIDE_RATE,
    REWARD_RATE,
    TICK_RATE,
    WAVE,
    GlobalContext,
    region_column,
)
from governor.organ_gates import VISION, vision_gates
from nervous.messages import REGIONS, Region

_NEVER = np.iinfo(np.int64).min // 2


class Governor(Protocol):
    """Anything that turns the inputs array into decisions."""

    def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
        """Decisions for every NPC row of features at context.tick."""
        ...


def _check_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != NUM_FEATURES:
        raise ValueError(f"features: shape {features.shape}, expected (N, {NUM_FEATURES})")
    return features


def _danger(features: np.ndarray) -> np.ndarray:
    """Hazard confidence per NPC: the larger of its hazard wave and held hazard collapse."""
    return np.maximum(features[:, region_column(WAVE, Region.HAZARD)],
                      features[:, region_column(COLLAPSE, Region.HAZARD)])


def _threshold_gates(features: np.ndarray, threshold: float) -> np.ndarray:
    """bool [N, R]: a collapse event of at least threshold is held on the region."""
    collapse = features[:, COLLAPSE]
    return (collapse > 0.0) & (collapse >= threshold)


def _fit_calls(config: GovernorConfig, features: np.ndarray, rate: np.ndarray, alive: np.ndarray,
               priority: np.ndarray) -> np.ndarray:
    """The rates of one env's NPCs fitted to ``calls_budget`` (``fit_to_calls``; reserve: the lower of
    lifeforce and battery)."""
    reserve = np.minimum(features[:, LIFEFORCE], features[:, BATTERY])
    return fit_to_calls(rate, alive, config.tick_rates, config.calls_budget, np.asarray(priority), reserve)


def finish_decisions(config: GovernorConfig, features: np.ndarray, rate: np.ndarray, gates: np.ndarray,
                     priority: np.ndarray, fit_calls: bool = True) -> Decisions:
    """Decisions with the rates fitted to the calls budget (unless not fit_calls: the fixed governor), quotas
    following the rates, fitted to the CPU budget, dead rows cleared, and the organ gates that follow from
    the region gates (``governor.organ_gates``)."""
    alive = features[:, ALIVE] > 0.5
    fastest = max(config.tick_rates)
    rate = np.where(alive, rate, min(config.tick_rates)).astype(np.int64)
    if fit_calls and config.calls_budget > 0:
        rate = _fit_calls(config, features, rate, alive, priority)
    quota = np.clip(config.max_quota * rate / fastest, config.min_quota, config.max_quota)
    quota = np.where(alive, quota, 0.0)
    quota[alive] = fit_to_budget(quota[alive], config.cpu_budget, config.min_quota)
    gates = gates & alive[:, None]
    return Decisions(
        tick_rate=rate,
        cpu_quota=quota,
        gates=gates,
        llm_priority=np.where(alive, np.clip(np.rint(priority), 0, 10), 0).astype(np.int64),
        alive=alive,
        organ_gates={VISION: vision_gates(config, features, gates)},
    )


def finish_batch(config: GovernorConfig, features: np.ndarray, rate: np.ndarray, gates: np.ndarray,
                 priority: np.ndarray, fit_calls: bool = True) -> list[Decisions]:
    """``finish_decisions`` for B envs at once (features [B, N, F]): one Decisions per env, each env's
    quotas fitted to the budget on their own. The sums are those of ``fit_to_budget`` where quotas are
    whole percents (the fixed and heuristic rules) or an env has fewer than 8 NPCs; else equal up to
    summation order."""
    alive = features[..., ALIVE] > 0.5
    fastest, slowest = max(config.tick_rates), min(config.tick_rates)
    rate = np.where(alive, rate, slowest).astype(np.int64)
    if fit_calls and config.calls_budget > 0:
        rate = np.stack([_fit_calls(config, features[b], rate[b], alive[b], priority[b])
                         for b in range(len(rate))])
    quota = np.clip(config.max_quota * rate / fastest, config.min_quota, config.max_quota)
    quota = np.where(alive, np.maximum(quota, config.min_quota), 0.0)
    n = alive.sum(axis=1)
    budget, low = 100.0 * config.cpu_budget, config.min_quota
    floors = np.array([np.full(k, low).sum() for k in range(alive.shape[1] + 1)])[n]  # as fit_to_budget sums
    if (floors > budget).any():
        fit_to_budget(np.zeros(int(n.max())), config.cpu_budget, low)  # raises its one-line error
    over = quota.sum(axis=1) > budget
    if over.any():
        above = np.where(alive, quota - low, 0.0)[over]
        eps = 4.0 * np.finfo(np.float64).eps * budget
        slack = np.maximum(0.0, budget - floors[over] - eps * (n[over] + 1))
        fitted = low + above * (slack / above.sum(axis=1))[:, None]
        quota[over] = np.where(alive[over], fitted, 0.0)
    gates = gates & alive[..., None]
    priority = np.where(alive, np.clip(np.rint(priority), 0, 10), 0).astype(np.int64)
    vision = vision_gates(config, features.reshape(-1, features.shape[-1]),
                          gates.reshape(-1, gates.shape[-1])).reshape(alive.shape)
    return [Decisions(tick_rate=rate[b], cpu_quota=quota[b], gates=gates[b], llm_priority=priority[b],
                      alive=alive[b], organ_gates={VISION: vision[b]}) for b in range(len(alive))]


def _subclass_rule(governor: object, base: type, features: np.ndarray,
                   contexts: list[GlobalContext]) -> list[Decisions] | None:
    """Per-env ``decide`` of a subclass that overrides ``decide`` but not ``decide_batch`` (its own rule
    would be bypassed by the batched one); None for the base rule."""
    kind = type(governor)
    if kind.decide is base.decide or kind.decide_batch is not base.decide_batch:  # type: ignore[attr-defined]
        return None
    return [governor.decide(f, c) for f, c in zip(features, contexts, strict=True)]  # type: ignore[attr-defined]


class FixedGovernor:
    """Today's behaviour: fastest rate, full quota within the budget, gates by threshold, priority 5."""

    LLM_PRIORITY = 5

    def __init__(self, config: GovernorConfig) -> None:
        self.config = config

    def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
        """Decisions for every NPC row of features."""
        features = _check_features(features)
        n = len(features)
        rate = np.full(n, max(self.config.tick_rates), dtype=np.int64)
        gates = _threshold_gates(features, self.config.gate_threshold)
        return finish_decisions(self.config, features, rate, gates, np.full(n, self.LLM_PRIORITY),
                                fit_calls=False)

    def decide_batch(self, features: np.ndarray, contexts: list[GlobalContext]) -> list[Decisions]:
        """Decisions for features [B, N, F] of B envs, one per env (the same as ``decide`` per env)."""
        features = np.asarray(features, dtype=np.float32)
        if (own := _subclass_rule(self, FixedGovernor, features, contexts)) is not None:
            return own
        B, N = features.shape[:2]
        flat = _check_features(features.reshape(B * N, -1))
        gates = _threshold_gates(flat, self.config.gate_threshold).reshape(B, N, -1)
        rate = np.full((B, N), max(self.config.tick_rates), dtype=np.int64)
        return finish_batch(self.config, features, rate, gates, np.full((B, N), self.LLM_PRIORITY),
                            fit_calls=False)


class HeuristicGovernor:
    """Hand rules: urgent NPCs fast, idle safe ones slow, gates on regions the cortex helps with."""

    def __init__(self, config: GovernorConfig) -> None:
        self.config = config
        self.help = np.array([r.value in config.help_regions for r in REGIONS], dtype=bool)

    def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
        """Decisions for every NPC row of features."""
        return finish_decisions(self.config, _check_features(features), *self._rules(features))

    def decide_batch(self, features: np.ndarray, contexts: list[GlobalContext]) -> list[Decisions]:
        """Decisions for features [B, N, F] of B envs, one per env (the same as ``decide`` per env)."""
        features = np.asarray(features, dtype=np.float32)
        if (own := _subclass_rule(self, HeuristicGovernor, features, contexts)) is not None:
            return own
        B, N = features.shape[:2]
        rate, gates, priority = self._rules(features.reshape(B * N, -1))
        return finish_batch(self.config, features, rate.reshape(B, N), gates.reshape(B, N, -1),
                            priority.reshape(B, N))

    def _rules(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tick rate [N], gates [N, R], priority [N]) by the hand rules, before budget and deaths."""
        c = self.config
        features = _check_features(features)
        danger = _danger(features)
        in_danger = danger >= c.danger_confidence
        reserve = np.minimum(features[:, LIFEFORCE], features[:, BATTERY])
        need = np.clip((c.low_lifeforce - reserve) / max(c.low_lifeforce, 1e-9), 0.0, 1.0)
        urgent = in_danger | (need > 0.0)
        collapse_held = np.any(features[:, COLLAPSE] > 0.0, axis=1)
        idle = ~urgent & ~collapse_held & (features[:, REWARD_RATE] <= c.idle_reward_rate)
        rate = np.where(urgent, max(c.tick_rates), np.where(idle, c.idle_tick_rate, c.calm_tick_rate))
        gates = _threshold_gates(features, c.gate_threshold) & self.help
        urgency = np.maximum(np.where(in_danger, danger, 0.0), need)
        return rate, gates, 10.0 * urgency


class BudgetGovernor:
    """Unreal Engine's Animation Budget Allocator: by significance, within budget_in_ms per world tick."""

    def __init__(self, config: GovernorConfig) -> None:
        self.config = config
        self.rates = np.array(config.budget_rates(), dtype=np.int64)
        self.rate = np.zeros(0, dtype=np.int64)
        """Tick rate decided last per NPC (0: none yet, or dead since)."""
        self.changed_tick = np.zeros(0, dtype=np.int64)
        """World tick of each NPC's last rate change."""
        self.work_ms = np.zeros(0, dtype=np.float64)
        """Estimated CPU ms of one brain call per NPC (UE's smoothed work unit)."""

    def _resize(self, n: int) -> None:
        if len(self.rate) != n:
            self.rate = np.zeros(n, dtype=np.int64)
            self.changed_tick = np.full(n, _NEVER, dtype=np.int64)
            self.work_ms = np.full(n, self.config.initial_estimated_work_unit_time_ms, dtype=np.float64)

    def significance(self, features: np.ndarray) -> np.ndarray:
        """float [N] in 0..1: mean of danger, 1 - reserve, strongest held collapse and override rate."""
        reserve = np.minimum(features[:, LIFEFORCE], features[:, BATTERY])
        strongest_collapse = features[:, COLLAPSE].max(axis=1)
        parts = (_danger(features), 1.0 - reserve, strongest_collapse, features[:, OVERRIDE_RATE])
        return np.clip(np.mean(parts, axis=0), 0.0, 1.0)

    def _update_work(self, features: np.ndarray, alive: np.ndarray) -> None:
        """Move each work unit towards the measured CPU ms per brain call (UE's FInterpTo)."""
        c = self.config
        measured_rows = alive & (features[:, CPU_USE] > 0.0) & (features[:, TICK_RATE] > 0.0)
        measured = 1000.0 * features[:, CPU_USE] / np.maximum(features[:, TICK_RATE], 1.0)
        step = min(1.0, c.work_unit_smoothing_speed / c.governor_hz)
        self.work_ms = np.where(measured_rows, self.work_ms + (measured - self.work_ms) * step, self.work_ms)
        self.work_ms[~alive] = c.initial_estimated_work_unit_time_ms

    def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
        """Decisions for every NPC row of features at context.tick (remembers rates for the throttle)."""
        c = self.config
        features = _check_features(features)
        n = len(features)
        self._resize(n)
        alive = features[:, ALIVE] > 0.5
        self._update_work(features, alive)
        significance = self.significance(features)
        slowest = int(self.rates[0])

        # --- throttled NPCs keep their rate and its cost ------------------------------------------
        recent = context.tick - self.changed_tick < c.state_change_throttle_in_frames
        locked = alive & (self.rate > 0) & recent
        rate = np.where(locked, self.rate, slowest).astype(np.int64)
        free = alive & ~locked
        remaining = c.budget_in_ms - float(np.sum((self.work_ms * rate / WORLD_HZ)[alive]))

        # --- the rest of the budget buys faster rates, most significant first --------------------
        candidates = np.flatnonzero(free)
        order = candidates[np.argsort(-significance[candidates], kind="stable")]
        for level in self.rates[:0:-1].tolist():  # fastest first; everyone already has the slowest
            extra = np.cumsum(self.work_ms[order] * (level - slowest) / WORLD_HZ)
            bought = int(np.searchsorted(extra, remaining, side="right"))
            if bought:
                rate[order[:bought]] = level
                remaining -= float(extra[bought - 1])
                order = order[bought:]

        # --- remember changes for the throttle ---------------------------------------------------
        changed = alive & (rate != self.rate)
        self.changed_tick[changed] = context.tick
        self.rate = np.where(alive, rate, 0)
        gates = _threshold_gates(features, c.gate_threshold)
        return finish_decisions(c, features, rate, gates, 10.0 * significance)


GOVERNORS: dict[str, type[FixedGovernor] | type[HeuristicGovernor] | type[BudgetGovernor]] = {
    "fixed": FixedGovernor,
    "heuristic": HeuristicGovernor,
    "budget": BudgetGovernor,
}


def make_governor(config: GovernorConfig) -> Governor:
    """The governor config.kind names."""
    if config.kind == "learned":
        from governor.learned import LearnedGovernor  # the network and torch, only when asked for

        if not config.checkpoint:
            raise ValueError("governor.checkpoint='': the learned governor needs trained weights "
                             "(python -m train +experiment=governor writes <run>/governor.pt)")
        return LearnedGovernor(config)
    cls = GOVERNORS.get(config.kind)
    if cls is None:
        raise ValueError(f"governor.kind={config.kind!r}: no such governor; choose one of {', '.join(KINDS)}")
    return cls(config)
