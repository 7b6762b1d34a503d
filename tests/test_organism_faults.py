"""The organism survives the death of any of its parts and always stops within bounds (issue 10).

Real processes, a real nats-server, real cgroups where this machine lets us write them. Every wait
is on a condition with a generous timeout (a loaded 2-core machine); how fast recovery is, is
measured by ``python -m benchmarks.chaos``, not timed here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agents.organism
from agents.cgroups import v1_mounts
from agents.forkserver import ForkServer
from agents.forkserver import process_alive as alive
from agents.organism import Organism
from agents.supervisor import State
from nervous import subjects
from nervous.messages import WaveBatch
from nervous.server import EmbeddedServer
from tests.live import organism_config, until
from tests.test_cell_service import math_request

CAPPED = "cpu" in v1_mounts() and os.geteuid() == 0
pytestmark = pytest.mark.slow


def _status(org: Organism, npc: int) -> dict:
    return json.loads((org.checkpoint_dir / f"npc-{npc}.status.json").read_text())


def _groups(org: Organism) -> list[Path]:
    sup = org.supervisor
    assert sup is not None
    return [d for name in sup.children for d in sup.cgroups.dirs(name)] if CAPPED else []  # type: ignore[attr-defined]


async def test_kill9_of_the_fork_server_brings_it_and_every_npc_back(tmp_path: Path) -> None:
    async with Organism(organism_config(tmp_path, 4)) as org:
        sup, world = org.supervisor, org.world
        assert sup is not None and world is not None
        children = sup.children
        running = asyncio.create_task(org.run(0))
        try:
            await until(lambda: world.acted.min() > 5, 30, "every NPC acting")
            before = {i: _status(org, i)["weights"] for i in range(4)}
            old = {name: c.handle.pid for name, c in children.items()}  # type: ignore[union-attr]
            os.kill(old["forkserver"], signal.SIGKILL)
            back = lambda: all(c.pids[-1] != old[n] and c.heard_since_start for n, c in children.items())  # noqa: E731
            await until(back, 30, "the fork server and every NPC back")
            acted = world.acted.copy()
            await until(lambda: (world.acted > acted + 5).all(), 20, "every NPC acting again")
            for i in range(4):
                status = _status(org, i)
                assert status["source"] == "checkpoint" and status["weights"] == before[i]
            assert not [p for p in old.values() if alive(p)]  # died with their server, and reaped
            assert {children[f"npc-{i}"].exits[-1].reason for i in range(4)} == {"forkserver exit"}
            groups = _groups(org)
        finally:
            pids = [p for c in children.values() for p in c.pids]
            org.stop.set()
            summary = await asyncio.wait_for(running, 30)
    assert summary["parts"]["forkserver"]["restarts"] == 1
    assert all(n["restarts"] == 1 and n["state"] == "STOPPED" for n in summary["npcs"].values())
    assert summary["restarts"] == 5 and summary["failed"] == []
    assert not [p for p in pids if alive(p)]
    assert not [g for g in groups if g.exists()]


async def test_a_supervised_cell_service_comes_back_after_kill9(tmp_path: Path) -> None:
    config = organism_config(tmp_path, 1)
    config.cell_services = ["math"]
    async with Organism(config) as org:
        sup, bus = org.supervisor, org.bus
        assert sup is not None and bus is not None
        cell = sup.children["cell-math"]
        running = asyncio.create_task(org.run(0))
        try:
            up = lambda: cell.heard_since_start and cell.state == State.RUNNING  # noqa: E731
            await until(up, 60, "the math cell up")
            pid = cell.handle.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
            await until(lambda: cell.pids[-1] != pid and cell.heard_since_start, 60, "the math cell back")
            subject = subjects.cell_request("math")
            reply = await bus.request(subject, math_request(tick=7), WaveBatch, timeout=10)
            assert reply.tick == 7 and len(reply.npc) > 0  # it answers, and the lock problem fired
        finally:
            org.stop.set()
            summary = await asyncio.wait_for(running, 30)
    part = summary["parts"]["cell-math"]
    assert part["restarts"] == 1 and part["state"] == "STOPPED"
    assert not alive(pid)


class _BrokenForkServer(ForkServer):
    """A real fork server whose preload fails: it exits at start, every time."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(preload=("agents.no_such_module",), **kwargs)  # type: ignore[arg-type]


async def test_a_fork_server_that_cannot_start_is_fatal_and_stops_the_run(tmp_path: Path, monkeypatch,
                                                                         caplog) -> None:
    monkeypatch.setattr(agents.organism, "ForkServer", _BrokenForkServer)
    config = organism_config(tmp_path, 2, start_retries=2, backoff_s=0.1)
    with caplog.at_level(logging.ERROR, logger="agents"):
        async with Organism(config) as org:
            summary = await asyncio.wait_for(org.run(0), 60)  # no stop from us: it must end by itself
    assert summary["failed"] == ["forkserver"] and summary["parts"]["forkserver"]["state"] == "FATAL"
    assert all(n["state"] == "STOPPED" for n in summary["npcs"].values())
    fatal = [r.getMessage() for r in caplog.records if "FATAL" in r.getMessage()]
    assert any("forkserver: FATAL (3 failed starts)" in m for m in fatal), fatal


