"""The cortex client: escalations -> chat completions with tools (real ``openai.AsyncOpenAI``) -> one plan.

Requests wait in a client-side priority queue (0-10, 10 first; FIFO within a priority); ``concurrency``
workers take them out, drop the ones past their deadline (counted as stale), and send them through a
circuit breaker with per-attempt timeouts and jittered exponential backoff between retries. With
``priority_scheduling`` each request also carries vLLM's ``priority`` field (lower is served first
there, so 10 - priority). An answer that is not exactly one valid tool call is rejected and counted by
class; the caller gets an ``EscalationResult`` whatever happens, never an exception.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import openai

from organs.boundary.schema import encode_call
from organs.config import CortexConfig
from organs.cortex.tools import TOOL_DECLARATIONS, InvalidAnswer, PlanCall, parse_answer
from organs.escalation import Escalation, EscalationResult, Outcome

from .breaker import BreakerState, CircuitBreaker

SYSTEM_PROMPT = (
    "You are nyx, the cortex of one NPC in a grid world. The user message is a report_situation call: "
    "the NPC's body (with the doors and locks it opened this episode), the region its cells collapsed on, "
    "the lock in reach (a op b, what it shows), its seen map (rows of characters: . empty, # wall, f food, "
    "~ water, ^ fire, c charger, D door, k key, L lock, n NPC, ? unknown; x grows east, y grows south) and "
    "points of interest. Answer with exactly one tool call that helps the NPC survive and open a door or a "
    "lock."
)
#: Errors worth another attempt (the server may recover); others end the escalation at once.
_RETRYABLE = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.InternalServerError,
    openai.RateLimitError,
)


def tool_choice_of(config: CortexConfig) -> Any:
    """The request's ``tool_choice`` for ``cortex.tool_choice``: auto, required, or one named function."""
    choice = config.tool_choice
    return choice if choice in ("auto", "required") else {"type": "function", "function": {"name": choice}}


def completion_request(config: CortexConfig, escalation: Escalation) -> dict[str, Any]:
    """The chat-completions body of one escalation (with vLLM's ``priority`` when scheduling by it)."""
    body: dict[str, Any] = {
        "model": config.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": encode_call(escalation.situation).decode()},
        ],
        "tools": TOOL_DECLARATIONS,
        "tool_choice": tool_choice_of(config),
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
    }
    if config.priority_scheduling:
        body["priority"] = 10 - escalation.priority  # vLLM serves lower values first
    return body


def recorded_request(body: dict[str, Any]) -> dict[str, Any]:
    """What a decision trail keeps of a chat-completions body: all of it, but the tools offered by name
    (their declarations, 2 KB a request, are ``TOOL_DECLARATIONS`` of the code that sent it)."""
    kept = dict(body)
    kept["tools"] = [tool.get("function", {}).get("name", "") for tool in body.get("tools", [])]
    return kept


