"""Cortex test helpers: hand-made maps, situations on them, the embedded server, a scripted server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import numpy as np
from aiohttp import web

from nervous.messages import Region
from nervous.server import free_port
from organs.boundary import DeterministicEncoder, NpcNumbers, Situation
from organs.boundary.schema import MAP_TILES
from organs.cortex.embedded import EmbeddedCortex
from world.tiles import PROPRIO_SIZE, P


def parse_map(rows: list[str]) -> tuple[np.ndarray, tuple[int, int]]:
    """A seen map (uint8 tile codes) from rows of situation characters; '@' marks the NPC (on ground)."""
    seen = np.zeros((len(rows), len(rows[0])), dtype=np.uint8)
    npc = (-1, -1)
    for y, row in enumerate(rows):
        assert len(row) == len(rows[0]), f"row {y} differs in length"
        for x, char in enumerate(row):
            if char == "@":
                npc = (x, y)
                char = "."
            seen[y, x] = MAP_TILES[char]
    return seen, npc


def proprio(
    lifeforce: float = 0.8,
    has_key: bool = False,
    facing: int = 0,
    lock: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """A proprio vector; lock (a, b, op index, shown) sets the lock-in-reach fields."""
    p = np.zeros(PROPRIO_SIZE, dtype=np.float32)
    p[P.LIFEFORCE], p[P.BATTERY], p[P.HAS_KEY] = lifeforce, 1.0, float(has_key)
    p[P.FACING_N + facing] = 1.0
    if lock is not None:
        a, b, op, shown = lock
        p[P.FACING_LOCK], p[P.LOCK_A], p[P.LOCK_B] = 1.0, a / 10, b / 10
        p[P.LOCK_OP], p[P.LOCK_SHOWN] = op / 2, shown / 100
    return p


def situation_on(rows: list[str], region: Region = Region.MATH, npc: int = 0, **body: Any) -> Situation:
    """The deterministic boundary's situation of an NPC standing at '@' on a hand-made map."""
    seen, (x, y) = parse_map(rows)
    numbers = NpcNumbers(
        npc=npc,
        tick=7,
        x=x,
        y=y,
        proprio=proprio(**body),
        seen=seen,
        region=region,
        collapse_confidence=0.9,
        collapse_cells=[str(region)],
    )
    return DeterministicEncoder().encode(numbers)


def embedded_cortex() -> Iterator[EmbeddedCortex]:
    """A real embedded cortex server on a free loopback port, stopped at teardown."""
    server = EmbeddedCortex().start()
    try:
        yield server
    finally:
        server.stop()


Handler = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


class ScriptedServer:
    """A tiny real HTTP server on loopback answering chat completions with whatever a test scripts."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.port = handler, free_port()
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI API root of this server."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.requests.append(body)
        return await self.handler(body)

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def completion(tool_calls: list[tuple[str, str]] | None, content: str | None = None) -> dict[str, Any]:
    """An OpenAI chat-completion body whose message holds the given (name, arguments) tool calls."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(tool_calls or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "nyx",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


async def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait until condition() holds (polling the event loop), or fail after a generous timeout."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


async def scripted(handler: Handler) -> AsyncIterator[ScriptedServer]:
    """A scripted server as an async generator (for fixtures)."""
    async with ScriptedServer(handler) as server:
        yield server
