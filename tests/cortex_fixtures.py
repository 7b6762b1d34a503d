"""Cortex test helpers: hand-made maps, situations on them, the embedded server, a scripted server."""

from __future__ import annotations

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
from world.core import GridWorld
from world.stages import stage_config
from world.tiles import PROPRIO_SIZE, P, Tile


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
    battery: float = 1.0,
) -> np.ndarray:
    """A proprio vector; lock (a, b, op index, shown) sets the lock-in-reach fields."""
    p = np.zeros(PROPRIO_SIZE, dtype=np.float32)
    p[P.LIFEFORCE], p[P.BATTERY], p[P.HAS_KEY] = lifeforce, battery, float(has_key)
    p[P.FACING_N + facing] = 1.0
    if lock is not None:
        a, b, op, shown = lock
        p[P.FACING_LOCK], p[P.LOCK_A], p[P.LOCK_B] = 1.0, a / 10, b / 10
        p[P.LOCK_OP], p[P.LOCK_SHOWN] = op / 2, shown / 100
    return p


def situation_on(rows: list[str], region: Region = Region.MATH, npc: int = 0, opened: int = 0,
                 **body: Any) -> Situation:
    """The deterministic boundary's situation of an NPC standing at '@' on a hand-made map (opened: doors and
    locks it opened this episode; body: ``proprio``'s fields)."""
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
        opened=opened,
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


async def scripted(handler: Handler) -> AsyncIterator[ScriptedServer]:
    """A scripted server as an async generator (for fixtures)."""
    async with ScriptedServer(handler) as server:
        yield server


def hand_made_world(
    rows: list[str], locks: dict[tuple[int, int], tuple[int, int, int]] | None = None, facing: int = 1
) -> GridWorld:
    """A one-NPC stage-4 GridWorld laid out by hand: '@' the NPC; locks {(x, y): (a, b, op index)}."""
    seen, (x, y) = parse_map(rows)
    height, width = seen.shape
    side = max(16, height, width)  # room for the config's one vault; the rest of the grid is wall
    config = stage_config(
        4,
        height=side,
        width=side,
        n_npcs=1,
        n_vaults=1,
        lock_fraction=1.0,
        n_food=1,
        food_cap=1,
        food_regrow=0.0,
        n_fire=0,
        n_water=0,
        n_chargers=0,
        wall_segments=0,
        wall_density=0.0,
        n_keys_extra=0,
        lifeforce_decay=0.001,
        battery_drain=0.0,
        respawn_delay=-1,
        max_steps=1000,
    )
    world = GridWorld(config, num_envs=1, seed=0, autoreset=False)
    r = world.r
    world.tiles[0] = Tile.WALL
    world.tiles[0, r : r + height, r : r + width] = seen
    world.lock_a[:], world.lock_b[:], world.lock_op[:], world.lock_phase[:] = 0, 0, 0, 0
    for (lx, ly), (a, b, op) in (locks or {}).items():
        world.lock_a[0, ly + r, lx + r], world.lock_b[0, ly + r, lx + r], world.lock_op[0, ly + r, lx + r] = (
            a,
            b,
            op,
        )
    world.pos_y[0, 0], world.pos_x[0, 0] = y + r, x + r
    world.facing[0, 0] = facing
    world.has_key[0, 0] = False
    world.lifeforce[0, 0] = 0.8
    world.refresh()
    return world
