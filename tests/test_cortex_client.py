"""The cortex client over real HTTP: answer validation, priority queue, deadlines, retries, breaker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from nervous.messages import Allocation, CollapseEvent, Region
from organs.config import CortexConfig
from organs.cortex.breaker import BreakerState, CircuitBreaker
from organs.cortex.client import CortexClient
from organs.cortex.tools import AnswerLock, Wait
from organs.escalation import Escalation, Outcome, should_escalate
from tests import cortex_fixtures
from tests.cortex_fixtures import ScriptedServer, completion, situation_on
from tests.live import until

cortex = pytest.fixture(scope="module")(cortex_fixtures.embedded_cortex)
WAIT_ANSWER = completion([("wait", '{"ticks": 1}')])


class ManualClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def escalation(npc: int = 0, priority: int = 5, deadline: float = 1e12, lock: bool = False) -> Escalation:
    rows = ["#####", "#.@L#", "#####"]
    situation = situation_on(rows, npc=npc, facing=2, lock=(7, 8, 2, 0) if lock else None)
    return Escalation(
        npc=npc, region=Region.MATH, tick=7, situation=situation, priority=priority, deadline=deadline
    )


def npc_of(body: dict[str, Any]) -> int:
    return json.loads(body["messages"][-1]["content"])["arguments"]["npc"]


def config(**fields: Any) -> CortexConfig:
    return CortexConfig(**({"timeout_s": 20.0, "retries": 0, "backoff_s": 0.001} | fields))


async def test_real_server_answers_a_lock_with_one_valid_call(cortex) -> None:
    async with CortexClient(config(), base_url=cortex.base_url) as client:
        result = await asyncio.wait_for(client.escalate(escalation(lock=True)), 30)
    assert result.outcome is Outcome.PLANNED, result.detail
    assert result.call == AnswerLock(x=3, y=1, value=56) and result.attempts == 1


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (completion(None, content="go north, I think"), "no_call"),
        (completion([("wait", '{"ticks": 1}'), ("wait", '{"ticks": 2}')]), "several_calls"),
        (completion([("teleport", "{}")]), "unknown_function"),
        (completion([("go_to", '{"x": 1,')]), "bad_json"),
        (completion([("go_to", '{"x": 1, "y": 999, "purpose": "food"}')]), "bad_arguments"),
        (completion([("go_to", '{"x": 1, "y": 1, "purpose": "dance"}')]), "bad_arguments"),
        (completion([("wait", '{"ticks": 1, "mood": "calm"}')]), "bad_arguments"),
        (completion(None) | {"choices": []}, "no_call"),
        ("<html>oops</html>", "bad_json"),
    ],
    ids=[
        "text",
        "several",
        "unknown",
        "truncated-json",
        "out-of-range",
        "bad-enum",
        "extra-arg",
        "no-choices",
        "not-json",
    ],
)
async def test_every_malformed_answer_is_rejected_and_counted(answer: Any, kind: str) -> None:
    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        if isinstance(answer, str):
            return web.Response(text=answer, content_type="application/json")
        return web.json_response(answer)

    async with ScriptedServer(handler) as server, CortexClient(config(), base_url=server.base_url) as client:
        result = await asyncio.wait_for(client.escalate(escalation()), 30)
    assert result.outcome is Outcome.INVALID_ANSWER and result.call is None
    assert result.detail.startswith(kind), result.detail
    assert client.counts[f"invalid_{kind}"] == 1 and client.counts["invalid_answers"] == 1
    assert client.breaker_state is BreakerState.CLOSED  # the server is healthy; its answer was not


async def held_server_client(client_config: CortexConfig, clock: Any = None):
    """A scripted server that holds npc 0's request until released, and a client of it."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        if npc_of(body) == 0:
            holding.set()
            await release.wait()
        return web.json_response(WAIT_ANSWER)

    server = await ScriptedServer(handler).__aenter__()
    kwargs = {"clock": clock} if clock is not None else {}
    client = await CortexClient(client_config, base_url=server.base_url, **kwargs).start()
    return server, client, holding, release


async def test_priority_queue_serves_highest_first_fifo_within_a_priority() -> None:
    server, client, holding, release = await held_server_client(config(concurrency=1))
    try:
        first = asyncio.create_task(client.escalate(escalation(npc=0)))
        await asyncio.wait_for(holding.wait(), 30)
        priorities = {1: 2, 2: 9, 3: 5, 4: 0, 5: 7, 6: 9}
        tasks = {
            npc: asyncio.create_task(client.escalate(escalation(npc=npc, priority=p)))
            for npc, p in priorities.items()
        }
        await until(lambda: client.pending == len(priorities))
        release.set()
        results = {npc: await asyncio.wait_for(task, 30) for npc, task in tasks.items()}
        await asyncio.wait_for(first, 30)
    finally:
        await client.close()
        await server.__aexit__()
    served = sorted(results, key=lambda npc: results[npc].order)
    assert served == [2, 6, 5, 3, 1, 4]
    assert all(r.outcome is Outcome.PLANNED and r.call == Wait(ticks=1) for r in results.values())


