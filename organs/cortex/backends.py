"""How the in-process runtime's escalations reach the cortex: the ``nyx`` engine in-process, or over HTTP.

``PlanBackend.ask(escalations) -> results`` answers one world tick's escalations, one result each and in
order, and never raises for cortex trouble: whatever goes wrong comes back as a counted outcome.
``PlanBackend.submit(escalations) -> futures`` is its non-blocking twin (the live world server's, through
``CortexLink(blocking=False)``): it returns at once, one ``concurrent.futures.Future`` per escalation that
holds its result when the answer is in (cancel one to give up on it; it never holds an exception).

- ``EngineBackend`` (``cortex.backend=engine``, training): the planner engine (``NyxEngine``) called in
  the caller's thread through the very request and response schema HTTP carries (``completion_request``
  -> ``ChatCompletionRequest`` -> ``NyxEngine.complete`` -> ``parse_completion``), without sockets or
  processes: HTTP per escalation would dominate the training loop.
- ``HttpBackend`` (``cortex.backend=http``, eval and benchmarks): the real ``CortexClient`` (the
  ``openai`` package: priority queue, breaker, retries, validation) on its own event loop in a
  background thread, against ``cortex.base_url`` (vLLM) or an ``EmbeddedCortex`` it starts and stops.
  The world tick **waits** for the answers: a tick's escalations are in flight together and the tick
  goes on once each has its result, so a run is as reproducible as the server's answers (the embedded
  planner's are). The wait is bounded by the client's deadline, timeouts and retries, with a hard guard
  past them (``wait_s``): an unreachable cortex costs a bounded wait, then the breaker refuses at once.
  ``submit`` only schedules the escalations on the backend's loop (``run_coroutine_threadsafe``) and
  returns: the caller's thread, and the asyncio loop it may run, never waits for the HTTP answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Protocol

import msgspec

from organs.config import CortexConfig
from organs.cortex.client import CortexClient, completion_request, parse_completion
from organs.cortex.embedded import EmbeddedCortex
from organs.cortex.engine import NyxEngine
from organs.cortex.protocol import ChatCompletionRequest, ProtocolError
from organs.cortex.tools import InvalidAnswer, PlanCall
from organs.escalation import Escalation, EscalationResult, Outcome


class PlanBackend(Protocol):
    """Answers a world tick's escalations."""

    counts: Counter[str]
    """Counters by outcome (and invalid-answer class), as ``CortexClient.counts``."""

    def ask(self, escalations: list[Escalation]) -> list[EscalationResult]:
        """One result per escalation, in order (never raises for cortex trouble)."""
        ...

    def submit(self, escalations: list[Escalation]) -> list[Future[EscalationResult]]:
        """One future per escalation, in order, returned at once (never raises for cortex trouble)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (threads, servers); safe to call twice."""
        ...


def _result(escalation: Escalation, outcome: Outcome, started: float, detail: str = "",
            call: PlanCall | None = None, attempts: int = 1) -> EscalationResult:
    return EscalationResult(npc=escalation.npc, region=escalation.region, tick=escalation.tick,
                            outcome=outcome, call=call, detail=detail,
                            latency_s=time.perf_counter() - started, attempts=attempts)


class EngineBackend:
    """The ``nyx`` planner engine in-process, through the chat-completions schema."""

    def __init__(self, config: CortexConfig, engine: NyxEngine | None = None) -> None:
        self.config = config
        self.engine = engine or NyxEngine(model=config.model)
        self.counts: Counter[str] = Counter()

    def ask(self, escalations: list[Escalation]) -> list[EscalationResult]:
        """Each escalation answered by the engine in turn."""
        return [self._one(e) for e in escalations]

    def submit(self, escalations: list[Escalation]) -> list[Future[EscalationResult]]:
        """Each escalation answered at once (well under a millisecond), as an already done future."""
        futures: list[Future[EscalationResult]] = []
        for result in self.ask(escalations):
            future: Future[EscalationResult] = Future()
            future.set_result(result)
            futures.append(future)
        return futures

    def _one(self, escalation: Escalation) -> EscalationResult:
        started = time.perf_counter()
        self.counts["requests"] += 1
        try:
            request = msgspec.convert(completion_request(self.config, escalation), ChatCompletionRequest)
            call = parse_completion(self.engine.complete(request))
        except ProtocolError as exc:
            self.counts["failed"] += 1
            return _result(escalation, Outcome.FAILED, started, f"HTTP {exc.status}: {exc.message}")
        except InvalidAnswer as exc:
            self.counts[f"invalid_{exc.kind}"] += 1
            self.counts["invalid_answers"] += 1
            return _result(escalation, Outcome.INVALID_ANSWER, started, f"{exc.kind}: {exc.detail}")
        self.counts["planned"] += 1
        return _result(escalation, Outcome.PLANNED, started, call=call)

    def close(self) -> None:
        """Nothing to release."""


class HttpBackend:
    """The real cortex client on a background event loop; the caller's tick waits for its answers."""

    def __init__(self, config: CortexConfig, base_url: str | None = None) -> None:
        self.config = config
        self.server: EmbeddedCortex | None = None
        url = base_url or config.base_url
        if url is None:
            self.server = EmbeddedCortex().start()
            url = self.server.base_url
        self.base_url = url
        retries = config.retries
        self.wait_s = (config.deadline_s + (retries + 1) * config.timeout_s
                       + config.backoff_s * (2 ** (retries + 1)) + 1.0)
        """The longest a tick waits for its answers (past the client's own bounds: a guard)."""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cortex-http-loop", daemon=True)
        self.thread.start()
        self.client: CortexClient = self._run(self._start(), 10.0)
        self._closed = False

    @property
    def counts(self) -> Counter[str]:
        """The client's counters."""
        return self.client.counts

    def _run(self, coroutine: object, timeout: float) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    async def _start(self) -> CortexClient:
        return await CortexClient(self.config, base_url=self.base_url).start()

    async def _all(self, escalations: list[Escalation]) -> list[EscalationResult]:
        return list(await asyncio.gather(*(self.client.escalate(e) for e in escalations)))

    def ask(self, escalations: list[Escalation]) -> list[EscalationResult]:
        """All escalations in flight at once; waits for every result (at most ``wait_s``)."""
        if not escalations:
            return []
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(self._all(escalations), self.loop)
        try:
            return future.result(self.wait_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            self.counts["failed"] += len(escalations)
            detail = f"no answer from {self.base_url} within {self.wait_s:.1f} s"
            return [_result(e, Outcome.FAILED, started, detail, attempts=0) for e in escalations]

    def submit(self, escalations: list[Escalation]) -> list[Future[EscalationResult]]:
        """Each escalation scheduled on the client's loop; returns without waiting for any answer."""
        return [asyncio.run_coroutine_threadsafe(self.client.escalate(e), self.loop) for e in escalations]

    def close(self) -> None:
        """Stop the client, its loop and thread, and the embedded server if this backend started one."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.client.close(), 5.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5.0)
            if not self.thread.is_alive():
                self.loop.close()
            if self.server is not None:
                self.server.stop()


def make_backend(config: CortexConfig) -> PlanBackend:
    """The backend ``cortex.backend`` names (engine or http)."""
    if config.backend == "engine":
        return EngineBackend(config)
    if config.backend == "http":
        return HttpBackend(config)
    raise ValueError(f"cortex.backend={config.backend!r}: no backend to make (engine or http)")
