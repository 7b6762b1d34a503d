"""The cortex link of the in-process runtime: collapses through open gates -> situations -> plans -> actions.

``CortexLink`` is the ``governor.runtime.Escalator`` of the trainer and the evaluator (same escalation
path as ``organs.escalation`` describes for the live organism). It keeps every NPC's seen map
(``SeenMaps``, updated once per world tick, forgotten when the NPC dies or is born) and:

- ``escalate``: each requested (env, NPC) - the strongest requested region when several - becomes the
  boundary's situation (``npc_numbers`` -> ``cortex.boundary``: the ``DeterministicEncoder``, or a
  function-calling model with the encoder standing in when its answer is invalid) and an
  ``Escalation`` carrying the governor's LLM priority; all of a tick's escalations go to the backend at once
  (``organs.cortex.backends``: the engine in-process or the real client over HTTP) and the tick waits
  for their results. A PLANNED result gets a ``PlanFollower``. An NPC already following a plan does
  not escalate (it is not counted and pays nothing); every other request counts as an escalation,
  answered or not.
- ``follow``: from the world tick after its escalation, a plan's action replaces the brain's until the
  plan is done or invalid; then the brain resumes. A plan invalid at its very first step (its NPC's state
  no longer fits it) is counted apart too (``plans_invalid_at_start``).
- ``blocking=False`` (the live world server's link): ``escalate`` submits the tick's escalations
  (``PlanBackend.submit``) and returns at once, charged as escalations; nothing waits for the cortex.
  An answer in by the start of a later world tick is taken at that tick and its plan acts from it,
  started from the NPC's state then (invalid there: dropped as above). A planned answer that came back
  past its request's deadline is dropped and counted as STALE (``stale_answers``). An NPC with a request
  in flight does not escalate again (not counted, pays nothing), and its death or birth discards the
  request (cancelled, counted in ``discarded``). The deterministic encoder writes the situation inside
  the tick (about 0.1 ms); a model boundary (``cortex.boundary.backend=model``), whose answers take an
  HTTP round trip too, writes it in one of the link's ``cortex.concurrency`` worker threads, which then
  submits the question: the tick waits for neither. The default, ``blocking=True``, is the training,
  eval and benchmark path: the tick waits for its answers, so a run is as reproducible as the answers.
- Any outcome but PLANNED (failed, stale, breaker open, invalid answer) leaves the brain in charge; the
  first of each kind is logged once, as one line, and all are counted.

With ``cortex.vision_gate`` open (or ``governed`` and the NPC's organ gate opened by ``organ_gate``: the
governor's rule, ``governor.organ_gates``, handed on by ``governor.runtime``; the organ host knows NPC n
of env b as row ``b * N + n``),
each escalation first looks through the NPC's vision organ: the 15x15-cell window of its env's rendered
grid around it goes to the organ host as the bus's own ``VisionRequest`` through the look seam
(``organs.host.seam``: in-process ``organs.host.inproc``, the host's state machine in this thread, the
organ loaded on first use, unloaded when idle; live, ``make_link(live=True)`` and ``connect_organs``,
``organs.host.client.BusOrgans``: the supervised organ host service on the bus, a reply within
``cortex.vision_deadline_s`` or the look is refused), the confident
detections are merged into the NPC's seen map (``organs.vision.look``; what it saw itself stays), and
the situation - so the plan - sees beyond its view: a key behind it, a door round the corner. Each
served look charges the reply's ``cost`` (``nervous.lifeforce.per_organ_call``) to that NPC through
``GridWorld.charge`` (live, the host's ``OrganCharge`` does, applied by the world server); a closed
gate makes no call and costs nothing; a refused, late or failed look is counted, logged once, and the
escalation goes on with what the NPC saw itself.

Recorded per escalation: latency, outcome, how its plan ended (done or invalid), and the NPC's reward
over the next ``cortex.outcome_ticks`` world ticks (non-blocking: from the tick its answer was taken;
cut short by death, birth or a new escalation). Non-blocking, an escalation is counted when it is
submitted and its outcome, latency and trail event when its answer is taken; a discarded one leaves a
trail event with outcome ``discarded``.
``pop_stats`` gives them as ``cortex/`` metrics since its last call; ``totals`` keeps the counters since
the link was made.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np

from nervous.bus import BusConfig
from nervous.cells.base import WaveArrays
from nervous.lifeforce import LifeforceConfig
from nervous.messages import REGIONS, CollapseEvent, OrganGate
from organs.boundary.encoder import Boundary, DeterministicEncoder, NpcNumbers, Situated
from organs.boundary.model import make_boundary
from organs.boundary.numbers import encode_numbers
from organs.boundary.schema import encode_call
from organs.boundary.world_numbers import SeenMaps, npc_numbers, npc_view
from organs.config import CortexConfig
from organs.cortex.backends import PlanBackend, make_backend
from organs.cortex.client import completion_request, recorded_request
from organs.cortex.tools import tool_name
from organs.escalation import Escalation, EscalationResult, Outcome
from organs.host.client import BusOrgans
from organs.host.config import OrganHostConfig
from organs.host.inproc import InProcessHost
from organs.host.lifecycle import OrganError
from organs.host.seam import OrganSeam
from organs.plan import PlanFollower, PlanStatus
from world import GridWorld
from world.tiles import Tile

#: The organ the planner looks through, as the organ host names it.
VISION = "vision"

log = logging.getLogger(__name__)


@dataclass
class LinkStats:
    """What the escalations of a stretch of ticks came to."""

    escalations: int = 0
    boundary_fallbacks: int = 0
    """Situations the deterministic encoder wrote because the boundary model's answer was unusable."""
    planned: int = 0
    plans_done: int = 0
    plans_invalid: int = 0
    plans_invalid_at_start: int = 0
    """Plans (of those invalid) that could not take their first step from their NPC's state then."""
    stale_answers: int = 0
    """Non-blocking: planned answers that came back past their request's deadline (dropped, STALE)."""
    discarded: int = 0
    """Non-blocking: requests in flight given up because their NPC died or was born."""
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    outcome_rewards: list[float] = field(default_factory=list)
    """Each finished escalation's reward over the ticks after it."""
    vision_calls: int = 0
    """Looks through the vision organ that were served (and charged)."""
    vision_refused: int = 0
    """Looks the organ host refused or failed (nothing charged)."""
    vision_cells: int = 0
    """Cells of seen maps that only the vision organ's looks made known."""
    vision_s: float = 0.0
    """Seconds spent looking (rendering, the organ's call, merging), served looks or not."""

    def add(self, other: LinkStats) -> None:
        """Add another stretch's figures to these."""
        self.escalations += other.escalations
        self.boundary_fallbacks += other.boundary_fallbacks
        self.planned += other.planned
        self.plans_done += other.plans_done
        self.plans_invalid += other.plans_invalid
        self.plans_invalid_at_start += other.plans_invalid_at_start
        self.stale_answers += other.stale_answers
        self.discarded += other.discarded
        self.outcomes.update(other.outcomes)
        self.latencies_s += other.latencies_s
        self.outcome_rewards += other.outcome_rewards
        self.vision_calls += other.vision_calls
        self.vision_refused += other.vision_refused
        self.vision_cells += other.vision_cells
        self.vision_s += other.vision_s

    def metrics(self) -> dict[str, float]:
        """The ``cortex/`` metrics: counts, outcome counts, latency percentiles, mean outcome reward."""
        out = {"cortex/escalations": float(self.escalations), "cortex/planned": float(self.planned),
               "cortex/plans_done": float(self.plans_done), "cortex/plans_invalid": float(self.plans_invalid),
               "cortex/boundary_fallbacks": float(self.boundary_fallbacks),
               "cortex/plans_invalid_at_start": float(self.plans_invalid_at_start),
               "cortex/stale_answers": float(self.stale_answers), "cortex/discarded": float(self.discarded)}
        out |= {f"cortex/outcome_{o.value}": float(self.outcomes[o.value]) for o in Outcome}
        out |= {"cortex/vision_calls": float(self.vision_calls),
                "cortex/vision_refused": float(self.vision_refused),
                "cortex/vision_cells": float(self.vision_cells)}
        if self.vision_calls + self.vision_refused:
            out["cortex/vision_look_ms"] = 1000.0 * self.vision_s / (self.vision_calls + self.vision_refused)
        if self.latencies_s:
            ms = np.array(self.latencies_s) * 1000.0
            out |= {"cortex/latency_p50_ms": float(np.percentile(ms, 50)),
                    "cortex/latency_p99_ms": float(np.percentile(ms, 99))}
        if self.outcome_rewards:
            out["cortex/outcome_reward"] = float(np.mean(self.outcome_rewards))
        return out


