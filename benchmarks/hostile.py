"""Hostile-input benchmark: ``python -m benchmarks.hostile [--n 10000]`` prints one JSON object.

Sends n hostile payloads (``nervous.hostile``) to each service on an embedded nats-server: every cell
service as its own process (``python -m nervous.cells.<name>``, requests from 8 workers), the world
server's action subject of npc 0 (the server on its own connection; payloads naming another NPC must
be rejected as spoofed) and an NPC process's command subject.
Per service: the FuzzReport counts, the seconds until the service had handled them all, and ``ok``:
still up, every request answered (errors naming a field), and a valid message afterwards answered
or obeyed. Publish-only services also report bad_expected / bad_counted: a burst of oversized
payloads can pass the server's max_pending (64 MiB) for a subscriber, which is then disconnected as a
slow consumer (slow_consumer_disconnects), reconnects, and never sees what the server dropped.
Keys: cores, payloads, services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.world_server import WorldServer, WorldServerConfig
from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.cells.bank import CELLS
from nervous.cells.service import CellService, CellServiceConfig
from nervous.hostile import fuzz_subject, hostile_payloads
from nervous.messages import (
    Action,
    CellRequest,
    Command,
    Heartbeat,
    MessageDecoder,
    MessageError,
    NpcState,
    Observation,
    WaveBatch,
    decode,
)
from nervous.server import EmbeddedServer
from world.tiles import NUM_ACTIONS, PROPRIO_SIZE

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


async def wait_for(condition: Any, timeout: float) -> bool:
    """Poll condition() until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def settle(count: Any, expected: int, timeout: float) -> int:
    """count() once it reaches expected, or stops changing for 2 s, or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while last != expected and time.monotonic() < deadline and time.monotonic() - since < 2.0:
        await asyncio.sleep(0.05)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def cell_request(m: int = 16) -> CellRequest:
    """A valid request for m NPCs on empty views."""
    proprio = np.full((m, PROPRIO_SIZE), 0.5, np.float32)
    return CellRequest(
        tick=1,
        npc=np.arange(m, dtype="<i4").tobytes(),
        side=7,
        views=bytes(m * 49),
        proprio=proprio.tobytes(),
    )


async def fuzz_cell(bus: Bus, url: str, cell: str, n: int) -> dict[str, Any]:
    """n hostile requests to one cell service process, then a valid one."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"nervous.cells.{cell}", "--url", url, "--heartbeat-s", "0.2"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    beats: list[Heartbeat] = []
    sub = await bus.subscribe(subjects.cell_heartbeat(cell), Heartbeat, lambda msg, raw: beats.append(msg))
    try:
        await wait_for(lambda: beats, 60)
        good = cell_request()
        report = await fuzz_subject(
            bus,
            subjects.cell_request(cell),
            hostile_payloads(good, n, seed=1),
            expects_reply=True,
            timeout=10.0,
            concurrency=8,
        )
        reference = CellService(CellServiceConfig(cell=cell), bus).handle(good)
        reply = await bus.request(subjects.cell_request(cell), good, WaveBatch, timeout=10)
        ok = (
            report.no_reply == 0 and report.unnamed_errors == 0 and proc.poll() is None and reply == reference
        )
        return {**report.summary(), "handled_s": round(report.seconds, 3), "ok": ok}
    finally:
        await sub.unsubscribe()
        proc.terminate()
        proc.wait(10)


