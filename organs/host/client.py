"""The organ host over the bus, called synchronously: the live organism's side of the look seam.

``BusOrgans(organs=["vision"], gate="open", deadline_s=0.25)`` is unconnected until ``connect(bus)``
(the organism's bus exists only once the organism runs); then a thread of its own holds a bus
connection on its own event loop, so ``call`` can be made from any thread - the world server's tick
included, whose loop it does not need: the request goes out on ``{env}.organs.{organ}.{verb}``, the
caller waits at most ``deadline_s`` (the request's own ``deadline_s``, which the host also enforces,
plus ``grace_s`` for the reply to travel), and gets the typed reply or an ``OrganError`` naming the
field: the host's error reply (a closed gate, a load failure, a passed deadline), no reply in time
(``deadline_s``), no connection (``bus``). A served call is paid by the host's ``OrganCharge``, which
the world server applies (``caller_charges`` is False).

Gates: it follows the ``OrganGate`` messages on ``{env}.organs.{organ}.gate`` (the governor's), as the
host does, so a caller asks only for NPCs the host would serve; ``gate`` is what an NPC without such a
message gets (``open`` or ``governed``: closed). ``set_gate`` changes the local view only (the host hears
the governor, not this client). ``states`` are the organs' lifecycle states as their ``OrganEvent``
messages last said.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import msgspec
from nats.aio.msg import Msg

from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import CellError, MessageError, OrganEvent, OrganGate, decode, encode
from organs.host.config import GATES
from organs.host.lifecycle import OrganError
from organs.host.registry import KINDS

#: Seconds ``connect`` and ``close`` wait for the connection at most.
CONNECT_TIMEOUT_S = 10.0


class BusOrgans:
    """Organ requests to the organ host service, from a synchronous caller."""

    caller_charges = False
    """The host's ``OrganCharge`` pays for a served call (the world server applies it)."""

    def __init__(self, organs: list[str], gate: str = "open", deadline_s: float = 0.25,
                 grace_s: float = 0.05) -> None:
        if gate not in GATES:
            raise ValueError(f"organ gate {gate!r}: must be one of {', '.join(GATES)}")
        if not deadline_s > 0:
            raise ValueError(f"organ deadline_s={deadline_s!r}: must be > 0")
        self.organs = {}
        for entry in organs:
            name, _, kind = str(entry).partition(":")
            if (kind or name) not in KINDS:
                known = ", ".join(KINDS)
                raise ValueError(f"organ {entry!r}: unknown organ kind {kind or name!r}; known: {known}")
            self.organs[name] = KINDS[kind or name]
        self.gate = gate
        self.deadline_s = float(deadline_s)
        self.grace_s = float(grace_s)
        self.timeouts = 0
        """Requests that got no reply within their deadline."""
        self._gates: dict[tuple[str, int], bool] = {}
        self._states: dict[str, str] = {}
        self._bus: Bus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifetime ---------------------------------------------------------------------------------

    def connect(self, bus: BusConfig) -> None:
        """Connect to the bus (its own thread and loop) and follow the organs' gates and events."""
        if self._loop is not None:
            raise RuntimeError("BusOrgans.connect: already connected")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="organ-client", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._connect(bus), loop).result(CONNECT_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    async def _connect(self, config: BusConfig) -> None:
        bus = await Bus(config).connect()
        self._bus = bus
        for name in self.organs:
            await bus.subscribe(subjects.organ_gate(name), OrganGate, self._on_gate)
            await bus.subscribe(subjects.organ_event(name), OrganEvent, self._on_event)
        await bus.flush()

    def close(self) -> None:
        """Close the connection and stop the thread; safe to call twice."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(bus.close(), loop).result(CONNECT_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(CONNECT_TIMEOUT_S)
        loop.close()

    # -- the seam ---------------------------------------------------------------------------------

    def call(self, organ: str, verb: str, request: Any) -> Any:
        """The organ's typed reply; ``OrganError`` naming the field when refused, late or unreachable."""
        kind = self.organs.get(organ)
        if kind is None or verb not in kind.verbs:
            raise OrganError(f"organ {organ}.{verb} is not asked through this client", "organ")
        loop, bus = self._loop, self._bus
        if loop is None or bus is None:
            raise OrganError(f"organ {organ}: not connected to a bus", "bus")
        subject = subjects.organ(organ, verb)
        if request.deadline_s > self.deadline_s:  # the host gives up when the caller does
            request = msgspec.structs.replace(request, deadline_s=self.deadline_s)
        wait = request.deadline_s + self.grace_s
        future = asyncio.run_coroutine_threadsafe(self._ask(bus, subject, request, kind.verbs[verb][1], wait),
                                                  loop)
        try:
            reply = future.result(wait + self.grace_s)
        except TimeoutError:  # no reply (nats-py's) or the future's wait ran out
            future.cancel()
            self.timeouts += 1
            raise OrganError(f"{subject}: no reply within {wait:g} s", "deadline_s") from None
        except MessageError as exc:
            raise OrganError(str(exc), exc.field) from None
        except Exception as exc:  # nats-py's own errors: no responders, connection closed
            raise OrganError(f"{subject}: {type(exc).__name__}: {exc}", "bus") from None
        if isinstance(reply, CellError):  # the host's refusal, naming the field
            raise OrganError(f"{subject}: {reply.error}", reply.field)
        return reply

    @staticmethod
    async def _ask(bus: Bus, subject: str, request: Any, reply_type: type[Any], wait: float) -> Any:
        """The decoded reply: the organ's, or the host's ``CellError``."""
        raw = await bus.nc.request(subject, encode(request), timeout=wait)
        return decode(raw.data, reply_type | CellError, subject)

    def gate_open(self, npc: int, organ: str) -> bool:
        """Whether the host would serve the NPC's requests to the organ, as far as the gates heard say."""
        return self._gates.get((organ, npc), self.gate == "open")

    def set_gate(self, npc: int, organ: str, is_open: bool) -> None:
        """Open or close one NPC's gate in this client's view (the host follows the governor's messages)."""
        self._gates[(organ, npc)] = is_open

    def states(self) -> dict[str, str]:
        """The organs' lifecycle states as their last events said (an organ never heard of: absent)."""
        return dict(self._states)

    def reap(self) -> None:
        """Nothing to do: the organ host unloads its idle organs itself."""

    # -- bus handlers (the client's thread) -------------------------------------------------------

    def _on_gate(self, msg: OrganGate, raw: Msg) -> None:
        if msg.organ in self.organs:
            self._gates[(msg.organ, msg.npc)] = msg.open

    def _on_event(self, msg: OrganEvent, raw: Msg) -> None:
        self._states[msg.organ] = str(msg.state)
