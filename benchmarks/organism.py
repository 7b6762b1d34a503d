"""Live organism benchmark: ``python -m benchmarks.organism [--npcs 16] [--duration 30]``, one JSON object.

16 NPC processes at 20 Hz on the real-time world clock for 30 s. Measures the time until every NPC
has heartbeated (``spawn_all_s``), the NPCs' PSS (``/proc/<pid>/smaps_rollup``), the world server's
observation-to-action latency and missed ticks over the window, the CPU measured on a busy NPC held
to a 25 % quota, and the time from ``kill -9`` of an NPC to the first heartbeat of its successor
(which loads the same weights: ``restart_same_weights``).

Observations go out NPC after NPC over half a tick (``obs_spread``, the default); a shorter second
window publishes them all at once, to show what the phase offsets are worth (``burst_...``), and a
third has every NPC learning online with its own PPO learner (``learn_...``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.organism import Organism, OrganismConfig


def pss_mib(pid: int) -> float:
    """Proportional set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _until(check: Any, timeout: float) -> None:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("benchmark: condition not reached")
        await asyncio.sleep(0.005)


def _latency(world: Any, n_lat: int, prefix: str = "") -> dict[str, float]:
    import numpy as np

    lat = world.latencies_ms()[n_lat:]
    return {f"{prefix}action_latency_p50_ms": round(float(np.percentile(lat, 50)), 2),
            f"{prefix}action_latency_p99_ms": round(float(np.percentile(lat, 99)), 2)}


async def side_window(npcs: int, duration: float, run_dir: Path, prefix: str,
                      **changes: Any) -> dict[str, Any]:
    """Latency and missed ticks of a variant of the organism (changes to its config), keys prefixed."""
    config = OrganismConfig(npcs=npcs, duration_s=0, stage=3, run=f"bench-{prefix.strip('_')}",
                            run_dir=str(run_dir / prefix), **changes)
    async with Organism(config) as org:
        world = org.world
        assert world is not None
        running = asyncio.create_task(org.run(0))
        try:
            await _until(lambda: org.spawn_all_s == org.spawn_all_s, 30)
            await asyncio.sleep(2.0)
            n_lat, acted, missed = world.n_latency, world.acted.sum(), world.missed.sum()
            await asyncio.sleep(duration)
            d_acted, d_missed = world.acted.sum() - acted, world.missed.sum() - missed
            return _latency(world, n_lat, prefix) | {
                f"{prefix}missed_tick_fraction": round(float(d_missed / max(1, d_acted + d_missed)), 5)}
        finally:
            org.stop.set()
            await asyncio.wait_for(running, 30)


async def main_window(npcs: int, duration: float, run_dir: Path) -> dict[str, Any]:
    """Spawn, steady window, kill -9 restart."""
    config = OrganismConfig(npcs=npcs, duration_s=0, stage=3, run="bench-organism",
                            run_dir=str(run_dir / "main"))
    out: dict[str, Any] = {}
    async with Organism(config) as org:
        sup, world = org.supervisor, org.world
        assert sup is not None and world is not None
        running = asyncio.create_task(org.run(0))
        try:
            await _until(lambda: org.spawn_all_s == org.spawn_all_s, 30)  # not NaN any more
            out["spawn_all_s"] = round(org.spawn_all_s, 3)
            await asyncio.sleep(2.0)  # settle
            acted, missed, n_lat = world.acted.sum(), world.missed.sum(), world.n_latency
            await asyncio.sleep(duration)
            pids = [c.handle.pid for c in sup.children.values() if c.handle is not None]
            pss = [pss_mib(p) for p in pids]
            out["pss_total_mib"] = round(sum(pss), 1)
            out["pss_per_npc_mib"] = round(sum(pss) / len(pss), 1)
            out.update(_latency(world, n_lat))
            d_acted, d_missed = world.acted.sum() - acted, world.missed.sum() - missed
            out["missed_tick_fraction"] = round(float(d_missed / max(1, d_acted + d_missed)), 5)
            out["world_overruns"] = world.overruns

            child = sup.children["npc-0"]
            before = json.loads((org.checkpoint_dir / "npc-0.status.json").read_text())["weights"]
            pid, hb = child.handle.pid, child.heartbeats  # type: ignore[union-attr]
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            status_file = org.checkpoint_dir / "npc-0.status.json"

            def successor_status() -> dict:
                return json.loads(status_file.read_text()) if status_file.exists() else {}

            # a heartbeat the killed process sent just before dying can still arrive: wait until the
            # successor has loaded its weights (its status names its pid), then for its own heartbeat
            await _until(lambda: child.pids[-1] != pid
                         and successor_status().get("pid") == child.pids[-1], 10)
            hb = child.heartbeats
            await _until(lambda: child.heartbeats > hb, 10)
            out["restart_after_kill9_s"] = round(time.monotonic() - t0, 3)
            status = successor_status()
            out["restart_same_weights"] = status["weights"] == before and status["pid"] != pid
        finally:
            org.stop.set()
            await asyncio.wait_for(running, 30)
    return out


async def quota_window(run_dir: Path, seconds: float = 2.0) -> float:
    """CPU (cores) used by a busy NPC under a 25 % quota."""
    config = OrganismConfig(npcs=1, duration_s=0, stage=0, cpu_quota=25.0, run="bench-quota",
                            run_dir=str(run_dir / "quota"))
    async with Organism(config, npc_overrides={0: {"burn_cpu": True}}) as org:
        sup = org.supervisor
        assert sup is not None
        running = asyncio.create_task(org.run(0))
        try:
            await _until(lambda: sup.children["npc-0"].heartbeats > 0, 30)
            await asyncio.sleep(0.5)
            c0, t0 = sup.cgroups.cpu_seconds("npc-0"), time.monotonic()
            await asyncio.sleep(seconds)
            used = (sup.cgroups.cpu_seconds("npc-0") - c0) / (time.monotonic() - t0)
            if not sup.cgroups.capped:
                used = float("nan")
        finally:
            org.stop.set()
            await asyncio.wait_for(running, 30)
    return round(used, 3)


async def bench(npcs: int, duration: float) -> dict[str, Any]:
    """The benchmark's JSON object."""
    with tempfile.TemporaryDirectory(prefix="bench-organism-") as tmp:
        out: dict[str, Any] = {"cores": os.cpu_count(), "npcs": npcs}
        out.update(await main_window(npcs, duration, Path(tmp)))
        out["quota_25pct_measured_cpu"] = await quota_window(Path(tmp))
        side = max(5.0, duration / 2)
        out.update(await side_window(npcs, side, Path(tmp), "burst_", obs_spread=0.0))
        out.update(await side_window(npcs, side, Path(tmp), "learn_", learn=True))
    keys = ["cores", "npcs", "spawn_all_s", "pss_total_mib", "pss_per_npc_mib", "action_latency_p50_ms",
            "action_latency_p99_ms", "missed_tick_fraction", "quota_25pct_measured_cpu",
            "restart_after_kill9_s"]
    return {k: out[k] for k in keys} | {k: v for k, v in out.items() if k not in keys}


def main() -> None:
    """Print one JSON object."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.organism", description=__doc__.splitlines()[0])
    p.add_argument("--npcs", type=int, default=16)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the steady window")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(bench(a.npcs, a.duration))))


if __name__ == "__main__":
    main()
