"""The organ host's core: organs load on demand, share a few slots, and unload when idle.

Per organ::

    UNLOADED --(request)--> LOADING --(loaded)--> READY --(request)--> PROCESSING --(answered)--> READY
        ^                      |                    |
        +---(load failed)------+                    +--(idle unload_after_s, evicted, worker died)--> UNLOADED

Every transition is an ``OrganEvent`` handed to ``on_event`` (the service publishes it).

- **Slots.** At most ``slots`` organs are loaded (or loading) at once. A request for an unloaded organ
  when all are taken: with ``when_full="evict"`` the least recently used organ that is READY with no
  request waiting for it is unloaded to make room (if every loaded organ is busy, the request waits for
  one to become idle); with ``"wait"`` it waits until an organ unloads after its idle time. Both waits
  end at the request's deadline with an error naming the organs holding the slots.
- **Deadlines.** ``deadline_s`` bounds everything a request waits for: a slot, a load in progress
  (a request arriving while its organ loads waits for that load, never starts another), its turn in
  the organ's queue (a loaded organ answers one request at a time) and the call itself (a call past it
  unloads the organ: a worker stuck in a call is not trusted with the next).
- **Failures.** A load that fails (missing or corrupt weights) fails every request waiting for it with
  the loader's error, which names the file, and leaves the organ UNLOADED; the next request tries
  again. A worker that dies leaves it UNLOADED too.
- **Gates and costs.** A request names its NPC; it is served only while that NPC's gate for the organ is
  open (``gate="open"``: open until a governor closes it with ``set_gate``; ``"governed"``: closed
  until one opens it). Each served call costs ``lifeforce.per_organ_call``: it is put in the reply's
  ``cost``, added to ``charged[npc]`` and handed to ``on_charge``. Refused and failed calls cost nothing.

Idle time runs on the injectable ``clock`` (``reap()`` unloads what has been idle long enough; the
service calls it every ``reap_s``); the waits above run on the event loop's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from nervous.messages import Message, MessageError, OrganCharge, OrganEvent, OrganState, decode, encode
from organs.host.config import OrganHostConfig
from organs.host.loaders import (
    CallError,
    InProcessLoader,
    LoadedOrgan,
    Loader,
    LoadError,
    ProcessLoader,
    WorkerGone,
)
from organs.host.registry import OrganSpec, organ_specs

log = logging.getLogger(__name__)

_FIELD = re.compile(r"^([a-z_]+)=")


class OrganError(RuntimeError):
    """A request the host could not serve; ``field`` names the request field at fault ('' if none)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Organ:
    """The host's state of one organ."""

    spec: OrganSpec
    state: OrganState = OrganState.UNLOADED
    loaded: LoadedOrgan | None = None
    loading: asyncio.Future[None] | None = None
    closing: bool = False
    last_used: float = 0.0
    pending: int = 0
    """Requests that want it now: waiting for its load or a slot, queued, or being answered."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loads: int = 0
    unloads: int = 0
    calls: int = 0
    load_s: float = float("nan")
    """Seconds the last load took, from the first request's view (start to READY)."""