async def test_stale_requests_are_dropped_and_counted() -> None:
    clock = ManualClock()
    server, client, holding, release = await held_server_client(config(concurrency=1), clock)
    try:
        first = asyncio.create_task(client.escalate(escalation(npc=0)))
        await asyncio.wait_for(holding.wait(), 30)
        stale = asyncio.create_task(client.escalate(escalation(npc=1, priority=10, deadline=clock.now + 1)))
        fresh = asyncio.create_task(client.escalate(escalation(npc=2, priority=0, deadline=clock.now + 100)))
        await until(lambda: client.pending == 2)
        clock.now += 5  # the first request took too long for npc 1's deadline
        release.set()
        stale_result, fresh_result = await asyncio.wait_for(asyncio.gather(stale, fresh), 30)
        await asyncio.wait_for(first, 30)
    finally:
        await client.close()
        await server.__aexit__()
    assert stale_result.outcome is Outcome.STALE and stale_result.attempts == 0
    assert fresh_result.outcome is Outcome.PLANNED
    assert client.counts["stale"] == 1 and [b for b in server.requests if npc_of(b) == 1] == []


async def test_full_queue_rejects_at_once() -> None:
    server, client, holding, release = await held_server_client(config(concurrency=1, queue_size=1))
    try:
        first = asyncio.create_task(client.escalate(escalation(npc=0)))
        await asyncio.wait_for(holding.wait(), 30)
        queued = asyncio.create_task(client.escalate(escalation(npc=1)))
        await until(lambda: client.pending == 1)
        rejected = await asyncio.wait_for(client.escalate(escalation(npc=2)), 30)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, queued), 30)
    finally:
        await client.close()
        await server.__aexit__()
    assert rejected.outcome is Outcome.QUEUE_FULL and client.counts["queue_full"] == 1


async def test_priority_scheduling_sends_vllm_priority_inverted() -> None:
    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(WAIT_ANSWER)

    async with ScriptedServer(handler) as server:
        async with CortexClient(config(priority_scheduling=True), base_url=server.base_url) as client:
            await asyncio.wait_for(client.escalate(escalation(priority=8)), 30)
        async with CortexClient(config(), base_url=server.base_url) as client:
            await asyncio.wait_for(client.escalate(escalation(priority=8)), 30)
    with_priority, without = server.requests
    assert with_priority["priority"] == 2 and "priority" not in without
    assert with_priority["model"] == "nyx" and with_priority["tool_choice"] == "auto"
    assert {t["function"]["name"] for t in with_priority["tools"]} >= {"answer_lock", "go_to", "wait"}


async def test_retries_with_backoff_recover_from_server_errors() -> None:
    failures = {"left": 2}

    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        if failures["left"]:
            failures["left"] -= 1
            return web.json_response({"error": {"message": "busy", "type": "server_error"}}, status=503)
        return web.json_response(WAIT_ANSWER)

    async with ScriptedServer(handler) as server:
        async with CortexClient(config(retries=2), base_url=server.base_url) as client:
            result = await asyncio.wait_for(client.escalate(escalation()), 30)
    assert result.outcome is Outcome.PLANNED and result.attempts == 3 and client.counts["retries"] == 2


async def test_timeouts_fail_cleanly() -> None:
    never = asyncio.Event()

    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        await never.wait()
        return web.json_response(WAIT_ANSWER)

    async with ScriptedServer(handler) as server:
        async with CortexClient(config(timeout_s=0.3), base_url=server.base_url) as client:
            result = await asyncio.wait_for(client.escalate(escalation()), 30)
        never.set()
    assert result.outcome is Outcome.FAILED and "Timeout" in result.detail


async def test_breaker_opens_then_a_half_open_probe_closes_it() -> None:
    clock = ManualClock()
    healthy = {"yes": False}

    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        if healthy["yes"]:
            return web.json_response(WAIT_ANSWER)
        return web.json_response({"error": {"message": "down", "type": "server_error"}}, status=500)

    cfg = config(breaker_failures=2, breaker_reset_s=10.0)
    async with ScriptedServer(handler) as server, CortexClient(cfg, server.base_url, clock=clock) as client:
        outcomes = [(await asyncio.wait_for(client.escalate(escalation()), 30)).outcome for _ in range(3)]
        assert outcomes == [Outcome.FAILED, Outcome.FAILED, Outcome.BREAKER_OPEN]
        assert len(server.requests) == 2 and client.breaker_state is BreakerState.OPEN
        clock.now += 11
        assert client.breaker_state is BreakerState.HALF_OPEN
        healthy["yes"] = True
        probe = await asyncio.wait_for(client.escalate(escalation()), 30)
        assert probe.outcome is Outcome.PLANNED and client.breaker_state is BreakerState.CLOSED


def test_breaker_states_with_an_injected_clock() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failures=3, reset_s=5.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # consecutive failures only
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now += 4.9
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened == 2
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()


def test_bad_client_settings_are_named() -> None:
    with pytest.raises(ValueError, match="cortex.base_url"):
        CortexClient(CortexConfig())
    with pytest.raises(ValueError, match="cortex.tool_choice='fly'"):
        CortexClient(CortexConfig(tool_choice="fly"), base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="escalation.priority=11"):
        escalation(priority=11)


def test_only_an_open_gate_of_the_collapsed_region_escalates() -> None:
    event = CollapseEvent(npc=3, region=Region.MATH, confidence=0.9, cells=["math"], tick=5)

    def allocation(npc: int, gates: dict[Region, bool]) -> Allocation:
        return Allocation(npc=npc, tick=5, tick_rate=10, cpu_quota=50.0, gates=gates, llm_priority=4)

    assert should_escalate(allocation(3, {Region.MATH: True}), event)
    assert not should_escalate(allocation(3, {Region.MATH: False, Region.FOOD: True}), event)
    assert not should_escalate(allocation(3, {}), event)
    assert not should_escalate(allocation(4, {Region.MATH: True}), event)
    assert not should_escalate(None, event)
