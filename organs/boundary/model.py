"""The Function Gemma model backend: numbers -> a function-calling model -> one validated situation.

``ModelBoundary`` (``cortex.boundary.backend=model``) sends an NPC's numbers message
(``organs.boundary.numbers``) as the user turn of a chat completion whose ``tools`` declare
``report_situation`` (fitted to the NPC's map with ``fit_schema``), through the real ``openai``
client, to any OpenAI-compatible server: FunctionGemma under vLLM (``--tool-call-parser
functiongemma``), any tool-calling model, or the embedded cortex server's ``function-gemma`` (the
deterministic encoder behind the protocol). The answer must be exactly one ``report_situation`` call
whose arguments pass ``decode_call`` (the JSON Schema's bounds and the cross-field checks).

Whatever else comes back - no tool call, several, another function, arguments that are not JSON or not
a valid situation, an HTTP error, an unreachable server, a breaker opened by those - the deterministic
encoder writes the situation instead. The fallback is counted by kind (``counts``), logged once per
kind in one line, and named in the ``Situated`` the escalation path records in the decision trail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import openai

from organs.boundary.config import BoundaryConfig
from organs.boundary.encoder import Boundary, DeterministicEncoder, NpcNumbers, Situated
from organs.boundary.numbers import encode_numbers
from organs.boundary.schema import SITUATION_FUNCTION, Situation, SituationError, decode_call
from organs.boundary.schema import report_situation_declaration as declaration
from organs.cortex.breaker import CircuitBreaker
from organs.cortex.embedded import EmbeddedCortex

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are the Function Gemma boundary of a grid-world NPC. The user message holds the NPC's numbers: "
    "npc, tick, its position x, y, its proprio vector by name, its seen map (one string per row, one hex "
    "digit per cell: 0 empty, 1 wall, 2 food, 3 water, 4 fire, 5 charger, 6 door, 7 key, 8 lock, 9 NPC, "
    "a signalling NPC, b unseen), the region its cells collapsed on with their confidence, the strongest "
    "wave per region, and how many doors and locks it opened this episode. Call report_situation exactly "
    "once with the situation they describe."
)
#: Why the encoder stood in for the model.
FALLBACK_KINDS = (
    "unreachable", "refused", "breaker_open", "no_call", "several_calls", "wrong_function", "bad_json",
    "bad_situation",
)  # fmt: skip


class BoundaryAnswerError(ValueError):
    """An answer that is not exactly one valid report_situation call; ``kind`` is one of FALLBACK_KINDS."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"invalid boundary answer ({kind}): {detail}")


def tool_choice_of(config: BoundaryConfig) -> Any:
    """The request's ``tool_choice``: auto, required, or the named report_situation function."""
    choice = config.tool_choice
    return choice if choice in ("auto", "required") else {"type": "function", "function": {"name": choice}}


def boundary_request(config: BoundaryConfig, numbers: NpcNumbers) -> dict[str, Any]:
    """The chat-completions body asking the model for one NPC's report_situation call."""
    height, width = np.asarray(numbers.seen).shape
    tool = declaration(width, height) if config.fit_schema else declaration()
    return {
        "model": config.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": encode_numbers(numbers)},
        ],
        "tools": [tool],
        "tool_choice": tool_choice_of(config),
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
    }