def parse_completion(response: Any) -> PlanCall:
    """Exactly one valid tool call of a chat completion (the openai client's or the engine's own)."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise InvalidAnswer("bad_json", "the answer is not a chat completion")
    if not choices:
        raise InvalidAnswer("no_call", "the answer has no choices")
    message = choices[0].message
    calls = [(c.function.name, c.function.arguments) for c in (message.tool_calls or [])]
    return parse_answer(calls)


class _Stopped(Exception):
    """The client was closed while a request waited."""


class CortexClient:
    """Priority-queued, breaker-guarded, validated calls to an OpenAI-compatible cortex."""

    def __init__(
        self,
        config: CortexConfig,
        base_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        url = base_url or config.base_url
        if url is None:
            raise ValueError("cortex.base_url: None; start an EmbeddedCortex and pass its base_url")
        self.config, self.base_url, self.clock = config, url, clock
        self.rng = rng or random.Random()
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_s, clock)
        self.counts: Counter[str] = Counter()
        """Counters: requests, planned, invalid_<class>, stale, queue_full, breaker_open, failed, retries."""
        self._openai = openai.AsyncOpenAI(
            base_url=url, api_key=config.api_key, timeout=config.timeout_s, max_retries=0
        )
        self._queue: asyncio.PriorityQueue[tuple[int, int, Escalation, asyncio.Future[EscalationResult]]] = (
            asyncio.PriorityQueue(config.queue_size)
        )
        self._seq = itertools.count()
        self._dispatched = itertools.count()
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> CortexClient:
        """Start the workers that take requests from the queue."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"cortex-worker-{i}")
                for i in range(self.config.concurrency)
            ]
        return self

    async def close(self) -> None:
        """Stop the workers, answer what still waits as stale, close the HTTP client."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self._queue.empty():
            _, _, escalation, future = self._queue.get_nowait()
            if not future.done():
                future.set_result(self._result(escalation, Outcome.STALE, "client closed", self.clock()))
        await self._openai.close()

    async def __aenter__(self) -> CortexClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def breaker_state(self) -> BreakerState:
        """The circuit breaker's state now."""
        return self.breaker.state

    @property
    def pending(self) -> int:
        """Requests waiting in the queue."""
        return self._queue.qsize()

    async def escalate(self, escalation: Escalation) -> EscalationResult:
        """Queue one escalation and wait for its result (never raises for cortex trouble)."""
        self.counts["requests"] += 1
        started = self.clock()
        future: asyncio.Future[EscalationResult] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((-escalation.priority, next(self._seq), escalation, future))
        except asyncio.QueueFull:
            self.counts["queue_full"] += 1
            return self._result(
                escalation, Outcome.QUEUE_FULL, f"queue holds {self.config.queue_size}", started
            )
        result = await future
        return EscalationResult(**{**result.__dict__, "latency_s": self.clock() - started})

    # ==========================================================================================
    # workers
    # ==========================================================================================
    async def _work(self) -> None:
        while True:
            _, _, escalation, future = await self._queue.get()
            if future.done():  # the caller gave up (cancelled)
                continue
            try:
                result = await self._serve(escalation, next(self._dispatched))
            except Exception as exc:  # a bug here must not kill the worker nor hang the caller
                self.counts["failed"] += 1
                result = self._result(escalation, Outcome.FAILED, f"client error: {exc!r}", self.clock())
            if not future.done():
                future.set_result(result)

    async def _serve(self, escalation: Escalation, order: int) -> EscalationResult:
        now = self.clock()
        if now > escalation.deadline:
            self.counts["stale"] += 1
            return self._result(
                escalation, Outcome.STALE, f"{now - escalation.deadline:.3f} s past deadline", now
            )
        attempts, detail = 0, ""
        while True:
            if not self.breaker.allow():
                self.counts["breaker_open"] += 1
                return self._result(
                    escalation, Outcome.BREAKER_OPEN, "circuit breaker open", now, attempts, order
                )
            attempts += 1
            try:
                response = await self._request(escalation)
            except _RETRYABLE as exc:
                self.breaker.record_failure()
                detail = f"{type(exc).__name__}: {exc}"
            except openai.APIStatusError as exc:  # the server refused the request: not its health's fault
                self.breaker.record_success()
                self.counts["failed"] += 1
                return self._result(
                    escalation, Outcome.FAILED, f"HTTP {exc.status_code}: {exc.message}", now, attempts, order
                )
            except (openai.APIResponseValidationError, ValueError) as exc:  # answered, but not a completion
                self.breaker.record_success()
                return self._invalid(escalation, InvalidAnswer("bad_json", str(exc)), now, attempts, order)
            else:
                self.breaker.record_success()
                try:
                    call = self._parse(response)
                except InvalidAnswer as exc:
                    return self._invalid(escalation, exc, now, attempts, order)
                self.counts["planned"] += 1
                return self._result(escalation, Outcome.PLANNED, "", now, attempts, order, call)
            if attempts > self.config.retries:
                self.counts["failed"] += 1
                return self._result(escalation, Outcome.FAILED, detail, now, attempts, order)
            self.counts["retries"] += 1
            await asyncio.sleep(self.rng.uniform(0.0, self.config.backoff_s * 2 ** (attempts - 1)))
            if self.clock() > escalation.deadline:
                self.counts["stale"] += 1
                return self._result(
                    escalation, Outcome.STALE, f"deadline passed after {detail}", now, attempts, order
                )

    async def _request(self, escalation: Escalation) -> Any:
        body = completion_request(self.config, escalation)
        priority = body.pop("priority", None)
        return await self._openai.chat.completions.create(
            **body, extra_body=None if priority is None else {"priority": priority}
        )

    @staticmethod
    def _parse(response: Any) -> PlanCall:
        return parse_completion(response)

    def _invalid(
        self, escalation: Escalation, exc: InvalidAnswer, started: float, attempts: int, order: int
    ) -> EscalationResult:
        self.counts[f"invalid_{exc.kind}"] += 1
        self.counts["invalid_answers"] += 1
        return self._result(
            escalation, Outcome.INVALID_ANSWER, f"{exc.kind}: {exc.detail}", started, attempts, order
        )

    def _result(
        self,
        escalation: Escalation,
        outcome: Outcome,
        detail: str,
        started: float,
        attempts: int = 0,
        order: int = -1,
        call: PlanCall | None = None,
    ) -> EscalationResult:
        return EscalationResult(
            npc=escalation.npc,
            region=escalation.region,
            tick=escalation.tick,
            outcome=outcome,
            call=call,
            detail=detail,
            latency_s=self.clock() - started,
            attempts=attempts,
            order=order,
        )
