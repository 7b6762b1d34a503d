"""Watching an organism act from outside: when each NPC's actions arrive on the bus, and for which tick.

``ActionWatch(npcs)`` subscribes on a bus of its own to every NPC's action subject and keeps, per NPC,
the monotonic arrival time and the observation tick of each action. ``first_fresh_after(t)`` says when
each NPC first answered an observation newer than any answered before ``t``: after a bus node is killed
at ``t``, the time an NPC needs to act again on the world as it is now, not on buffered old news.
Used by the cluster's failover test and ``benchmarks.cluster``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from nervous import subjects
from nervous.bus import Bus
from nervous.messages import Action


class ActionWatch:
    """Per NPC: every action heard (arrival time, tick)."""

    def __init__(self, npcs: int) -> None:
        self.npcs = npcs
        self.times: list[list[float]] = [[] for _ in range(npcs)]
        self.ticks: list[list[int]] = [[] for _ in range(npcs)]

    async def start(self, bus: Bus) -> ActionWatch:
        """Subscribe to every NPC's action subject on bus."""
        for i in range(self.npcs):
            await bus.subscribe(subjects.npc_action(i), Action, self._heard)
        return self

    def _heard(self, msg: Action, raw: Any) -> None:
        if 0 <= msg.npc < self.npcs:
            self.times[msg.npc].append(time.monotonic())
            self.ticks[msg.npc].append(msg.tick)

    def counts(self) -> np.ndarray:
        """Actions heard per NPC."""
        return np.array([len(t) for t in self.times], dtype=np.int64)

    def newest_tick(self, before: float | None = None) -> int:
        """The newest observation tick answered by any NPC (among actions heard before ``before``)."""
        newest = -1
        for times, ticks in zip(self.times, self.ticks, strict=True):
            for t, tick in zip(times, ticks, strict=True):
                if before is None or t < before:
                    newest = max(newest, tick)
        return newest

    def first_fresh_after(self, t: float) -> np.ndarray:
        """Per NPC, the arrival time of its first action heard after ``t`` that answers an observation newer
        than every one answered before ``t`` (NaN: none yet)."""
        newest = self.newest_tick(before=t)
        out = np.full(self.npcs, np.nan)
        for i, (times, ticks) in enumerate(zip(self.times, self.ticks, strict=True)):
            for at, tick in zip(times, ticks, strict=True):
                if at > t and tick > newest:
                    out[i] = at
                    break
        return out
