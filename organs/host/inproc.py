"""The organ host in the caller's own thread: synchronous calls, the bus service's schema and state machine.

``InProcessHost(config).call("vision", "detect", VisionRequest(...))`` returns the same ``VisionReply``
(its ``cost`` filled in) that ``{env}.organs.vision.detect`` answers, or raises the same ``OrganError``
naming the field: it runs the very ``OrganHost`` the bus service runs (load on first use, slots, idle
unloading, gates, charges) on a private event loop, with organs loaded into this process
(``loader=inproc``: the in-process runtime has no bus to reach a worker through). Lifecycle events are
kept: ``state(organ)`` is the organ's state now and ``events`` the transitions since the last
``pop_events``, for the viewer (logged at DEBUG only: a training run looks thousands of times an
update). ``reap()`` unloads organs idle for ``unload_after_s`` (the cortex link
calls it once per world tick; it costs a dict scan while nothing is loaded). Calls may come from
another thread than ``reap`` (the non-blocking cortex link's workers): one lock keeps the private loop
to one thread at a time, and a ``reap`` that finds it busy skips that tick (an organ in use is not idle).
Called from a thread that runs an event loop of its own (a link made inside async code), the private
loop runs in a short-lived helper thread, since one thread cannot run two loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from nervous.messages import OrganCharge, OrganEvent, OrganState
from organs.host.config import OrganHostConfig
from organs.host.lifecycle import OrganHost
from organs.host.loaders import Loader


class InProcessHost:
    """An ``OrganHost`` driven synchronously from one thread."""

    caller_charges = True
    """The caller charges each reply's ``cost`` (there is no bus for an ``OrganCharge`` to travel on)."""

    def __init__(self, config: OrganHostConfig, clock: Callable[[], float] = time.monotonic,
                 loader: Loader | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        """Held while the private loop runs (one thread at a time)."""
        self.host = OrganHost(config, loader=loader, clock=clock, on_event=self._on_event,
                              on_charge=self._on_charge, log_level=logging.DEBUG)
        self.events: list[OrganEvent] = []
        """Lifecycle transitions since the last ``pop_events``."""
        self.charges: list[OrganCharge] = []
        """Charges of served calls since the last ``pop_charges``."""

    def _on_event(self, event: OrganEvent) -> None:
        self.events.append(event)

    def _on_charge(self, charge: OrganCharge) -> None:
        self.charges.append(charge)

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the private loop (lock held), in a helper thread where this one runs a loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.loop.run_until_complete(coroutine)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="organ-host") as helper:
            return helper.submit(self.loop.run_until_complete, coroutine).result()

    def call(self, organ: str, verb: str, request: Any) -> Any:
        """The organ's typed reply to one request; ``OrganError`` naming the field when it is refused."""
        with self._lock:
            return self._run(self.host.call(organ, verb, request))

    def set_gate(self, npc: int, organ: str, is_open: bool) -> None:
        """Open or close one NPC's gate for one organ (what an ``OrganGate`` message does on the bus)."""
        self.host.set_gate(npc, organ, is_open)

    def gate_open(self, npc: int, organ: str) -> bool:
        """Whether the NPC's requests to the organ would be served."""
        return self.host.gate_open(npc, organ)

    def state(self, organ: str) -> OrganState:
        """The organ's lifecycle state now."""
        return self.host.organs[organ].state

    def states(self) -> dict[str, str]:
        """Every organ's lifecycle state now, by name."""
        return {name: str(o.state) for name, o in self.host.organs.items()}

    def reap(self) -> None:
        """Unload every organ idle for ``unload_after_s``."""
        loaded = any(o.loaded is not None for o in self.host.organs.values())
        if loaded and self._lock.acquire(blocking=False):
            try:
                self._run(self.host.reap())
            finally:
                self._lock.release()

    def pop_events(self) -> list[OrganEvent]:
        """The lifecycle transitions since the last call."""
        events, self.events = self.events, []
        return events

    def pop_charges(self) -> list[OrganCharge]:
        """The charges since the last call."""
        charges, self.charges = self.charges, []
        return charges

    def close(self) -> None:
        """Unload every organ and close the loop; safe to call twice."""
        with self._lock:
            if self.loop.is_closed():
                return
            try:
                self._run(self.host.close())
            finally:
                self.loop.close()