async def fuzz_world_server(bus: Bus, url: str, n: int) -> dict[str, Any]:
    """n hostile actions on npc 0's subject to a 2-NPC world server (own connection), then a valid one.

    ok: npc 1 was never moved through npc 0's subject (spoofed ids are rejected) and npc 1's own valid
    action afterwards was applied.
    """
    async with Bus(BusConfig(url=url, name="world")) as world_bus:
        server = WorldServer(WorldServerConfig(stage=0, n_npcs=2, seed=1, clock="lockstep"), world_bus)
        await server.start()
        subject = subjects.npc_action(0)
        payloads = list(hostile_payloads(Action(npc=0, tick=0, action=3), n, seed=2))
        bad = spoofed = future = 0
        for _, data in payloads:
            try:
                action = decode(data, Action)
            except MessageError:
                bad += 1
                continue
            spoofed += action.npc != 0
            future += action.npc == 0 and action.tick > 0
        started = time.perf_counter()
        report = await fuzz_subject(bus, subject, payloads, expects_reply=False)
        expected = bad + spoofed + future
        def count() -> int:
            return world_bus.bad_messages[subject] + server.spoofed[subject] + server.bad_actions

        counted = await settle(count, expected, 120)
        handled = time.perf_counter() - started
        untouched = server.pending_tick[1] == -1
        await bus.publish(subjects.npc_action(1), Action(npc=1, tick=0, action=4))
        applied = await wait_for(lambda: server.pending_tick[1] == 0 and server.pending[1] == 4, 10)
        await server.stop()
        disconnects = world_bus.disconnects
    return {
        **report.summary(),
        "handled_s": round(handled, 3),
        "bad_expected": expected,
        "bad_counted": counted,
        "spoofed_rejected": server.spoofed[subject],
        "slow_consumer_disconnects": disconnects,
        "ok": bool(untouched and applied),
    }


async def fuzz_npc(bus: Bus, run_dir: Path, n: int) -> dict[str, Any]:
    """n hostile commands to an NPC process acting at 20 Hz, then a valid tick-rate change."""
    config = {
        "npc": 0,
        "bus_url": bus.url,
        "run_dir": str(run_dir),
        "hidden": 32,
        "state_s": 0.05,
        "heartbeat_s": 0.1,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.npc", "--config-json", json.dumps(config)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    actions: list[Action] = []
    states: list[NpcState] = []
    beats: list[Heartbeat] = []
    await bus.subscribe(subjects.npc_action(0), Action, lambda msg, raw: actions.append(msg))
    await bus.subscribe(subjects.npc_state(0), NpcState, lambda msg, raw: states.append(msg))
    await bus.subscribe(subjects.heartbeat("npc", "0"), Heartbeat, lambda msg, raw: beats.append(msg))

    async def world() -> None:
        proprio = np.full(PROPRIO_SIZE, 0.5, "<f4").tobytes()
        for tick in range(10**9):
            await bus.publish(
                subjects.npc_obs(0),
                Observation(
                    npc=0,
                    tick=tick,
                    side=7,
                    view=bytes(49),
                    proprio=proprio,
                    reward=0.0,
                    action_mask=bytes([1] * NUM_ACTIONS),
                ),
            )
            await asyncio.sleep(0.05)

    ticking = asyncio.create_task(world())
    try:
        await wait_for(lambda: actions, 60)
        payloads = list(hostile_payloads(Command(npc=0, tick=0, tick_rate=20), n, seed=4))
        bad = 0
        for _, data in payloads:
            try:
                MessageDecoder(Command)(data)
            except MessageError:
                bad += 1
        started = time.perf_counter()
        report = await fuzz_subject(bus, subjects.npc_command(0), payloads, expects_reply=False)
        counted = await settle(lambda: beats[-1].errors, bad, 120)
        handled = time.perf_counter() - started
        before = len(actions)
        await bus.publish(subjects.npc_command(0), Command(npc=0, tick=1, tick_rate=2))
        obeyed = await wait_for(lambda: states and states[-1].tick_rate == 2 and len(actions) > before, 20)
        alive = proc.poll() is None
        return {
            **report.summary(),
            "handled_s": round(handled, 3),
            "bad_expected": bad,
            "bad_counted": counted,
            "ok": obeyed and alive,
        }
    finally:
        ticking.cancel()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def main(n: int) -> dict[str, Any]:
    """Fuzz every service with n payloads; the JSON result."""
    services: dict[str, Any] = {}
    with EmbeddedServer() as server:
        async with Bus(BusConfig(url=server.url, name="hostile")) as bus:
            for cell in sorted(CELLS):
                services[f"cell.{cell}"] = await fuzz_cell(bus, server.url, cell, n)
            services["world_server.action"] = await fuzz_world_server(bus, server.url, n)
            services["npc.command"] = await fuzz_npc(bus, server.store_dir, n)
    return {"cores": os.cpu_count() or 1, "payloads": n, "services": services}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="hostile payloads per service")
    logging.basicConfig(
        level=logging.ERROR
    )  # each rejected payload logs a warning: keep the output one object
    print(json.dumps(asyncio.run(main(parser.parse_args().n))))
