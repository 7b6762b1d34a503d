"""Cortex benchmark: ``python -m benchmarks.cortex`` prints one JSON object.

Keys: cores; cortex_http_p50_ms / _p99_ms and cortex_requests_per_s (the embedded server as its own
process, 16 concurrent keep-alive HTTP clients, each request one stage-4 situation with the full
32x32 map and every tool declared; target p99 <= 20 ms); cortex_client_p99_ms (the same through the
project's CortexClient and the openai package, queue and validation included); boundary_encode_us
(an NPC's numbers -> situation -> JSON bytes of its report_situation call); invalid_answers_sent /
invalid_answers_handled (a server answering with every malformed class in turn: each must come back
as a counted INVALID_ANSWER result, none may raise). The HTTP figures are those of the best of a few
rounds (by p99), since other work shares the cores.

Stage 4 (locks), the scripted heuristic driving every NPC under the heuristic governor (gates open on
math collapses), STAGE4_EPISODES episodes at seed STAGE4_SEED (``governor.compare.evaluate_governor``):
stage4_success_no_cortex / stage4_return_no_cortex without the cortex link;
stage4_success_cortex_gated / stage4_return_cortex_gated with it (the nyx engine in-process, as in
training; gates by the heuristic governor's rule; the cortex's default ``vision_gate=governed``: an NPC
whose vision organ gate the governor opened looks through it first, ``governor.organ_gates``, each look
charged), stage4_success_cortex_gated_no_vision / stage4_return_cortex_gated_no_vision the same with
``vision_gate=closed`` (with stage4_escalations_per_100_ticks_no_vision), stage4_vision_calls (looks of the
gated run), with escalations_per_100_ticks (per 100 NPC ticks),
stage4_plans_done / _invalid (_invalid_at_start: of those, invalid at their first step),
stage4_plan_tick_fraction (NPC ticks a plan acted for: no brain call then),
stage4_brain_calls_per_npc_s_no_cortex / _cortex_gated and stage4_cpu_s_per_npc_min_cortex_gated (the
governor's simulated meter), stage4_outcome_reward (mean reward over the 40 ticks after an escalation) and
stage4_engine_latency_p50_ms / _p99_ms; stage4_success_cortex_http and stage4_http_latency_p50_ms /
_p99_ms through the real client and an embedded server (the same answers, so the same success);
stage4_success_cortex_open / stage4_return_cortex_open with every gate always open (OPEN_GATES). An
escalation still needs a collapse, and only the math region has the two cells a collapse needs, so an
always-open gate escalates exactly where the heuristic's math gate does: the two runs agree.

The live escalation path, blocking against non-blocking, side by side: a stage-4 world server
(``agents.world_server``, LIVE_NPCS NPCs, the real 20 Hz clock, every gate open, nerves on, no NPC
processes: brains silent) on an embedded nats-server escalates for LIVE_S seconds to an embedded cortex
that holds each answer LIVE_DELAY_MS ms (``--delay-ms``, a real vLLM's latency), once through a blocking
link (the tick waits for its answers) and once through the live world server's non-blocking one
(``CortexLink(blocking=False)``): live_tick_p50_ms_* / live_tick_p99_ms_* / live_tick_max_ms_* (time
between two world ticks' ends; 50 ms is on time), live_ticks_per_s_*, live_overruns_* (ticks the clock
gave up on), live_escalations_*, live_plan_ticks_*, live_stale_answers_* and live_cortex_latency_p99_ms_*.

``--episodes`` sets the stage-4 episodes (default STAGE4_EPISODES); ``--live-only`` measures only the
live keys (and cores). load_average: the machine's 1, 5 and 15 minute load when the run ended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from itertools import cycle
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from agents.world_server import WorldServer, WorldServerConfig
from governor.compare import evaluate_governor
from governor.config import GovernorConfig
from governor.drivers import ScriptedDriver
from nervous.bus import Bus, BusConfig
from nervous.cells import CellBank
from nervous.config import NervousConfig
from nervous.messages import CollapseEvent, Region
from nervous.server import free_port
from organs.boundary import DeterministicEncoder, NpcNumbers, Situation, encode_call
from organs.boundary.world_numbers import SeenMaps, npc_numbers
from organs.config import CortexConfig
from organs.cortex.client import SYSTEM_PROMPT, CortexClient
from organs.cortex.embedded import EmbeddedCortex
from organs.cortex.tools import TOOL_DECLARATIONS
from organs.escalation import Escalation, Outcome
from organs.link import CortexLink
from world.core import GridWorld
from world.stages import stage_config

CONCURRENCY = 16
HTTP_REQUESTS = 2000
ROUNDS = 3
CLIENT_REQUESTS = 1000
ENCODES = 2000
INVALID_ROUNDS = 20
STAGE4_EPISODES = 300
STAGE4_SEED = 0
LIVE_NPCS = 16
LIVE_S = 15.0
LIVE_DELAY_MS = 200.0


def stage4_numbers() -> NpcNumbers:
    """NPC 0 of a stage-4 world that has seen the whole 32x32 map (the largest stage-4 situation)."""
    world = GridWorld(stage_config(4), num_envs=1, seed=0)
    seen = SeenMaps(world)
    seen.maps[:] = world.tiles[:, None, world.r : world.r + world.H, world.r : world.r + world.W]
    event = CollapseEvent(npc=0, region=Region.MATH, confidence=0.8, cells=["math"], tick=0)
    return npc_numbers(world, 0, seen, event)


def percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(samples) * 1000, q)), 3)


def request_body(situation: Situation) -> bytes:
    """One chat-completions request body asking nyx about a situation."""
    return json.dumps(
        {
            "model": "nyx",
            "tools": TOOL_DECLARATIONS,
            "tool_choice": "auto",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": encode_call(situation).decode()},
            ],
        }
    ).encode()


async def http_latency(base_url: str, situation: Situation) -> dict[str, float]:
    """p50/p99 and throughput of raw HTTP chat completions, CONCURRENCY clients in flight."""
    body = request_body(situation)
    url, headers = base_url + "/chat/completions", {"Content-Type": "application/json"}
    latencies: list[float] = []
    remaining = HTTP_REQUESTS

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                payload = await resp.read()
                assert resp.status == 200, payload[:200]
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))  # warm-up round
        latencies.clear()
        remaining = HTTP_REQUESTS
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
    return {
        "cortex_http_p50_ms": percentile_ms(latencies, 50),
        "cortex_http_p99_ms": percentile_ms(latencies, 99),
        "cortex_requests_per_s": round(len(latencies) / elapsed, 1),
    }


async def client_latency(base_url: str, situation: Situation) -> float:
    """p99 of CortexClient.escalate against the embedded server, CONCURRENCY callers."""
    async with CortexClient(
        CortexConfig(concurrency=CONCURRENCY, timeout_s=10.0), base_url=base_url
    ) as client:

        async def caller(n: int) -> list[float]:
            out = []
            for _ in range(n):
                esc = Escalation(
                    npc=situation.npc,
                    region=Region.MATH,
                    tick=0,
                    situation=situation,
                    priority=5,
                    deadline=time.monotonic() + 60,
                )
                result = await client.escalate(esc)
                assert result.outcome is Outcome.PLANNED, result.detail
                out.append(result.latency_s)
            return out

        per = CLIENT_REQUESTS // CONCURRENCY
        samples = [
            s for chunk in await asyncio.gather(*(caller(per) for _ in range(CONCURRENCY))) for s in chunk
        ]
    return percentile_ms(samples, 99)


def boundary_encode_us(numbers: NpcNumbers) -> float:
    """Mean microseconds of numbers -> situation -> report_situation JSON bytes."""
    encoder = DeterministicEncoder()
    encode_call(encoder.encode(numbers))
    start = time.perf_counter()
    for _ in range(ENCODES):
        encode_call(encoder.encode(numbers))
    return round((time.perf_counter() - start) / ENCODES * 1e6, 1)


def malformed_answers() -> list[Any]:
    """One answer body per class of invalid answer."""

    def answer(calls: list[tuple[str, str]] | None, content: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [
                {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
                for i, (n, a) in enumerate(calls)
            ]
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "nyx",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }

    return [
        answer(None, "go north"),
        answer([("wait", '{"ticks": 1}')] * 2),
        answer([("fly", "{}")]),
        answer([("go_to", '{"x": 1,')]),
        answer([("go_to", '{"x": 1, "y": 999, "purpose": "food"}')]),
        {**answer(None), "choices": []},
        "<html>not json</html>",
    ]


async def invalid_answers(situation: Situation) -> tuple[int, int]:
    """(sent, handled as INVALID_ANSWER) against a server cycling through the malformed classes."""
    answers = cycle(malformed_answers())

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        answer = next(answers)
        if isinstance(answer, str):
            return web.Response(text=answer, content_type="application/json")
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner, port = web.AppRunner(app, access_log=None), free_port()
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sent = len(malformed_answers()) * INVALID_ROUNDS
    try:
        async with CortexClient(
            CortexConfig(concurrency=1), base_url=f"http://127.0.0.1:{port}/v1"
        ) as client:
            results = [
                await client.escalate(
                    Escalation(
                        npc=situation.npc,
                        region=Region.MATH,
                        tick=0,
                        situation=situation,
                        priority=5,
                        deadline=time.monotonic() + 60,
                    )
                )
                for _ in range(sent)
            ]
    finally:
        await runner.cleanup()
    return sent, sum(r.outcome is Outcome.INVALID_ANSWER for r in results)


#: The gate always open: every region, from any collapse confidence (the heuristic governor's rates).
OPEN_GATES = {"gate_threshold": 0.0, "help_regions": [region.value for region in Region]}


def stage4_link(backend: str, vision_gate: str = "governed") -> CortexLink:
    """The cortex link of a stage-4 run (looks charged the run's per_organ_call, as in training)."""
    config = CortexConfig(backend=backend, vision_gate=vision_gate)
    return CortexLink(config, lifeforce=NervousConfig().lifeforce)


def stage4_run(link: CortexLink | None, episodes: int = STAGE4_EPISODES, **governor: Any) -> dict[str, float]:
    """Stage-4 episode means of the heuristic driver under the heuristic governor, with the link or not."""
    nervous = NervousConfig()
    driver = ScriptedDriver(CellBank(nervous.cell), seed=STAGE4_SEED)
    try:
        return evaluate_governor(stage_config(4), driver, GovernorConfig(kind="heuristic", **governor),
                                 nervous, episodes=episodes, seed=STAGE4_SEED, escalator=link)
    finally:
        if link is not None:
            link.close()


def stage4_figures(episodes: int = STAGE4_EPISODES) -> dict[str, float | int]:
    """Stage-4 success and return without and with the cortex (engine with and without vision, then
    HTTP), and what it cost."""
    import torch

    torch.set_num_threads(1)  # the vision organ loads in-process: one thread, as benchmarks.organs runs it
    without = stage4_run(None, episodes)
    engine = stage4_run(stage4_link("engine"), episodes)
    blind = stage4_run(stage4_link("engine", vision_gate="closed"), episodes)
    always_open = stage4_run(stage4_link("engine"), episodes, **OPEN_GATES)
    http = stage4_run(stage4_link("http"), episodes)
    return {
        "stage4_episodes": int(without["episodes"]),
        "stage4_seed": STAGE4_SEED,
        "stage4_success_no_cortex": round(without["success"], 4),
        "stage4_return_no_cortex": round(without["return"], 4),
        "stage4_success_cortex_gated": round(engine["success"], 4),
        "stage4_return_cortex_gated": round(engine["return"], 4),
        "stage4_success_cortex_gated_no_vision": round(blind["success"], 4),
        "stage4_return_cortex_gated_no_vision": round(blind["return"], 4),
        "stage4_escalations_per_100_ticks_no_vision": round(blind["escalations_per_100_ticks"], 4),
        "stage4_vision_calls": int(engine["cortex/vision_calls"]),
        "stage4_success_cortex_open": round(always_open["success"], 4),
        "stage4_return_cortex_open": round(always_open["return"], 4),
        "stage4_escalations_per_100_ticks_open": round(always_open["escalations_per_100_ticks"], 4),
        "escalations_per_100_ticks": round(engine["escalations_per_100_ticks"], 4),
        "stage4_plans_done": int(engine["cortex/plans_done"]),
        "stage4_plans_invalid": int(engine["cortex/plans_invalid"]),
        "stage4_plans_invalid_at_start": int(engine["cortex/plans_invalid_at_start"]),
        "stage4_plan_tick_fraction": round(engine["plan_tick_fraction"], 4),
        "stage4_brain_calls_per_npc_s_no_cortex": round(without["brain_calls_per_npc_s"], 4),
        "stage4_brain_calls_per_npc_s_cortex_gated": round(engine["brain_calls_per_npc_s"], 4),
        "stage4_cpu_s_per_npc_min_cortex_gated": round(engine["cpu_s_per_npc_min"], 4),
        "stage4_outcome_reward": round(engine["cortex/outcome_reward"], 4),
        "stage4_engine_latency_p50_ms": round(engine["cortex/latency_p50_ms"], 3),
        "stage4_engine_latency_p99_ms": round(engine["cortex/latency_p99_ms"], 3),
        "stage4_success_cortex_http": round(http["success"], 4),
        "stage4_http_latency_p50_ms": round(http["cortex/latency_p50_ms"], 3),
        "stage4_http_latency_p99_ms": round(http["cortex/latency_p99_ms"], 3),
    }


async def live_run(bus: Bus, base_url: str, blocking: bool) -> dict[str, float]:
    """LIVE_S seconds of the live world server escalating through a blocking or non-blocking link."""
    name = "blocking" if blocking else "nonblocking"
    # no organ host runs here: the link escalates without looking (vision is benchmarks.organs' business)
    config = CortexConfig(backend="http", base_url=base_url, vision_gate="closed")
    link = CortexLink(config, blocking=blocking)
    live = WorldServerConfig(stage=4, n_npcs=LIVE_NPCS, seed=STAGE4_SEED, clock="realtime",
                             run=f"bench-live-{name}")
    ends: list[float] = []
    server = WorldServer(live, bus, on_frame=lambda world, **_: ends.append(time.monotonic()),
                         escalator=link)
    await server.start()
    server.gates[:] = True  # no governor here: every region of every NPC may escalate
    try:
        ends.append(time.monotonic())
        await server.run(asyncio.Event(), ticks=int(LIVE_S * live.hz))
        stats = link.pop_stats()
    finally:
        link.close()
        await server.stop()
    gaps_ms = np.diff(ends) * 1000.0
    return {
        f"live_tick_p50_ms_{name}": round(float(np.percentile(gaps_ms, 50)), 2),
        f"live_tick_p99_ms_{name}": round(float(np.percentile(gaps_ms, 99)), 2),
        f"live_tick_max_ms_{name}": round(float(gaps_ms.max()), 2),
        f"live_ticks_per_s_{name}": round(len(gaps_ms) / (ends[-1] - ends[0]), 2),
        f"live_overruns_{name}": server.overruns,
        f"live_escalations_{name}": int(server.escalations.sum()),
        f"live_plan_ticks_{name}": int(server.plan_ticks.sum()),
        f"live_stale_answers_{name}": int(stats["cortex/stale_answers"] + stats["cortex/outcome_stale"]),
        f"live_cortex_latency_p99_ms_{name}": round(stats.get("cortex/latency_p99_ms", 0.0), 1),
    }


async def live_figures() -> dict[str, float | int]:
    """The live world tick while escalating to a LIVE_DELAY_MS cortex: blocking, then non-blocking."""
    out: dict[str, float | int] = {"live_npcs": LIVE_NPCS, "live_s": LIVE_S,
                                   "live_cortex_delay_ms": LIVE_DELAY_MS}
    with EmbeddedCortex(delay_ms=LIVE_DELAY_MS) as server:
        async with Bus(BusConfig(name="bench-cortex-live")) as bus:
            for blocking in (True, False):
                out |= await live_run(bus, server.base_url, blocking)
    return out


async def main(episodes: int = STAGE4_EPISODES, live_only: bool = False) -> dict[str, float | int]:
    numbers = stage4_numbers()
    situation = DeterministicEncoder().encode(numbers)
    out: dict[str, float | int] = {"cores": os.cpu_count() or 1}
    out |= await live_figures()
    if live_only:
        return out
    with EmbeddedCortex() as server:
        rounds = [await http_latency(server.base_url, situation) for _ in range(ROUNDS)]
        out |= min(rounds, key=lambda r: r["cortex_http_p99_ms"])
        out["cortex_client_p99_ms"] = await client_latency(server.base_url, situation)
    out["boundary_encode_us"] = boundary_encode_us(numbers)
    out["invalid_answers_sent"], out["invalid_answers_handled"] = await invalid_answers(situation)
    out |= stage4_figures(episodes)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cortex", description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=STAGE4_EPISODES, help="stage-4 episodes per run")
    parser.add_argument("--live-only", action="store_true", help="only the live escalation keys")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error(f"--episodes={args.episodes}: must be >= 1")
    print(json.dumps(asyncio.run(main(args.episodes, args.live_only))))