class OrganHost:
    """Serves organ requests, loading and unloading organs as the slots and idle times say."""

    def __init__(
        self,
        config: OrganHostConfig,
        loader: Loader | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[OrganEvent], Any] | None = None,
        on_charge: Callable[[OrganCharge], Any] | None = None,
        log_level: int = logging.INFO,
    ) -> None:
        self.config = config
        self.log_level = log_level
        """Level of the one log line per state transition (the in-process host's, DEBUG: a training run
        makes thousands of looks per update, each two transitions, and reports them as metrics)."""
        self.organs = {name: Organ(spec) for name, spec in organ_specs(config).items()}
        if loader is None:
            loader = (ProcessLoader(config.threads, config.load_timeout_s) if config.loader == "process"
                      else InProcessLoader(config.threads))
        self.loader = loader
        self.clock = clock
        self.on_event = on_event
        self.on_charge = on_charge
        self.charged: Counter[int] = Counter()
        """Lifeforce charged per NPC since the owner last cleared it."""
        self._gates: dict[tuple[str, int], bool] = {}
        self._change = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- gates ------------------------------------------------------------------------------------

    def set_gate(self, npc: int, organ: str, is_open: bool) -> None:
        """Open or close one NPC's gate for one organ."""
        self._gates[(organ, npc)] = is_open

    def gate_open(self, npc: int, organ: str) -> bool:
        """Whether the NPC's requests to the organ are served."""
        return self._gates.get((organ, npc), self.config.gate == "open")

    # -- requests ---------------------------------------------------------------------------------

    def request_type(self, organ: str, verb: str) -> type[Message]:
        """The request message type of an organ's verb; OrganError naming what is unknown."""
        o = self.organs.get(organ)
        if o is None:
            serving = ", ".join(self.organs)
            raise OrganError(f"organ {organ!r} is not served here (serving {serving})", "organ")
        kinds = o.spec.kind.verbs.get(verb)
        if kinds is None:
            verbs = ", ".join(o.spec.kind.verbs)
            raise OrganError(f"organ {organ} has no verb {verb!r} (it answers {verbs})", "verb")
        return kinds[0]

    async def call(self, organ: str, verb: str, request: Any, data: bytes | None = None) -> Any:
        """The organ's typed reply to one request (data: the request already encoded); OrganError if not."""
        req_type = self.request_type(organ, verb)
        if not isinstance(request, req_type):
            raise OrganError(f"{organ}.{verb} takes a {req_type.__name__}, not a {type(request).__name__}",
                             "type")
        o = self.organs[organ]
        check = o.spec.kind.check
        if check is not None:
            try:
                check(request)
            except ValueError as exc:
                match = _FIELD.match(str(exc))
                raise OrganError(f"{organ}.{verb}: {exc}", match.group(1) if match else "") from None
        if not self.gate_open(request.npc, organ):
            raise OrganError(f"the {organ} gate of npc {request.npc} is closed", "npc")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.deadline_s
        o.pending += 1
        try:
            await self._ensure_loaded(o, request, deadline)
            reply_data = await self._process(o, verb, data or encode(request), request, deadline)
        finally:
            o.pending -= 1
            o.last_used = self.clock()
            self._notify()
        try:
            reply = decode(reply_data, o.spec.kind.verbs[verb][1])
        except MessageError as exc:
            raise OrganError(f"{organ}.{verb} answered badly: {exc}") from None
        cost = self.config.lifeforce.per_organ_call
        reply = msgspec.structs.replace(reply, cost=cost)
        self.charged[request.npc] += cost
        if self.on_charge is not None:
            self.on_charge(OrganCharge(npc=request.npc, organ=organ, verb=verb, cost=cost, tick=request.tick))
        return reply

    async def _ensure_loaded(self, o: Organ, request: Any, deadline: float) -> None:
        """Return once the organ is loaded: wait for a load in progress, or claim a slot and load it."""
        loop = asyncio.get_running_loop()
        while o.loaded is None or o.closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise OrganError(f"{o.spec.name} not loaded within the request's {request.deadline_s:g} s",
                                 "deadline_s")
            if o.loading is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(o.loading), remaining)
                except TimeoutError:
                    raise OrganError(f"{o.spec.name} still loading after the request's "
                                     f"{request.deadline_s:g} s", "deadline_s") from None
            elif o.closing:
                await self._wait_change(o, request, deadline)
            else:
                await self._claim_slot(o, request, deadline)
                if o.loaded is None and o.loading is None and not o.closing:
                    self._start_load(o, f"request of npc {request.npc}")

    def _used(self) -> int:
        return sum(1 for o in self.organs.values() if o.loading is not None or o.loaded is not None)

    async def _claim_slot(self, o: Organ, request: Any, deadline: float) -> None:
        """Return when a slot is free (evicting an idle organ if the policy says so) or o is being loaded."""
        while self._used() >= self.config.slots and o.loading is None and o.loaded is None:
            if self.config.when_full == "evict":
                idle = [v for v in self.organs.values() if v is not o and v.loaded is not None
                        and not v.closing and v.pending == 0 and v.state == OrganState.READY]
                if idle:
                    await self._unload(min(idle, key=lambda v: v.last_used), f"evicted for {o.spec.name}")
                    continue
            await self._wait_change(o, request, deadline)

    async def _wait_change(self, o: Organ, request: Any, deadline: float) -> None:
        """Wait for any organ to change (unload, idle, loaded) until the deadline; OrganError after it."""
        change = self._change
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(change.wait(), remaining)
        except TimeoutError:
            held = ", ".join(v.spec.name for v in self.organs.values() if v.loaded is not None or v.loading)
            raise OrganError(f"no free slot for {o.spec.name} within the request's {request.deadline_s:g} s: "
                             f"{self.config.slots} slot(s) held by {held or 'organs unloading'} "
                             f"(when_full={self.config.when_full})", "deadline_s") from None

    def _notify(self) -> None:
        change, self._change = self._change, asyncio.Event()
        change.set()

    def _start_load(self, o: Organ, reason: str) -> None:
        loop = asyncio.get_running_loop()
        o.loading = loop.create_future()
        o.loading.add_done_callback(lambda f: f.cancelled() or f.exception())  # waiters may all be gone
        self._set(o, OrganState.LOADING, reason)
        task = asyncio.create_task(self._load(o, o.loading, loop.time()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, o: Organ, done: asyncio.Future[None], started: float) -> None:
        try:
            loaded = await self.loader.load(o.spec)
        except Exception as exc:  # LoadError names the file; anything else is a loader bug, said as such
            o.loading = None
            log.warning("organ %s: load failed: %s", o.spec.name, exc)
            self._set(o, OrganState.UNLOADED, f"load failed: {exc}")
            done.set_exception(OrganError(str(exc) if isinstance(exc, LoadError)
                                          else f"{o.spec.name}: load failed: {type(exc).__name__}: {exc}"))
            self._notify()
            return
        except asyncio.CancelledError:
            o.loading = None
            self._set(o, OrganState.UNLOADED, "host stopping")
            done.set_exception(OrganError(f"{o.spec.name}: the host is stopping"))
            self._notify()
            raise
        o.loaded, o.loading = loaded, None
        o.loads += 1
        o.load_s = asyncio.get_running_loop().time() - started
        o.last_used = self.clock()
        self._set(o, OrganState.READY, f"loaded in {o.load_s:.2f} s", loaded.rss_bytes())
        done.set_result(None)
        self._notify()

    async def _process(self, o: Organ, verb: str, data: bytes, request: Any, deadline: float) -> bytes:
        """One call to the loaded organ, after the requests before it; bounded by the deadline."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(o.lock.acquire(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise OrganError(f"{o.spec.name} busy: the request's {request.deadline_s:g} s passed in its "
                             "queue", "deadline_s") from None
        try:
            loaded = o.loaded
            if loaded is None or o.closing:
                raise OrganError(f"{o.spec.name} was unloaded before the request's turn")
            self._set(o, OrganState.PROCESSING, f"{verb} for npc {request.npc}")
            try:
                reply = await asyncio.wait_for(loaded.call(verb, data), max(0.0, deadline - loop.time()))
            except TimeoutError:
                await self._unload(o, "a call ran past its deadline")
                raise OrganError(f"{o.spec.name}.{verb} did not answer within the request's "
                                 f"{request.deadline_s:g} s", "deadline_s") from None
            except WorkerGone as exc:
                o.loaded = None
                o.unloads += 1
                self._set(o, OrganState.UNLOADED, str(exc))
                self._notify()
                raise OrganError(str(exc)) from None
            except CallError as exc:
                raise OrganError(str(exc)) from None
            o.calls += 1
            return reply
        finally:
            if o.loaded is not None and o.state == OrganState.PROCESSING:
                self._set(o, OrganState.READY, "")
            o.lock.release()

    # -- lifecycle --------------------------------------------------------------------------------

    async def reap(self) -> None:
        """Unload every organ idle for ``unload_after_s`` on the host's clock."""
        now = self.clock()
        for o in self.organs.values():
            if (o.loaded is not None and not o.closing and o.pending == 0 and o.state == OrganState.READY
                    and now - o.last_used >= self.config.unload_after_s):
                await self._unload(o, f"idle {now - o.last_used:.1f} s")

    async def unload(self, organ: str, reason: str = "asked") -> None:
        """Unload one organ now (no-op when it is not loaded)."""
        o = self.organs[organ]
        if o.loaded is not None and not o.closing:
            await self._unload(o, reason)

    async def _unload(self, o: Organ, reason: str) -> None:
        loaded = o.loaded
        if loaded is None:
            return
        o.closing = True
        try:
            await loaded.close()
        finally:
            o.loaded, o.closing = None, False
            o.unloads += 1
            self._set(o, OrganState.UNLOADED, reason)
            self._notify()

    async def close(self) -> None:
        """Stop loads in progress and unload every organ."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for o in self.organs.values():
            await self._unload(o, "host stopping")

    def _set(self, o: Organ, state: OrganState, reason: str, rss: int = 0) -> None:
        if state == o.state:
            return
        event = OrganEvent(organ=o.spec.name, state=state, previous=o.state, reason=reason[:500],
                           rss_mib=rss / (1 << 20))
        o.state = state
        log.log(self.log_level, "organ %s: %s -> %s %s", o.spec.name, event.previous, state, reason)
        if self.on_event is not None:
            self.on_event(event)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per organ: state, loads, unloads, calls, last load seconds."""
        return {name: {"state": str(o.state), "loads": o.loads, "unloads": o.unloads, "calls": o.calls,
                       "load_s": o.load_s} for name, o in self.organs.items()}
