"""The embedded cortex server over real HTTP: the real openai client, models, health, OpenAI-shaped errors."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from organs.boundary import encode_call
from organs.cortex.embedded import EmbeddedCortex
from organs.cortex.tools import TOOL_DECLARATIONS, parse_call
from tests import cortex_fixtures
from tests.cortex_fixtures import situation_on

cortex = pytest.fixture(scope="module")(cortex_fixtures.embedded_cortex)

LOCK_ROWS = [
    "#######",
    "#..@L.#",
    "#.....#",
    "#######",
]


def post(url: str, body: bytes, path: str = "/chat/completions") -> tuple[int, dict[str, Any]]:
    """POST raw bytes; the status and the JSON body (error statuses included)."""
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def request_body(**fields: Any) -> bytes:
    situation = situation_on(LOCK_ROWS, facing=2, lock=(6, 7, 2, 40))
    body = {
        "model": "nyx",
        "messages": [{"role": "user", "content": encode_call(situation).decode()}],
        "tools": TOOL_DECLARATIONS,
    } | fields
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


async def test_real_openai_client_gets_one_tool_call(cortex) -> None:
    situation = situation_on(LOCK_ROWS, facing=2, lock=(6, 7, 2, 40))
    async with openai.AsyncOpenAI(base_url=cortex.base_url, api_key="x", max_retries=0, timeout=20) as client:
        response = await client.chat.completions.create(
            model="nyx",
            messages=[{"role": "user", "content": encode_call(situation).decode()}],
            tools=TOOL_DECLARATIONS,
            tool_choice="auto",
        )
        models = await client.models.list()
    assert [m.id for m in models.data] == ["nyx", "function-gemma"]
    calls = response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    call = parse_call(calls[0].function.name, calls[0].function.arguments)
    assert calls[0].function.name == "answer_lock" and (call.x, call.y, call.value) == (4, 1, 42)


async def test_named_tool_choice_is_obeyed(cortex) -> None:
    situation = situation_on(LOCK_ROWS, facing=2, lock=(6, 7, 2, 40))
    async with openai.AsyncOpenAI(base_url=cortex.base_url, api_key="x", max_retries=0, timeout=20) as client:
        response = await client.chat.completions.create(
            model="nyx",
            messages=[{"role": "user", "content": encode_call(situation).decode()}],
            tools=TOOL_DECLARATIONS,
            tool_choice={"type": "function", "function": {"name": "wait"}},
        )
    assert response.choices[0].message.tool_calls[0].function.name == "wait"


def test_health_answers(cortex) -> None:
    with urllib.request.urlopen(cortex.base_url.removesuffix("/v1") + "/health", timeout=20) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b'{"model": "nyx", "messages": [', 400, None),
        (b"[1, 2]", 400, None),
        (request_body(model="gpt-9"), 404, "model"),
        (request_body(messages=[]), 400, "messages"),
        (request_body(temperature=7), 400, "temperature"),
        (request_body(tools=None), 400, "tools"),
        (
            request_body(tools=[{"type": "function", "function": {"name": "launch_rocket"}}]),
            400,
            "tools[0].function.name",
        ),
        (request_body(tool_choice="none"), 400, "tool_choice"),
        (
            request_body(tool_choice={"type": "function", "function": {"name": "fly"}}),
            400,
            "tool_choice.function.name",
        ),
        (
            request_body(messages=[{"role": "user", "content": "open the door please"}]),
            400,
            "messages[0].content",
        ),
        (request_body(stream=True), 400, "stream"),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "unknown-model",
        "no-messages",
        "bad-temperature",
        "no-tools",
        "unknown-tool",
        "tool-choice-none",
        "forced-unknown-tool",
        "no-situation",
        "stream",
    ],
)
def test_bad_requests_get_openai_shaped_errors(cortex, body: bytes, status: int, param: str | None) -> None:
    got_status, payload = post(cortex.base_url, body)
    assert got_status == status
    assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}
    assert payload["error"]["param"] == param
    assert "Traceback" not in payload["error"]["message"]


def test_huge_body_is_413(cortex) -> None:
    status, payload = post(cortex.base_url, b'{"model": "nyx", "pad": "' + b"x" * (2 << 20) + b'"}')
    assert status == 413 and payload["error"]["code"] == "request_too_large"


def test_unknown_route_is_openai_shaped_404(cortex) -> None:
    status, payload = post(cortex.base_url, b"{}", path="/completions/legacy")
    assert status == 404 and payload["error"]["type"] == "NotFoundError"


async def test_bad_situation_error_names_the_field(cortex) -> None:
    situation = json.loads(encode_call(situation_on(LOCK_ROWS)))
    situation["arguments"]["body"]["lifeforce"] = 250
    status, payload = post(
        cortex.base_url, request_body(messages=[{"role": "user", "content": json.dumps(situation)}])
    )
    assert status == 400 and "body.lifeforce" in payload["error"]["message"]


def test_embedded_cortex_stops_exactly_what_it_started() -> None:
    server = EmbeddedCortex().start()
    process = server.process
    assert process is not None and process.poll() is None
    server.stop()
    assert process.poll() is not None and server.process is None
    server.stop()  # twice is fine
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/health", timeout=5)


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["serve", "--max-body-bytes", "-1"],
                                  ["serve", "--delay-ms", "-5"]])
def test_cli_refuses_bad_arguments_in_one_line(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "organs.cortex", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: --")