async def test_an_npc_that_cannot_start_is_fatal_and_the_rest_carries_on(tmp_path: Path, caplog) -> None:
    config = organism_config(tmp_path, 2, start_retries=1, backoff_s=0.1)
    unreachable = {1: {"bus_url": "nats://127.0.0.1:1"}}  # it dies at start: no bus there
    with caplog.at_level(logging.ERROR, logger="agents"):
        async with Organism(config, npc_overrides=unreachable) as org:
            sup, world = org.supervisor, org.world
            assert sup is not None and world is not None
            running = asyncio.create_task(org.run(0))
            try:
                await until(lambda: sup.children["npc-1"].state == State.FATAL, 60, "npc-1 FATAL")
                acted = int(world.acted[0])
                await until(lambda: world.acted[0] > acted + 10, 20, "npc-0 acting on")
                assert not org.stop.is_set()
            finally:
                org.stop.set()
                summary = await asyncio.wait_for(running, 30)
    assert summary["failed"] == [] and summary["npcs"][1]["state"] == "FATAL"
    assert any("npc-1: FATAL" in r.getMessage() and "carries on without it" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("fault", ["kill", "freeze"])
async def test_an_external_broker_killed_or_frozen_is_survived(tmp_path: Path, fault: str) -> None:
    server = EmbeddedServer(tmp_path / "broker").start()
    try:
        config = organism_config(tmp_path, 3)
        config.bus_url = server.url
        async with Organism(config) as org:
            sup, world = org.supervisor, org.world
            assert sup is not None and world is not None
            running = asyncio.create_task(org.run(0))
            try:
                await until(lambda: world.acted.min() > 5, 30, "every NPC acting")
                if fault == "kill":
                    server.kill()
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(server.start)
                else:
                    os.kill(server.pid, signal.SIGSTOP)
                    await asyncio.sleep(4.0)
                    os.kill(server.pid, signal.SIGCONT)
                acted = world.acted.copy()
                await until(lambda: (world.acted > acted + 5).all(), 30, "every NPC acting after the broker")
                assert all(c.restarts == 0 and not c.exits for c in sup.children.values())  # none hung
            finally:
                org.stop.set()
                summary = await asyncio.wait_for(running, 30)
        assert summary["restarts"] == 0 and all(n["state"] == "STOPPED" for n in summary["npcs"].values())
    finally:
        server.close()


# -- the command line: exit status, bounded stops, nothing left behind ----------------------------


def _organism_cli(run_dir: Path, duration: float, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "agents.organism", "--npcs", "3", "--stage", "0", "--duration",
           str(duration), "--run-dir", str(run_dir), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _descendants(pid: int) -> list[int]:
    """Processes whose parent chain reaches pid."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier}
        out += sorted(frontier)
    return out


def _forkserver(pid: int) -> int:
    for p in _descendants(pid):
        try:
            if b"agents.forkserver" in Path(f"/proc/{p}/cmdline").read_bytes():
                return p
        except OSError:
            continue
    return 0


def _wait_npcs_up(proc: subprocess.Popen[bytes], run_dir: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((run_dir / "npcs" / f"npc-{i}.status.json").exists() for i in range(n)):
            return
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""  # type: ignore[union-attr]
        time.sleep(0.05)
    raise AssertionError("NPCs did not start")


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, str, float]:
    t0 = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        tail = out.decode()[-3000:]
        raise AssertionError(f"the organism did not end within {timeout} s:\n{tail}") from None
    return proc.returncode, out.decode(), time.monotonic() - t0


def test_cli_kill9_of_the_fork_server_mid_run_ends_on_time_with_status_0(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _organism_cli(run_dir, 12)
    try:
        _wait_npcs_up(proc, run_dir, 3)
        fork = _forkserver(proc.pid)
        assert fork
        seen = set(_descendants(proc.pid))
        os.kill(fork, signal.SIGKILL)
        time.sleep(3.0)
        seen |= set(_descendants(proc.pid))
        code, out, _ = _finish(proc, 40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["parts"]["forkserver"]["restarts"] == 1
    assert all(n["restarts"] == 1 and n["state"] == "STOPPED" for n in summary["npcs"].values())
    assert not [p for p in seen if alive(p)]  # no process left behind


@pytest.mark.parametrize("when", ["start-up", "restart storm", "stopped child", "second SIGINT"])
def test_cli_a_requested_stop_is_bounded_at_any_moment(tmp_path: Path, when: str) -> None:
    run_dir = tmp_path / "run"
    proc = _organism_cli(run_dir, 0)  # lives until signalled
    seen: set[int] = set()
    try:
        if when == "start-up":  # the broker or the fork server is still starting
            deadline = time.monotonic() + 60
            while not (run_dir / "logs").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            seen |= set(_descendants(proc.pid))
            proc.send_signal(signal.SIGTERM)
        else:
            _wait_npcs_up(proc, run_dir, 3)
            seen |= set(_descendants(proc.pid))
            if when == "restart storm":
                os.kill(_forkserver(proc.pid), signal.SIGKILL)
                time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
            elif when == "stopped child":
                npc = json.loads((run_dir / "npcs" / "npc-0.status.json").read_text())["pid"]
                os.kill(npc, signal.SIGSTOP)
                proc.send_signal(signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGINT)
                time.sleep(0.1)
                proc.send_signal(signal.SIGINT)
        # stop timeout 5 s (+ the fork server's own stop after its NPCs) + 2 s kill grace + margin
        code, out, took = _finish(proc, 25)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out[-3000:]
    assert not [p for p in seen if alive(p)], out[-2000:]