#: Escalation outcomes in the order the viewer's ``escalation_outcome`` column indexes them.
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)


class TrailSink(Protocol):
    """Where escalations are recorded (``organs.trails.recorder.TrailRecorder``)."""

    def escalation(self, world: GridWorld, env: int, npc: int, region: str, situation: str = "",
                   request: str = "", response: str = "", outcome: str = "", latency_ms: float = 0.0,
                   fallback: str = "", numbers: str = "", model: str = "") -> None:
        """Record one escalation (request: the chat-completions body as JSON; model: the one it asked)."""
        ...


@dataclass
class Look:
    """One NPC's vision look: the request cut on the tick, the reply (from a worker when non-blocking)."""

    request: Any
    """The organ's ``VisionRequest`` (the window around the NPC at its escalation)."""
    x: int
    """Column of the NPC on its seen map when the window was cut."""
    y: int
    """Row of the NPC on its seen map when the window was cut."""
    reply: Any = None
    """The organ's reply once served (None: not yet, or refused)."""
    error: str = ""
    """Why the look was not served (``OrganError``)."""
    seconds: float = 0.0
    """Time the worker spent on the call."""


@dataclass
class InFlight:
    """A non-blocking escalation whose answer is not taken yet."""

    numbers: NpcNumbers
    future: Future[EscalationResult] = field(default_factory=Future)
    """Its result; with a model boundary, the worker's that writes the situation, then asks."""
    escalation: Escalation | None = None
    """The question (set before the future is done)."""
    situated: Situated | None = None
    """The boundary's situation (set before the future is done)."""
    sent: float = 0.0
    """``time.monotonic()`` when the question went to the backend."""
    asked: Future[EscalationResult] | None = None
    """With a model boundary: the backend's own future, once the worker asked."""
    given_up: bool = False
    """Discarded: a worker that has not asked yet does not ask."""
    look: Look | None = None
    """Its vision look, taken by the worker before the situation is written (None: no look)."""

    def cancel(self) -> None:
        """Give up on the answer (a question already on its way may still be answered; nobody takes it)."""
        self.given_up = True
        self.future.cancel()
        if self.asked is not None:
            self.asked.cancel()