def parse_situation_answer(response: Any) -> Situation:
    """The situation of exactly one valid report_situation call in a chat completion; BoundaryAnswerError."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise BoundaryAnswerError("no_call", "the answer has no choices")
    calls = choices[0].message.tool_calls or []
    if not calls:
        content = (choices[0].message.content or "").strip().replace("\n", " ")
        raise BoundaryAnswerError("no_call", f"no tool call (content {content[:80]!r})")
    if len(calls) > 1:
        raise BoundaryAnswerError("several_calls", f"{len(calls)} tool calls, expected 1")
    name, arguments = calls[0].function.name, calls[0].function.arguments or ""
    if name != SITUATION_FUNCTION:
        raise BoundaryAnswerError("wrong_function", f"called {name!r}, expected {SITUATION_FUNCTION}")
    try:
        return decode_call('{"name":"report_situation","arguments":' + arguments + "}")
    except SituationError as exc:
        kind = "bad_json" if exc.field == "<json>" else "bad_situation"
        raise BoundaryAnswerError(kind, f"{exc.field}: {exc.reason}") from None


class ModelBoundary:
    """A function-calling model writes the situation; the deterministic encoder stands in when it fails."""

    def __init__(self, config: BoundaryConfig, base_url: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.server: EmbeddedCortex | None = None
        url = base_url or config.base_url
        if url is None:
            self.server = EmbeddedCortex().start()
            url = self.server.base_url
        self.base_url = url
        self.encoder = DeterministicEncoder()
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_s, clock)
        self.counts: Counter[str] = Counter()
        """Counters: requests, model (the model's situation used), fallback, fallback_<kind>."""
        self._client = openai.OpenAI(base_url=url, api_key=config.api_key, timeout=config.timeout_s,
                                     max_retries=0)
        self._warned: set[str] = set()
        self._lock = threading.Lock()  # counts, breaker and warnings are shared by situate_many's threads
        self._pool: ThreadPoolExecutor | None = None

    def situate(self, numbers: NpcNumbers) -> Situated:
        """The model's situation of one NPC, or the encoder's with the fallback named (never raises)."""
        started = time.perf_counter()
        with self._lock:
            self.counts["requests"] += 1
        try:
            situation = self._ask(numbers)
        except BoundaryAnswerError as exc:
            situation = self.encoder.encode(numbers)
            with self._lock:
                self.counts["fallback"] += 1
                self.counts[f"fallback_{exc.kind}"] += 1
                first = exc.kind not in self._warned
                self._warned.add(exc.kind)
            if first:
                log.warning("boundary: %s from %s (%s); the deterministic encoder stands in "
                            "(logged once per kind)", exc.kind, self.base_url, exc.detail)
            return Situated(situation, exc.kind, exc.detail, time.perf_counter() - started)
        with self._lock:
            self.counts["model"] += 1
        return Situated(situation, latency_s=time.perf_counter() - started)

    def situate_many(self, batch: list[NpcNumbers]) -> list[Situated]:
        """The situations of several NPCs, in order, at most ``concurrency`` requests in flight at once."""
        if len(batch) <= 1:
            return [self.situate(numbers) for numbers in batch]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="boundary")
        return list(self._pool.map(self.situate, batch))

    def encode(self, numbers: NpcNumbers) -> Situation:
        """The situation of one NPC (``situate`` without its provenance)."""
        return self.situate(numbers).situation

    def _ask(self, numbers: NpcNumbers) -> Situation:
        with self._lock:
            allowed = self.breaker.allow()
        if not allowed:
            raise BoundaryAnswerError("breaker_open", f"{self.config.breaker_failures} failures in a row")
        try:
            response = self._client.chat.completions.create(**boundary_request(self.config, numbers))
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            self._outcome(healthy=False)
            raise BoundaryAnswerError("unreachable", f"{type(exc).__name__}: {exc}") from None
        except openai.APIStatusError as exc:
            self._outcome(healthy=False)
            raise BoundaryAnswerError("refused", f"HTTP {exc.status_code}: {exc.message}") from None
        except (openai.APIResponseValidationError, ValueError) as exc:  # answered, but not a completion
            self._outcome(healthy=True)
            raise BoundaryAnswerError("bad_json", f"not a chat completion: {exc}") from None
        self._outcome(healthy=True)
        return parse_situation_answer(response)

    def _outcome(self, healthy: bool) -> None:
        """Tell the breaker whether the server answered."""
        with self._lock:
            if healthy:
                self.breaker.record_success()
            else:
                self.breaker.record_failure()

    def close(self) -> None:
        """Close the HTTP client and stop the embedded server this boundary started; safe to call twice."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._client.close()
        if self.server is not None:
            self.server.stop()
            self.server = None


def make_boundary(config: BoundaryConfig, cortex_url: str | None = None) -> Boundary:
    """The boundary ``cortex.boundary.backend`` names; a model boundary without its own base_url asks
    the cortex's server (cortex_url), else an embedded server it starts."""
    if config.backend == "encoder":
        return DeterministicEncoder()
    return ModelBoundary(config, base_url=config.base_url or cortex_url)
