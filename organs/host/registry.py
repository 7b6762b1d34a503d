"""The kinds of organ the host can load, and the organs one host config asks for.

An organ kind names its verbs (each with its request and reply message types), the entry point that
loads it (``module:function(weights, threads)`` returning an object with ``handle(verb, data) -> data``
over encoded messages) and its default weights. Every organ request carries ``npc`` (the gate decides,
its lifeforce pays), ``tick`` and ``deadline_s``; every reply has a ``cost`` field the host fills in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nervous import subjects
from nervous.messages import Message, VisionReply, VisionRequest
from organs.host.config import OrganHostConfig
from organs.vision import SHIPPED_WEIGHTS
from organs.vision.organ import check_request as check_vision


@dataclass(frozen=True)
class OrganKind:
    """What the host needs to know of one kind of organ."""

    kind: str
    verbs: dict[str, tuple[type[Message], type[Message]]]
    """Verb -> (request type, reply type)."""
    entry: str
    """``module:function(weights, threads)`` loading the organ (run in its worker process)."""
    weights: Path
    """Default weight file."""
    check: Callable[[Any], None] | None = None
    """Raises ValueError naming the field for a well-formed request the organ cannot serve."""


KINDS: dict[str, OrganKind] = {
    "vision": OrganKind(
        kind="vision",
        verbs={"detect": (VisionRequest, VisionReply)},
        entry="organs.vision.organ:load",
        weights=SHIPPED_WEIGHTS,
        check=check_vision,
    ),
}


@dataclass(frozen=True)
class OrganSpec:
    """One organ a host serves: its name (the subject token), kind and weight file."""

    name: str
    kind: OrganKind
    weights: str


def organ_specs(config: OrganHostConfig) -> dict[str, OrganSpec]:
    """The organs of a host config by name; ValueError naming the entry that is wrong."""
    specs: dict[str, OrganSpec] = {}
    for entry in config.organs:
        name, _, kind = str(entry).partition(":")
        kind = kind or name
        try:
            subjects.token(name, "organ")
        except ValueError as exc:
            raise ValueError(f"organs.organs: {exc}") from None
        if name == "host":
            raise ValueError("organs.organs: 'host' is reserved ({env}.organs.host.heartbeat)")
        if kind not in KINDS:
            known = ", ".join(KINDS)
            raise ValueError(f"organs.organs: {entry!r}: unknown organ kind {kind!r}; known: {known}")
        if name in specs:
            raise ValueError(f"organs.organs: {name!r} is named twice")
        for verb in KINDS[kind].verbs:
            if verb in subjects.ORGAN_CONTROL:
                raise ValueError(f"organ kind {kind!r}: verb {verb!r} is reserved")
        specs[name] = OrganSpec(name, KINDS[kind], str(config.weights.get(name, KINDS[kind].weights)))
    unknown = sorted(set(config.weights) - set(specs))
    if unknown:
        served = ", ".join(specs)
        raise ValueError(f"organs.weights: {unknown[0]!r} is not one of the organs served ({served})")
    return specs