class CortexLink:
    """Escalations of a batched world to the cortex, and the plans that come back."""

    def __init__(self, config: CortexConfig, backend: PlanBackend | None = None,
                 boundary: Boundary | None = None, trails: TrailSink | None = None,
                 lifeforce: LifeforceConfig | None = None, organs: OrganSeam | None = None,
                 blocking: bool = True, live: bool = False) -> None:
        self.config = config
        self.blocking = blocking
        """True: a tick waits for its escalations' answers (training, eval); False: the live world server's
        link, whose ticks never wait (answers are taken at the first tick they are in)."""
        self.inflight: dict[tuple[int, int], InFlight] = {}
        """Non-blocking: (env, NPC) -> its escalation whose answer is not taken yet."""
        self._workers: ThreadPoolExecutor | None = None
        """Non-blocking with a model boundary: the threads that write situations, then ask."""
        self.organs = organs if organs is not None else make_organs(config, lifeforce, live)
        """The organs the planner looks through (``organs.host.seam``): the in-process host, or the organ
        host service over the bus (live, once ``connect_organs``); None: vision_gate closed."""
        self.trails = trails
        """Where each escalation is recorded (``organs.trails.recorder.TrailRecorder``), or None."""
        self.backend = backend if backend is not None else make_backend(config)
        if boundary is None:  # a model boundary without its own base_url asks the cortex's server
            cortex_url = getattr(self.backend, "base_url", None) or config.base_url
            boundary = make_boundary(config.boundary, cortex_url)
        self.boundary = boundary
        self.stats = LinkStats()
        self.totals = LinkStats()
        self.plans: dict[tuple[int, int], tuple[PlanFollower, int]] = {}
        """Plans being followed: (env, NPC) -> (follower, first world tick it acts at)."""
        self.seen: SeenMaps | None = None
        self._key: tuple[int, int] | None = None
        self._shape: tuple[int, int] | None = None
        self._world: int | None = None
        self._warned: set[str] = set()

    # ======================================================================================
    # per-tick state
    # ======================================================================================
    def _setup(self, world: GridWorld) -> None:
        B, N = world.num_envs, world.num_npcs
        self._shape, self._world = (B, N), id(world)
        self.seen = SeenMaps(world)
        self.plans = {}
        self._cancel_inflight()
        self.window_left = np.zeros((B, N), dtype=np.int64)
        self.window_reward = np.zeros((B, N), dtype=np.float64)
        self.forget = np.zeros((B, N), dtype=bool)
        self.last_outcome = np.full((B, N), -1, dtype=np.int8)
        """Each NPC's last escalation's outcome this life: index into ``OUTCOMES`` (-1: none)."""

    def _sync(self, world: GridWorld) -> None:
        """Once per world tick: last tick's rewards into open outcome windows, forget the reset rows,
        update the seen maps."""
        if self._shape != (world.num_envs, world.num_npcs) or self._world != id(world):
            self._setup(world)
            self._key = None
        key = (id(world), int(world.ticks))
        if key == self._key:
            return
        self._key = key
        assert self.seen is not None
        open_ = self.window_left > 0
        if open_.any():
            self.window_reward[open_] += world.rewards[open_]
            self.window_left[open_] -= 1
            self._close_windows(open_ & ((self.window_left == 0) | self.forget))
        if self.forget.any():
            for b, n in zip(*np.nonzero(self.forget), strict=True):
                self.plans.pop((int(b), int(n)), None)
                pending = self.inflight.pop((int(b), int(n)), None)
                if pending is not None:  # its body is gone: so is the question it asked
                    pending.cancel()
                    self.stats.discarded += 1
                    self._trail_discarded(world, int(b), int(n), pending)
            self.seen.maps[self.forget] = Tile.UNSEEN
            self.forget[:] = False
        self.seen.update(world)
        if self.inflight:
            self._collect(world)
        if self.organs is not None:
            self.organs.reap()

    def _close_windows(self, rows: np.ndarray) -> None:
        for reward in self.window_reward[rows].tolist():
            self.stats.outcome_rewards.append(reward)
        self.window_left[rows] = 0
        self.window_reward[rows] = 0.0

    def reset(self, rows: np.ndarray) -> None:
        """Forget the plans and seen maps of rows bool [B, N] (died, or born) at the next tick's sync."""
        rows = np.asarray(rows, dtype=bool)
        if self._shape is not None and rows.shape == self._shape:
            self.forget |= rows
            self.last_outcome[rows] = -1

    # ======================================================================================
    # escalations
    # ======================================================================================
    def escalate(self, world: GridWorld, requests: np.ndarray, priority: np.ndarray, confidence: np.ndarray,
                 waves: WaveArrays) -> np.ndarray:
        """Ask the cortex for plans for requests bool [B, N, R]; bool [B, N]: the NPCs that escalated (none
        below ``cortex.from_stage``)."""
        B, N = world.num_envs, world.num_npcs
        escalated = np.zeros((B, N), dtype=bool)
        if world.config.stage < self.config.from_stage:
            return escalated
        self._sync(world)
        rows: list[tuple[int, int]] = []
        batch: list[NpcNumbers] = []
        images: dict[int, np.ndarray] = {}
        cost = np.zeros((B, N), dtype=np.float32)
        looks: dict[tuple[int, int], Look] = {}
        for b, n in zip(*np.nonzero(np.asarray(requests).any(axis=-1)), strict=True):
            b, n = int(b), int(n)
            if (b, n) in self.plans or (b, n) in self.inflight or not world.alive[b, n]:
                continue
            if self.organs is not None and self.organs.gate_open(b * N + n, VISION):
                if self.blocking:
                    self._look(world, b, n, images, cost)
                else:  # the window is cut now; a worker asks the organ, off the tick
                    looks[(b, n)] = self._cut_window(world, b, n, images)
            rows.append((b, n))
            batch.append(self._numbers(world, b, n, requests[b, n], confidence[b, n], waves))
        if cost.any():
            world.charge(cost)
        if not rows:
            return escalated
        if not self.blocking and (looks or not isinstance(self.boundary, DeterministicEncoder)):
            return self._submit_to_workers(rows, batch, priority, escalated, looks)
        situated_all = self.boundary.situate_many(batch)  # a model boundary asks them all at once
        deadline = time.monotonic() + self.config.deadline_s
        escalations = [Escalation(npc=numbers.npc, region=numbers.region, tick=numbers.tick,
                                  situation=situated.situation, priority=int(np.clip(priority[b, n], 0, 10)),
                                  deadline=deadline)
                       for (b, n), numbers, situated in zip(rows, batch, situated_all, strict=True)]
        for b, n in rows:
            escalated[b, n] = True
            self.stats.escalations += 1
        if not self.blocking:  # the answers are taken at the first tick they are in (``_collect``)
            sent = time.monotonic()
            futures = self.backend.submit(escalations)
            for (b, n), numbers, escalation, situated, future in zip(rows, batch, escalations, situated_all,
                                                                     futures, strict=True):
                self.inflight[(b, n)] = InFlight(numbers, future, escalation, situated, sent)
            return escalated
        results = self.backend.ask(escalations)
        answered = zip(rows, batch, escalations, situated_all, results, strict=True)
        for (b, n), numbers, escalation, situated, result in answered:
            self.stats.boundary_fallbacks += bool(situated.fallback)
            self._record(b, n, result, int(world.ticks) + 1)
            self._trail(world, b, n, numbers, escalation, situated, result)
        return escalated

    def _submit_to_workers(self, rows: list[tuple[int, int]], batch: list[NpcNumbers], priority: np.ndarray,
                           escalated: np.ndarray, looks: dict[tuple[int, int], Look]) -> np.ndarray:
        """Non-blocking with a model boundary or a look: each NPC's look is taken, its situation written,
        then asked, by a worker."""
        if self._workers is None:
            self._workers = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="cortex-link")
        deadline = time.monotonic() + self.config.deadline_s
        for (b, n), numbers in zip(rows, batch, strict=True):
            escalated[b, n] = True
            self.stats.escalations += 1
            pending = InFlight(numbers, look=looks.get((b, n)))
            pending.future = self._workers.submit(self._situate_and_ask, pending,
                                                  int(np.clip(priority[b, n], 0, 10)), deadline)
            self.inflight[(b, n)] = pending
        return escalated

    def _situate_and_ask(self, pending: InFlight, priority: int, deadline: float) -> EscalationResult:
        """In a worker: the NPC's look (merged into its numbers' own copy of the seen map), the boundary's
        situation of it, then the backend's answer to it."""
        numbers = pending.numbers
        if pending.look is not None and not pending.given_up:
            self._take_look(pending.look, numbers.seen)
        pending.situated = situated = self.boundary.situate(numbers)
        pending.escalation = escalation = Escalation(
            npc=numbers.npc, region=numbers.region, tick=numbers.tick, situation=situated.situation,
            priority=priority, deadline=deadline)
        if pending.given_up:  # its NPC died (or the link closed) while the situation was written
            return EscalationResult(npc=numbers.npc, region=numbers.region, tick=numbers.tick,
                                    outcome=Outcome.FAILED, detail="discarded")
        pending.sent = time.monotonic()
        pending.asked = asked = self.backend.submit([escalation])[0]
        wait_s = getattr(self.backend, "wait_s", None)
        try:
            return asked.result(wait_s)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return EscalationResult(npc=numbers.npc, region=numbers.region, tick=numbers.tick,
                                    outcome=Outcome.FAILED, detail=f"no answer within {wait_s} s")

    def _collect(self, world: GridWorld) -> None:
        """Non-blocking: take the answers that are in; each plan acts from this tick (planned answers past
        their deadline are dropped as STALE)."""
        tick = int(world.ticks)
        for (b, n), pending in list(self.inflight.items()):
            if not pending.future.done():
                continue
            del self.inflight[(b, n)]
            if pending.look is not None:
                self._learn_look(world, b, n, pending.look)
            result = self._answer(pending)
            self._record(b, n, result, tick)
            if pending.escalation is not None and pending.situated is not None:
                self.stats.boundary_fallbacks += bool(pending.situated.fallback)
                self._trail(world, b, n, pending.numbers, pending.escalation, pending.situated, result)

    def _answer(self, pending: InFlight) -> EscalationResult:
        """The result of a done request: a planned answer past its deadline is turned into STALE."""
        numbers, escalation = pending.numbers, pending.escalation
        error = "cancelled by the backend" if pending.future.cancelled() else pending.future.exception()
        if error is not None or escalation is None:  # a bug (the parts never raise): FAILED, never raised
            return EscalationResult(npc=numbers.npc, region=numbers.region, tick=numbers.tick,
                                    outcome=Outcome.FAILED, detail=f"backend error: {error!r}")
        result = pending.future.result()
        late = pending.sent + result.latency_s - escalation.deadline
        if result.outcome is Outcome.PLANNED and late > 0.0:
            self.stats.stale_answers += 1
            return dataclasses.replace(result, outcome=Outcome.STALE, call=None,
                                       detail=f"answered {late:.3f} s past its deadline")
        return result

    def _trail(self, world: GridWorld, b: int, n: int, numbers: NpcNumbers, escalation: Escalation,
               situated: Situated, result: EscalationResult) -> None:
        """Record one answered escalation in the decision trails (when recording)."""
        if self.trails is None:
            return
        planned = result.outcome is Outcome.PLANNED and result.call is not None
        situation = encode_call(escalation.situation).decode()
        fallbacks = ([f"encoder:{situated.fallback}"] if situated.fallback else []) + ([] if planned
                                                                                     else ["reflex"])
        request = recorded_request(completion_request(self.config, escalation))
        self.trails.escalation(
            world, b, n, escalation.region.value, situation=situation,
            request=msgspec.json.encode(request).decode(), model=self.config.model,
            response=msgspec.json.encode({"name": tool_name(result.call), "arguments": result.call})
            .decode() if planned else "",
            outcome=result.outcome.value, latency_ms=1000.0 * (situated.latency_s + result.latency_s),
            fallback=",".join(fallbacks), numbers=encode_numbers(numbers))

    def _trail_discarded(self, world: GridWorld, b: int, n: int, pending: InFlight) -> None:
        """Record a discarded escalation in the trails (it was charged): outcome ``discarded``, with the
        question when the worker had written it, and how long it waited."""
        if self.trails is None:
            return
        escalation, numbers = pending.escalation, pending.numbers
        situation = request = ""
        if escalation is not None:
            situation = encode_call(escalation.situation).decode()
            asked = recorded_request(completion_request(self.config, escalation))
            request = msgspec.json.encode(asked).decode()
        waited_s = time.monotonic() - pending.sent if pending.sent else 0.0
        self.trails.escalation(world, b, n, numbers.region.value, situation=situation, request=request,
                               model=self.config.model, outcome="discarded", latency_ms=1000.0 * waited_s,
                               numbers=encode_numbers(numbers))

    def _look(self, world: GridWorld, b: int, n: int, images: dict[int, np.ndarray],
              cost: np.ndarray) -> None:
        """One look of NPC n in env b through its vision organ (the seam: in-process host or the bus),
        merged into its seen map; its cost in cost where the caller pays (in-process)."""
        look = self._cut_window(world, b, n, images)
        self._take_look(look)
        self._learn_look(world, b, n, look, cost)

    def _cut_window(self, world: GridWorld, b: int, n: int, images: dict[int, np.ndarray]) -> Look:
        """The vision request of NPC n in env b: the window of its env's rendered frame around it."""
        from organs.vision.frames import render  # torch and pygame only once a look is asked for
        from organs.vision.look import window_request

        started = time.perf_counter()
        if b not in images:
            images[b] = render(world.frame(b))
        x, y = int(world.pos_x[b, n]) - world.r, int(world.pos_y[b, n]) - world.r
        row = b * world.num_npcs + n  # the organ host's NPC id: n itself where there is one env (live)
        request = window_request(images[b], row, x, y, int(world.t[b]))  # the bus seam cuts its deadline
        return Look(request, x, y, seconds=time.perf_counter() - started)

    def _take_look(self, look: Look, seen: np.ndarray | None = None) -> None:
        """Ask the organ (on the tick, or in a worker: the seam is thread-safe on the bus); with seen, the
        reply is merged into that copy of the NPC's seen map too."""
        from organs.vision.look import merge_reply

        assert self.organs is not None
        started = time.perf_counter()
        try:
            look.reply = self.organs.call(VISION, "detect", look.request)
        except OrganError as exc:
            look.error = str(exc)
        if look.reply is not None and seen is not None:
            merge_reply(seen, look.reply, look.x, look.y)
        look.seconds += time.perf_counter() - started

    def _learn_look(self, world: GridWorld, b: int, n: int, look: Look,
                    cost: np.ndarray | None = None) -> None:
        """On the tick: a served look's detections into NPC n's own seen map (counted, its cost charged where
        the caller pays), or a refused one counted and logged once."""
        from organs.vision.look import merge_reply

        assert self.seen is not None
        self.stats.vision_s += look.seconds
        if look.reply is None:
            self.stats.vision_refused += 1
            if "vision" not in self._warned:
                self._warned.add("vision")
                log.warning("cortex: vision organ: %s; the planner goes on with what the NPC saw "
                            "(logged once)", look.error)
            return
        self.stats.vision_calls += 1
        self.stats.vision_cells += merge_reply(self.seen.maps[b, n], look.reply, look.x, look.y)
        if self.organs is not None and self.organs.caller_charges:  # on the bus the host's OrganCharge pays
            if cost is not None:
                cost[b, n] += look.reply.cost
            else:
                charge = np.zeros((world.num_envs, world.num_npcs), dtype=np.float32)
                charge[b, n] = look.reply.cost
                world.charge(charge)

    def connect_organs(self, bus: BusConfig) -> Callable[[], None]:
        """Live: look through the organ host service on this bus (``make_link(live=True)``); its disconnect
        (a no-op where the link looks in-process or not at all)."""
        if isinstance(self.organs, BusOrgans):
            self.organs.connect(bus)
            return self.organs.close
        return lambda: None

    def organ_gate(self, gate: OrganGate) -> None:
        """Take an organ gate (``vision_gate=governed``: the governor's word on one NPC's vision; its npc is
        the row b * N + n, n itself with one env); with ``open`` or ``closed`` gates are not governed."""
        if self.organs is not None and self.config.vision_gate == "governed":
            self.organs.set_gate(gate.npc, gate.organ, gate.open)

    def organ_states(self) -> dict[str, str]:
        """The organs' lifecycle states by name (empty with vision_gate closed)."""
        return self.organs.states() if self.organs is not None else {}

    def _numbers(self, world: GridWorld, b: int, n: int, requested: np.ndarray, confidence: np.ndarray,
                 waves: WaveArrays) -> NpcNumbers:
        """The boundary's numbers of one NPC about its strongest requested region."""
        assert self.seen is not None
        regions = np.flatnonzero(requested)
        r = int(regions[np.argmax(confidence[regions])])
        region = REGIONS[r]
        row = b * world.num_npcs + n
        strongest = np.zeros(len(REGIONS), dtype=np.float32)
        value = np.zeros(len(REGIONS), dtype=np.float32)
        agreeing: list[str] = []
        for c, (name, cell_region) in enumerate(zip(waves.cells, waves.regions, strict=True)):
            i = REGIONS.index(cell_region)
            if waves.confidence[row, c] > strongest[i]:
                strongest[i], value[i] = waves.confidence[row, c], waves.value[row, c]
            if cell_region == region and waves.fired[row, c]:
                agreeing.append(name)
        tick = int(world.t[b])
        event = CollapseEvent(npc=n, region=region, confidence=float(np.clip(confidence[r], 0.0, 1.0)),
                              cells=agreeing, tick=tick)
        return npc_numbers(world, b, self.seen, event, strongest, value)

    def _record(self, b: int, n: int, result: EscalationResult, start: int) -> None:
        """Count one result; a planned one becomes the NPC's plan from world tick start."""
        s = self.stats
        s.outcomes[result.outcome.value] += 1
        self.last_outcome[b, n] = OUTCOMES.index(result.outcome.value)
        s.latencies_s.append(result.latency_s)
        if self.window_left[b, n] > 0:  # a new escalation ends the last one's outcome window
            self._close_windows(self._one(b, n))
        self.window_left[b, n] = self.config.outcome_ticks
        if result.outcome is Outcome.PLANNED and result.call is not None:
            s.planned += 1
            self.plans[(b, n)] = (PlanFollower(result.call, max_steps=self.config.max_plan_steps), start)
        elif result.outcome.value not in self._warned:
            self._warned.add(result.outcome.value)
            log.warning("cortex: %s (%s); the NPC's brain goes on (logged once per outcome)",
                        result.outcome.value, result.detail)

    def _one(self, b: int, n: int) -> np.ndarray:
        assert self._shape is not None
        rows = np.zeros(self._shape, dtype=bool)
        rows[b, n] = True
        return rows

    # ======================================================================================
    # plans
    # ======================================================================================
    def follow(self, world: GridWorld, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actions with plan steps in place [B, N], following bool [B, N]) for this tick."""
        actions = np.asarray(actions, dtype=np.int64)
        following = np.zeros(actions.shape, dtype=bool)
        if world.config.stage < self.config.from_stage:
            return actions, following
        self._sync(world)
        if not self.plans:
            return actions, following
        assert self.seen is not None
        actions = actions.copy()
        tick = int(world.ticks)
        for (b, n), (follower, start) in list(self.plans.items()):
            if tick < start:
                continue
            action = follower.step(npc_view(world, b, n, self.seen))
            if action is None:
                del self.plans[(b, n)]
                if follower.status is PlanStatus.DONE:
                    self.stats.plans_done += 1
                else:
                    self.stats.plans_invalid += 1
                    self.stats.plans_invalid_at_start += follower.steps == 0
                continue
            actions[b, n] = action
            following[b, n] = True
        return actions, following

    # ======================================================================================
    # figures and lifetime
    # ======================================================================================
    def pop_stats(self) -> dict[str, float]:
        """The ``cortex/`` metrics since the last call (added to ``totals``), and reset them."""
        metrics = self.stats.metrics()
        self.totals.add(self.stats)
        self.stats = LinkStats()
        return metrics

    def lifetime_metrics(self) -> dict[str, float]:
        """The ``cortex/`` metrics since the link was made (``totals`` plus the stretch not yet popped)."""
        lifetime = LinkStats()
        lifetime.add(self.totals)
        lifetime.add(self.stats)
        return lifetime.metrics()

    def _cancel_inflight(self) -> None:
        for pending in self.inflight.values():
            pending.cancel()
        self.inflight = {}

    def close(self) -> None:
        """Give up the requests in flight; release the backend (its thread and embedded server, over HTTP),
        the boundary and the organs."""
        self._cancel_inflight()
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)
        try:
            self.backend.close()
        finally:
            self.boundary.close()
            if self.organs is not None:
                self.organs.close()


def make_organs(config: CortexConfig, lifeforce: LifeforceConfig | None = None,
                live: bool = False) -> OrganSeam | None:
    """The organs ``cortex.vision_gate`` asks for (None: closed): in-process, charging per_organ_call, or
    live the organ host service over the bus (unconnected until ``CortexLink.connect_organs``)."""
    if config.vision_gate == "closed":
        return None
    if live:
        return BusOrgans([VISION], gate="open" if config.vision_gate == "open" else "governed",
                         deadline_s=config.vision_deadline_s)
    import torch  # the organ loads into this process: keep its torch threads as they are

    weights = {VISION: config.vision_weights} if config.vision_weights else {}
    return InProcessHost(OrganHostConfig(
        organs=[VISION], weights=weights, loader="inproc", threads=torch.get_num_threads(),
        gate="open" if config.vision_gate == "open" else "governed",
        lifeforce=lifeforce or LifeforceConfig()))


def make_link(config: CortexConfig, lifeforce: LifeforceConfig | None = None,
              blocking: bool = True, live: bool = False) -> CortexLink | None:
    """The link ``cortex.backend`` asks for (organ calls charged per lifeforce; blocking=False for the live
    world server, live: looking over the bus); None for ``none``."""
    return None if config.backend == "none" else CortexLink(config, lifeforce=lifeforce, blocking=blocking,
                                                            live=live)
