"""The hand-off from an NPC's open gate to the cortex: ``Escalation`` in, ``EscalationResult`` out.

The gate interface (agreed with the governor): the governor publishes ``Allocation`` messages
(``nervous.messages``) whose ``gates[region]`` says, per NPC and region (food, hazard, collision, math,
social, energy), whether that region may escalate, and whose ``llm_priority`` (0-10, 10 first) ranks
the NPC's cortex calls. When a ``CollapseEvent`` fires for (npc, region) and ``should_escalate``
holds for the NPC's latest allocation, the NPC side (same code in both runtimes):

1. builds the situation with the boundary (``organs.boundary``: its numbers -> ``Situation``),
2. makes ``Escalation(npc, region, tick, situation, priority=allocation.llm_priority, deadline=...)``
   and awaits ``CortexClient.escalate`` (queue, breaker, retries, validation),
3. on ``outcome == PLANNED`` follows ``result.call`` with a ``PlanFollower`` (overriding its brain)
   until the plan is done or invalid; on any other outcome its brain simply goes on.

A closed gate, or no allocation yet, means the reflex path (brain + nerves) handles the collapse.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nervous.messages import Allocation, CollapseEvent, Region
from organs.boundary.schema import Situation
from organs.cortex.tools import PlanCall


def should_escalate(allocation: Allocation | None, event: CollapseEvent) -> bool:
    """Whether a collapse goes to the cortex: the NPC's gate for its region is open."""
    return (
        allocation is not None and allocation.npc == event.npc and allocation.gates.get(event.region, False)
    )


@dataclass(frozen=True)
class Escalation:
    """One request for a plan: whose, about what, how urgent, and until when it is worth answering."""

    npc: int
    """The NPC asking."""
    region: Region
    """The region whose collapse opened the gate."""
    tick: int
    """The world tick of the collapse."""
    situation: Situation
    """The boundary's situation of the NPC."""
    priority: int
    """The allocation's ``llm_priority``: 0-10, 10 served first."""
    deadline: float
    """Monotonic time (the client's clock) after which the request is stale and dropped unanswered."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.priority, bool)
            or not isinstance(self.priority, int)
            or not 0 <= self.priority <= 10
        ):
            raise ValueError(f"escalation.priority={self.priority!r}: must be an integer in 0..10")
        if self.npc != self.situation.npc:
            raise ValueError(f"escalation.npc={self.npc}: the situation is of npc {self.situation.npc}")


class Outcome(enum.StrEnum):
    """How an escalation ended."""

    PLANNED = "planned"
    """One valid tool call came back: follow it."""
    INVALID_ANSWER = "invalid_answer"
    """The answer was not exactly one valid tool call (``detail`` says which class)."""
    STALE = "stale"
    """The deadline passed while it waited in the queue (or between retries)."""
    QUEUE_FULL = "queue_full"
    """The client's queue was full."""
    BREAKER_OPEN = "breaker_open"
    """The circuit breaker refused the call."""
    FAILED = "failed"
    """Every attempt failed (timeouts, connection errors, error statuses)."""


@dataclass(frozen=True)
class EscalationResult:
    """What came of one escalation; ``call`` is set only when PLANNED."""

    npc: int
    region: Region
    tick: int
    outcome: Outcome
    call: PlanCall | None = None
    detail: str = ""
    """Why it was not planned (an invalid-answer class, an error line), empty when planned."""
    latency_s: float = 0.0
    """From ``escalate`` being called to the result."""
    attempts: int = 0
    """HTTP attempts made."""
    order: int = -1
    """Dispatch order: the n-th request the client took from its queue (-1: never dispatched)."""
