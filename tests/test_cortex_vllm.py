"""The cortex client against a real vLLM (CPU build, tiny random model): tool calls, JSON schemas, priority.

Marked ``vllm``: left out of the default run, run by ``python -m pytest -m vllm`` after
``python -m deploy.vllm setup`` (``.ci/run`` does both). The model's weights are random, so what it
says is meaningless; guided decoding is what makes its answers valid, which is the path under test.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import jsonschema
import openai
import pytest

from nervous.messages import Region
from organs.boundary.schema import situation_json_schema
from organs.config import CortexConfig
from organs.cortex.client import CortexClient
from organs.cortex.tools import TOOL_DECLARATIONS, TOOLS, encode_arguments, tool_name
from organs.escalation import Escalation, Outcome
from tests.cortex_fixtures import situation_on
from tests.live import until
from tests.vllm_fixtures import VllmServer

pytestmark = pytest.mark.vllm

PARAMETERS = {d["function"]["name"]: d["function"]["parameters"] for d in TOOL_DECLARATIONS}


def escalation(npc: int = 0, priority: int = 5) -> Escalation:
    """An NPC next to a lock (7 * 8), as the boundary encodes it."""
    situation = situation_on(["#####", "#.@L#", "#k.D#", "#####"], npc=npc, facing=2, lock=(7, 8, 2, 0))
    return Escalation(
        npc=npc, region=Region.MATH, tick=7, situation=situation, priority=priority, deadline=1e12
    )


def config(**fields: Any) -> CortexConfig:
    """Generous timeouts (a 2-core CPU serves these), no retries: a failure shows as it is."""
    return CortexConfig(**({"timeout_s": 120.0, "retries": 0, "deadline_s": 600.0} | fields))


def raw_client(server: VllmServer) -> openai.AsyncOpenAI:
    """A plain OpenAI client of the server, for requests the cortex client does not make."""
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="nimmerverse", timeout=120.0, max_retries=0)


async def test_named_tool_choice_gets_a_schema_valid_call_for_every_tool(vllm_server: VllmServer) -> None:
    for name, kind in TOOLS.items():
        cfg = config(tool_choice=name, priority_scheduling=True)
        async with CortexClient(cfg, base_url=vllm_server.base_url) as client:
            result = await asyncio.wait_for(client.escalate(escalation(priority=7)), 180)
        assert result.outcome is Outcome.PLANNED, f"{name}: {result.outcome} {result.detail}"
        assert isinstance(result.call, kind) and tool_name(result.call) == name
        jsonschema.validate(json.loads(encode_arguments(result.call)), PARAMETERS[name])
        assert client.counts["planned"] == 1 and client.counts["invalid_answers"] == 0


async def test_the_raw_forced_call_is_one_schema_valid_tool_call(vllm_server: VllmServer) -> None:
    async with raw_client(vllm_server) as client:
        models = [m.id async for m in client.models.list()]
        response = await client.chat.completions.create(
            model="nyx",
            messages=[{"role": "user", "content": "The lock at (3, 1) shows 7 * 8."}],
            tools=TOOL_DECLARATIONS,
            tool_choice={"type": "function", "function": {"name": "answer_lock"}},
            max_tokens=256,
            temperature=0.0,
            extra_body={"priority": 3},
        )
    assert models == ["nyx"]
    calls = response.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["answer_lock"]
    jsonschema.validate(json.loads(calls[0].function.arguments), PARAMETERS["answer_lock"])


async def test_response_format_with_the_situation_schema_returns_a_valid_situation(
    vllm_server: VllmServer,
) -> None:
    schema = situation_json_schema()
    async with raw_client(vllm_server) as client:
        response = await client.chat.completions.create(
            model="nyx",
            messages=[{"role": "user", "content": "Report the NPC's situation."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "report_situation", "schema": schema},
            },
            max_tokens=4000,
            temperature=0.0,
        )
    choice = response.choices[0]
    assert choice.finish_reason == "stop", f"{choice.finish_reason}: {choice.message.content!r:.200}"
    # the JSON Schema's bounds hold; its cross-field checks (rows == height) are not JSON Schema
    jsonschema.validate(json.loads(choice.message.content), schema)


async def test_structured_outputs_json_returns_valid_json(vllm_server: VllmServer) -> None:
    schema = PARAMETERS["fetch_key_then_open"]
    async with raw_client(vllm_server) as client:
        response = await client.chat.completions.create(
            model="nyx",
            messages=[{"role": "user", "content": "Where are the key and the door?"}],
            max_tokens=256,
            temperature=0.0,
            extra_body={"structured_outputs": {"json": schema}},
        )
    choice = response.choices[0]
    assert choice.finish_reason == "stop", f"{choice.finish_reason}: {choice.message.content!r:.200}"
    jsonschema.validate(json.loads(choice.message.content), schema)


def _requests_added(server: VllmServer) -> int:
    """Requests the API server has handed to the engine core (its --enable-log-requests lines)."""
    return server.log.read_text(errors="replace").count("Added request ")


async def _post(server: VllmServer, path: str) -> None:
    """POST to one of vLLM's dev-mode routes (/pause, /resume)."""
    request = urllib.request.Request(f"{server.root}{path}", method="POST")
    with await asyncio.to_thread(urllib.request.urlopen, request, timeout=60) as response:
        assert response.status == 200, f"{path}: HTTP {response.status}"


@pytest.mark.parametrize("priority_scheduling", [True, False], ids=["priority-field", "no-field-fcfs"])
async def test_vllm_serves_the_more_urgent_npc_first(
    vllm_server: VllmServer, priority_scheduling: bool
) -> None:
    """A calm, then an urgent escalation queue in a paused vLLM; resumed (one sequence at a time), it
    serves the urgent one first when the client sends vLLM's priority (10 - NPC priority), and in
    arrival order when it does not."""
    finished: list[int] = []
    cfg = config(tool_choice="wait", priority_scheduling=priority_scheduling, concurrency=2)
    async with CortexClient(cfg, base_url=vllm_server.base_url) as client:

        async def escalate(npc: int, priority: int) -> Outcome:
            result = await client.escalate(escalation(npc=npc, priority=priority))
            finished.append(npc)
            return result.outcome

        await _post(vllm_server, "/pause?mode=keep")  # requests added now wait until /resume
        try:
            added = _requests_added(vllm_server)
            calm = asyncio.create_task(escalate(npc=1, priority=1))
            await until(lambda: _requests_added(vllm_server) == added + 1, 60, "the calm request in vLLM")
            urgent = asyncio.create_task(escalate(npc=2, priority=9))
            await until(lambda: _requests_added(vllm_server) == added + 2, 60, "the urgent request in vLLM")
        finally:
            await _post(vllm_server, "/resume")
        outcomes = await asyncio.wait_for(asyncio.gather(calm, urgent), 180)
    assert outcomes == [Outcome.PLANNED, Outcome.PLANNED]
    assert finished == ([2, 1] if priority_scheduling else [1, 2])
