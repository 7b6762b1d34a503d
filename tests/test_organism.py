"""The live organism with real NPC processes and real cgroups: faults, commands, quotas, clean exit."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from agents.cgroups import v1_mounts
from agents.forkserver import process_alive as _alive
from agents.organism import Organism
from agents.supervisor import State
from nervous import subjects
from nervous.messages import Allocation, Command
from tests.live import organism_config as _config
from tests.live import until

CAPPED = "cpu" in v1_mounts() and os.geteuid() == 0
pytestmark = pytest.mark.slow


def _status(org: Organism, npc: int) -> dict:
    return json.loads((org.checkpoint_dir / f"npc-{npc}.status.json").read_text())


async def test_faults_commands_and_quota(tmp_path: Path) -> None:
    burner = {3: {"burn_cpu": True}}
    async with Organism(_config(tmp_path, 4), npc_overrides=burner) as org:
        sup, world, bus = org.supervisor, org.world, org.bus
        assert sup is not None and world is not None and bus is not None
        running = asyncio.create_task(org.run(0))
        children = sup.children
        try:
            await until(
                lambda: all(c.state == State.RUNNING and c.heartbeats for c in children.values()),
                20,
                "every NPC running",
            )
            await until(lambda: world.acted.min() > 5, 10, "every NPC acting")

            # kill -9: restarted at once with the same weights
            before = _status(org, 0)
            pid = children["npc-0"].handle.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
            hb = children["npc-0"].heartbeats
            took = await until(
                lambda: children["npc-0"].heartbeats > hb + 1 and children["npc-0"].pids[-1] != pid,
                5,
                "npc-0 back after kill -9",
            )
            assert took < 2.0
            after = _status(org, 0)
            assert after["pid"] != pid and after["source"] == "checkpoint"
            assert after["weights"] == before["weights"]
            assert children["npc-0"].exits[-1].reason == "crash"

            # a command changes the tick rate at once; a malformed one is rejected and logged
            await bus.nc.publish(subjects.npc_command(1), b"\x93garbage")
            await bus.publish(subjects.npc_command(1), Command(npc=2, tick=0, tick_rate=3))  # wrong NPC
            await bus.publish(subjects.npc_command(1), Command(npc=1, tick=0, tick_rate=5))
            await until(lambda: world.rate[1] == 5, 3, "npc-1 at 5 Hz")
            acted = int(world.acted[1])
            await asyncio.sleep(1.0)
            assert 3 <= world.acted[1] - acted <= 7  # about 5 actions per second
            log = (org.run_dir / "logs" / "npc-1.log").read_text()
            assert "bad Command" in log and "rejected command for npc 2" in log

            # a governor allocation sets the CPU quota live; the burner is held to it (the test is the
            # governor: only that identity may publish allocations)
            governor = await org.connect_as("governor")
            await governor.publish(
                subjects.governor_allocate(),
                Allocation(npc=3, tick=0, tick_rate=20, cpu_quota=25.0, gates={}, llm_priority=0),
            )
            await until(lambda: children["npc-3"].spec.cpu_quota == 25.0, 3, "quota applied")
            if CAPPED:
                await asyncio.sleep(0.3)
                c0, t0 = sup.cgroups.cpu_seconds("npc-3"), time.monotonic()
                await asyncio.sleep(1.5)
                used = (sup.cgroups.cpu_seconds("npc-3") - c0) / (time.monotonic() - t0)
                assert used == pytest.approx(0.25, rel=0.15)

            # a hung NPC (stopped, no heartbeat) is killed and restarted
            npc2 = children["npc-2"]
            await until(lambda: npc2.state == State.RUNNING and npc2.heard_since_start, 20, "npc-2 heard")
            pid = npc2.handle.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGSTOP)
            await until(lambda: any(e.reason == "hang" for e in npc2.exits) and npc2.pids[-1] != pid, 30,
                        "hang detected")
            await until(lambda: npc2.state == State.RUNNING, 20, "npc-2 running again")

            # memory max: an NPC that exceeds it is OOM-killed, seen as such and restarted
            if CAPPED:
                sup.set_memory_max("npc-2", 4 << 20)
                sup.kill("npc-2", "test")
                await until(lambda: any(e.reason == "oom" for e in children["npc-2"].exits), 10, "OOM seen")
                sup.set_memory_max("npc-2", 512 << 20)
                await until(lambda: children["npc-2"].state == State.RUNNING, 10, "npc-2 running after OOM")
                assert sup.cgroups.oom_kills("npc-2") >= 1
        finally:
            pids = [p for c in children.values() for p in c.pids]
            groups = [d for name in children for d in sup.cgroups.dirs(name)] if CAPPED else []  # type: ignore[attr-defined]
            org.stop.set()
            summary = await asyncio.wait_for(running, 20)
    assert not [p for p in pids if _alive(p)]
    assert not [g for g in groups if g.exists()]
    assert summary["npcs"][0]["restarts"] >= 1
    assert all(0.0 < n["lag_ms_max"] < 5000.0 for n in summary["npcs"].values())  # lag reached the world
    assert all(n["state"] == "STOPPED" for n in summary["npcs"].values())


async def test_broker_restart_is_survived_and_sigterm_checkpoints(tmp_path: Path) -> None:
    async with Organism(_config(tmp_path, 2)) as org:
        sup, world, server = org.supervisor, org.world, org.server
        assert sup is not None and world is not None and server is not None
        running = asyncio.create_task(org.run(0))
        try:
            await until(lambda: world.acted.min() > 5, 20, "every NPC acting")
            server.kill()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.start)
            acted = world.acted.copy()
            await until(lambda: (world.acted > acted + 10).all(), 15, "NPCs acting after the broker restart")
            assert all(c.state == State.RUNNING and c.restarts == 0 for c in sup.children.values())
        finally:
            pids = [p for c in sup.children.values() for p in c.pids]
            org.stop.set()
            await asyncio.wait_for(running, 20)
    for npc in range(2):
        status = json.loads((org.checkpoint_dir / f"npc-{npc}.status.json").read_text())
        assert status["brain_calls"] > 0  # written on the way out after SIGTERM
    assert not [p for p in pids if _alive(p)]


async def test_an_npc_process_learns_online_and_checkpoints_its_updates(tmp_path: Path) -> None:
    config = dataclasses.replace(_config(tmp_path, 1), learn=True)
    async with Organism(config, npc_overrides={0: {"num_steps": 16, "checkpoint_every": 2}}) as org:
        running = asyncio.create_task(org.run(0))
        weights = org.checkpoint_dir / "npc-0.pt"
        try:
            await until(lambda: org.world.acted[0] > 0, 20, "npc-0 acting")  # type: ignore[union-attr]
            fresh = _status(org, 0)["weights"]

            def saved_updates() -> int:
                try:
                    return int(torch.load(weights, weights_only=True)["updates"])
                except (OSError, RuntimeError, EOFError):
                    return 0

            await until(lambda: saved_updates() >= 2, 20, "two online updates checkpointed")
        finally:
            org.stop.set()
            await asyncio.wait_for(running, 20)
    status = _status(org, 0)
    assert status["updates"] >= 2 and status["weights"] != fresh  # learnt, and saved on SIGTERM


async def test_spawned_npc_processes_run_python_m_agents_npc(tmp_path: Path) -> None:
    config = dataclasses.replace(_config(tmp_path, 1), fork=False, tick_rate=5)
    async with Organism(config) as org:
        world, sup = org.world, org.supervisor
        assert world is not None and sup is not None
        running = asyncio.create_task(org.run(0))
        try:
            await until(lambda: world.acted[0] > 5, 60, "the spawned NPC acting")
            pid = sup.children["npc-0"].pids[-1]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"agents.npc" in cmdline
            assert world.rate[0] == 5  # its state reports carry the tick rate it was started with
        finally:
            org.stop.set()
            summary = await asyncio.wait_for(running, 30)
    assert summary["npcs"][0]["state"] == "STOPPED" and summary["npcs"][0]["restarts"] == 0
    assert _status(org, 0)["brain_calls"] > 5
