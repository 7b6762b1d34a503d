"""Decisions: one governor tick's tick rates, CPU quotas, gates and LLM priorities for all NPCs, as arrays.

``fit_to_budget`` keeps the quotas inside the machine's CPU budget, ``fit_to_calls`` the tick rates inside
its brain-call budget; ``Decisions.to_allocations`` turns
rows into ``Allocation`` messages (all of them, or only those that changed since an earlier decision);
``check_allocation`` checks an incoming ``Allocation`` against what the governor knows (NPC ids, tick
rates) beyond the types and ranges msgspec already checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nervous.messages import REGIONS, Allocation

#: Quota changes smaller than this (percent of a core) do not count as a changed decision.
QUOTA_TOLERANCE = 0.5


def fit_to_budget(quota: np.ndarray, budget_cores: float, min_quota: float) -> np.ndarray:
    """Quotas (percent of a core) whose sum is at most 100 * budget_cores: the part of each quota above
    min_quota is scaled down by one common factor, so none falls below min_quota (nor starts below it)."""
    quota = np.maximum(np.asarray(quota, dtype=np.float64), min_quota)
    budget = 100.0 * budget_cores
    floor = float(np.full(quota.size, min_quota).sum())  # summed as the result is: equal when all are minimal
    if floor > budget:
        raise ValueError(
            f"governor.cpu_budget={budget_cores!r}: {quota.size} NPCs at governor.min_quota={min_quota:g} % "
            f"need at least {floor / 100.0:g} cores"
        )
    if quota.size == 0 or quota.sum() <= budget:
        return quota
    above = quota - min_quota
    # keep back a few rounding errors' worth, so the sum of the rounded quotas never lands above the budget
    slack = max(0.0, budget - floor - 4.0 * (quota.size + 1) * np.finfo(np.float64).eps * budget)
    return min_quota + above * (slack / above.sum())


def fit_to_calls(rate: np.ndarray, alive: np.ndarray, levels: Sequence[int], budget: float,
                 priority: np.ndarray, reserve: np.ndarray) -> np.ndarray:
    """Tick rates (Hz) whose sum over the living NPCs is at most budget brain calls per second (0: no
    limit): every rate is capped at the fastest level at which all fit, and the NPCs that cap cut get
    the next level back, most urgent first (highest priority, then least reserve), while calls are left.
    Where even the slowest level does not fit, the NPCs that asked for more get the slowest."""
    rate = np.asarray(rate, dtype=np.int64)
    alive = np.asarray(alive, dtype=bool)
    if budget <= 0 or rate[alive].sum() <= budget:
        return rate
    levels = sorted(int(r) for r in levels)
    k = len(levels) - 1
    capped = rate
    while k >= 0:
        capped = np.where(alive, np.minimum(rate, levels[k]), rate)
        if k == 0 or capped[alive].sum() <= budget:
            break
        k -= 1
    if k < len(levels) - 1:
        cut = np.flatnonzero(alive & (rate > levels[k]))
        spare = budget - float(capped[alive].sum())
        back = int(max(0.0, spare) // (levels[k + 1] - levels[k])) if spare > 0 else 0
        order = cut[np.lexsort((np.asarray(reserve)[cut], -np.asarray(priority)[cut]))]
        capped[order[:back]] = levels[k + 1]
    return capped


@dataclass
class Decisions:
    """One governor tick's decisions over N NPC slots (rows follow the inputs' NPC order)."""

    tick_rate: np.ndarray
    """int64 [N]: brain tick rate in Hz."""
    cpu_quota: np.ndarray
    """float64 [N]: CPU quota in percent of one core (0 for a dead NPC)."""
    gates: np.ndarray
    """bool [N, R]: open gates, columns in ``nervous.messages.REGIONS`` order."""
    llm_priority: np.ndarray
    """int64 [N]: cortex queue priority 0-10, 10 served first."""
    alive: np.ndarray
    """bool [N]: rows that are living NPCs; only these become Allocation messages."""
    organ_gates: dict[str, np.ndarray] = field(default_factory=dict)
    """Organ name -> bool [N]: open organ gates (``governor.organ_gates``); they travel as ``OrganGate``
    messages, not in allocations."""

    def __post_init__(self) -> None:
        n = len(self.alive)
        for organ, open_ in self.organ_gates.items():
            if open_.shape != (n,):
                raise ValueError(f"decisions.organ_gates[{organ!r}]: shape {open_.shape}, expected ({n},)")
        for name in ("tick_rate", "cpu_quota", "llm_priority", "alive"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"decisions.{name}: shape {getattr(self, name).shape}, expected ({n},)")
        if self.gates.shape != (n, len(REGIONS)):
            raise ValueError(f"decisions.gates: shape {self.gates.shape}, expected ({n}, {len(REGIONS)})")

    def __len__(self) -> int:
        return len(self.alive)

    def changed(self, since: Decisions | None) -> np.ndarray:
        """bool [N]: living rows whose decision differs from ``since`` (every living row when None)."""
        if since is None:
            return self.alive.copy()
        if len(since) != len(self):
            raise ValueError(f"decisions: {len(since)} NPCs before, {len(self)} now")
        differ = (
            (self.tick_rate != since.tick_rate)
            | (np.abs(self.cpu_quota - since.cpu_quota) >= QUOTA_TOLERANCE)
            | np.any(self.gates != since.gates, axis=1)
            | (self.llm_priority != since.llm_priority)
            | ~since.alive
        )
        return self.alive & differ

    def to_allocations(
        self, npc_ids: Sequence[int], tick: int, since: Decisions | None = None
    ) -> list[Allocation]:
        """Allocation messages for the living rows that changed since ``since`` (all when None)."""
        if len(npc_ids) != len(self):
            raise ValueError(f"npc_ids: {len(npc_ids)} ids for {len(self)} decisions")
        rows = np.flatnonzero(self.changed(since))
        return [
            Allocation(
                npc=int(npc_ids[i]),
                tick=tick,
                tick_rate=int(self.tick_rate[i]),
                cpu_quota=float(self.cpu_quota[i]),
                gates={region: bool(g) for region, g in zip(REGIONS, self.gates[i].tolist(), strict=True)},
                llm_priority=int(self.llm_priority[i]),
            )
            for i in rows.tolist()
        ]


def check_allocation(allocation: Allocation, npc_ids: Sequence[int], tick_rates: Sequence[int]) -> None:
    """Raise ValueError naming the field when an allocation is for an unknown NPC or an unknown tick rate."""
    if allocation.npc not in npc_ids:
        raise ValueError(f"allocation.npc={allocation.npc}: no such NPC (known: {_id_ranges(npc_ids)})")
    if allocation.tick_rate not in tick_rates:
        raise ValueError(
            f"allocation.tick_rate={allocation.tick_rate}: not one of the tick rates {sorted(tick_rates)}"
        )


def _id_ranges(ids: Sequence[int]) -> str:
    """NPC ids as a short text: '0..15' for a run, else the first few."""
    ids = sorted(ids)
    if not ids:
        return "none"
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}" if len(ids) > 1 else str(ids[0])
    return ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
