"""The look seam: one interface to the organs, in-process (``InProcessHost``) or on the bus (``BusOrgans``).

The cortex link (``organs.link.CortexLink``) looks through whichever it was given: the in-process runtime
runs the organ host's state machine in its own thread, the live organism asks the supervised organ
host service on ``{env}.organs.{organ}.{verb}``. Both answer a typed request with the organ's typed
reply or raise ``OrganError`` naming the field (a closed gate, a load failure, a passed deadline, no
reply in time). Who pays differs: in-process the caller charges the reply's ``cost`` itself
(``caller_charges``); on the bus the host publishes an ``OrganCharge`` that the world server applies,
so the caller must not charge it again.
"""

from __future__ import annotations

from typing import Any, Protocol


class OrganSeam(Protocol):
    """Where a caller's organ requests go."""

    caller_charges: bool
    """True: the caller charges each reply's ``cost``; False: the host's ``OrganCharge`` does."""

    def call(self, organ: str, verb: str, request: Any) -> Any:
        """The organ's typed reply to one request; ``OrganError`` naming the field when it is not served."""
        ...

    def gate_open(self, npc: int, organ: str) -> bool:
        """Whether the NPC's requests to the organ would be served."""
        ...

    def set_gate(self, npc: int, organ: str, is_open: bool) -> None:
        """Open or close one NPC's gate for one organ."""
        ...

    def states(self) -> dict[str, str]:
        """Every organ's lifecycle state as last known, by name."""
        ...

    def reap(self) -> None:
        """Unload organs idle for their time (a no-op where the host does it itself)."""
        ...

    def close(self) -> None:
        """Release what the seam holds; safe to call twice."""
        ...
