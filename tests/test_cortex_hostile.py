"""Hostile HTTP bodies at the embedded cortex server (issue 10): it answers every one with an
OpenAI-shaped error (or a valid completion), never a 500 or a traceback, and stays up and correct."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp
import pytest

from nervous.hostile import hostile_json_bodies
from organs.cortex.server import MAX_BODY_BYTES
from tests import cortex_fixtures
from tests.test_cortex_server import request_body

cortex = pytest.fixture(scope="module")(cortex_fixtures.embedded_cortex)


async def test_1000_hostile_bodies_are_each_answered_and_the_server_stays_correct(cortex) -> None:
    url = cortex.base_url + "/chat/completions"
    valid = json.loads(request_body())
    statuses: Counter[int] = Counter()
    shapes: Counter[str] = Counter()
    slots = asyncio.Semaphore(8)

    async def send(session: aiohttp.ClientSession, name: str, body: bytes) -> None:
        async with slots, session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            payload = await resp.json(content_type=None)
            statuses[resp.status] += 1
            if resp.status == 200:
                assert len(payload["choices"][0]["message"]["tool_calls"]) == 1, name
                shapes["completion"] += 1
            else:
                error = payload["error"]
                assert set(error) == {"message", "type", "param", "code"}, (name, payload)
                assert "Traceback" not in error["message"] and "\n" not in error["message"], name
                shapes["error"] += 1

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        bodies = hostile_json_bodies(valid, 1000, seed=3, max_bytes=MAX_BODY_BYTES)
        await asyncio.gather(*(send(session, name, body) for name, body in bodies))
        assert sum(statuses.values()) == 1000 and 500 not in statuses, statuses
        assert set(statuses) <= {200, 400, 404, 413}, statuses
        async with session.get(cortex.base_url.removesuffix("/v1") + "/health") as resp:
            assert resp.status == 200
        async with session.post(url, data=request_body()) as resp:  # a valid request, answered right
            answer = await resp.json()
            call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
            assert resp.status == 200 and call["name"] == "answer_lock"
    assert shapes["error"] >= 700  # most of them are refused, each with a reason
