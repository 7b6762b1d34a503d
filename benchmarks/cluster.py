"""Cluster benchmark: ``python -m benchmarks.cluster [--npcs 16] [--duration 20]`` prints one JSON object.

The live organism in 2 shards (``agents.shard``): shard 0 (the world server and the even NPCs) in this
process, shard 1 (the odd NPCs) as its own OS process, as on a second host. On the same machine:

- ``one_node_...``: both shards on one nats-server;
- the cluster: a 3-node NATS cluster on loopback (``nervous.cluster``), shard k starting on node k.

Runs alternate (one node, cluster, ``--rounds`` times: the machine's load falls on both alike); the
latency and missed-tick keys are medians over rounds. Each run measures, after every NPC has acted and
2 s to settle, a ``duration`` s window: the world server's observation-to-action latency (p50, p99)
and missed ticks. Each cluster run then kills a node twice, with ``ActionWatch`` listening on node 2:
node 1 (shard 1's), and, once node 1 is back, node 0 (the world server's and shard 0's).
``failover_s`` is the worst of these kills: seconds from the SIGKILL until every NPC has answered an
observation newer than any answered before it. Shard 1 must then end with status 0 on SIGTERM
(``shard_exit_status``: the statuses seen).

``auth_overhead_pct`` (publish rate with ``bus.auth=roles`` against ``none``) comes from
``benchmarks.bus_auth.measure_auth_overhead()`` where that module exists, else null with a note.
Targets (issue 14): cluster p99 <= 10 ms, missed <= 0.5 %, failover <= 2 s, auth overhead <= 5 %.
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agents.action_watch import ActionWatch
from agents.organism import Organism, OrganismConfig
from benchmarks.bus_auth import measure_auth_overhead
from nervous.bus import Bus, BusConfig
from nervous.cluster import NatsCluster
from nervous.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
SHARDS = 2
NODES = 3


async def _until(check: Callable[[], object], timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"benchmark: {what} not reached in {timeout} s")
        await asyncio.sleep(0.01)


def _other_shard(npcs: int, url: str, run_dir: Path, stage: int) -> subprocess.Popen[bytes]:
    """Shard 1 of 2 as its own OS process (``python -m agents.organism --shard 1/2``)."""
    argv = [sys.executable, "-m", "agents.organism", "--npcs", str(npcs), "--shard", f"1/{SHARDS}",
            "--bus-url", url, "--duration", "0", "--stage", str(stage), "--run-dir", str(run_dir / "shard1")]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir / "shard1.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


async def _failover(cluster: NatsCluster, watch: ActionWatch, node: int, timeout: float = 15.0) -> float:
    """Seconds from killing node until every NPC has answered a fresh observation."""
    killed_at = time.monotonic()
    cluster.kill(node)
    await _until(lambda: not np.isnan(watch.first_fresh_after(killed_at)).any(), timeout,
                 f"every NPC acting after node {node} was killed")
    return float(np.max(watch.first_fresh_after(killed_at)) - killed_at)


async def organism_run(npcs: int, duration: float, stage: int, run_dir: Path,
                       cluster: NatsCluster | None = None, url: str = "") -> dict[str, Any]:
    """One run of the 2-shard organism on the bus at url (a cluster's url: then the failovers too)."""
    out: dict[str, Any] = {}
    config = OrganismConfig(npcs=npcs, duration_s=0, stage=stage, shard=f"0/{SHARDS}", bus_url=url,
                            run=f"bench-cluster-{run_dir.name}", run_dir=str(run_dir / "shard0"))
    other = _other_shard(npcs, url, run_dir, stage)
    try:
        async with Organism(config) as head:
            world = head.world
            assert world is not None
            running = asyncio.create_task(head.run(0))
            try:
                await _until(lambda: (world.acted > 0).all(), 180, "every NPC acting")
                await asyncio.sleep(2.0)
                before, n_lat = world.summary(), world.n_latency
                await asyncio.sleep(duration)
                after, lat = world.summary(), world.latencies_ms(start=n_lat)
                acted = sum(after[i]["ticks"] - before[i]["ticks"] for i in range(npcs))
                missed = sum(after[i]["missed"] - before[i]["missed"] for i in range(npcs))
                out["action_latency_p50_ms"] = round(float(np.percentile(lat, 50)), 2)
                out["action_latency_p99_ms"] = round(float(np.percentile(lat, 99)), 2)
                out["missed_tick_fraction"] = round(missed / max(1, acted + missed), 5)
                if cluster is not None:
                    out.update(await _failovers(cluster, npcs))
            finally:
                head.stop.set()
                await asyncio.wait_for(running, 60)
    finally:
        if other.poll() is None:
            other.send_signal(signal.SIGTERM)
        try:
            out["shard_exit_status"] = await asyncio.to_thread(other.wait, 60)
        except subprocess.TimeoutExpired:
            other.kill()
            out["shard_exit_status"] = other.wait()
    return out


async def _failovers(cluster: NatsCluster, npcs: int) -> dict[str, Any]:
    """Kill node 1 (shard 1's), bring it back, kill node 0 (the world's); seconds to act again each."""
    async with Bus(BusConfig(url=cluster.urls[2], name="bench-watch")) as bus:
        watch = await ActionWatch(npcs).start(bus)
        await _until(lambda: (watch.counts() > 0).all(), 30, "the watch hearing every NPC")
        other_node = await _failover(cluster, watch, 1)
        await asyncio.to_thread(cluster.start_node, 1)
        await asyncio.sleep(2.0)
        world_node = await _failover(cluster, watch, 0)
    return {"failover_s_other_shard_node": round(other_node, 3),
            "failover_s_world_node": round(world_node, 3)}


def auth_overhead() -> dict[str, Any]:
    """The cost of permissions: ``benchmarks.bus_auth.measure_auth_overhead()`` (runs its own loop)."""
    measured = measure_auth_overhead()
    return {"auth_overhead_pct": measured.get("auth_overhead_pct"),
            **{f"auth_{k}": v for k, v in measured.items() if k != "auth_overhead_pct"}}


async def bench(npcs: int, duration: float, stage: int, rounds: int) -> dict[str, Any]:
    """The benchmark's JSON object: medians over rounds (one node, then the cluster, alternating, so
    both see the machine's load alike); failover: the worst of every kill."""
    out: dict[str, Any] = {"cores": os.cpu_count(), "npcs": npcs, "shards": SHARDS, "nats_nodes": NODES,
                           "loadavg_1m_at_start": round(os.getloadavg()[0], 1)}
    ones: list[dict[str, Any]] = []
    manys: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        for r in range(rounds):
            with EmbeddedServer(Path(tmp) / f"one-node-nats-{r}") as server:
                ones.append(await organism_run(npcs, duration, stage, Path(tmp) / f"one-node-{r}",
                                               url=server.url))
            with NatsCluster(NODES, Path(tmp) / f"cluster-nats-{r}") as cluster:
                manys.append(await organism_run(npcs, duration, stage, Path(tmp) / f"cluster-{r}", cluster,
                                                cluster.url))

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return round(float(np.median([run[key] for run in runs])), 5)

    out["action_latency_p99_ms"] = median(manys, "action_latency_p99_ms")
    out["missed_tick_fraction"] = median(manys, "missed_tick_fraction")
    out["failover_s"] = max(max(m["failover_s_other_shard_node"], m["failover_s_world_node"]) for m in manys)
    out.update(await asyncio.to_thread(auth_overhead))  # it runs an event loop of its own
    out["action_latency_p50_ms"] = median(manys, "action_latency_p50_ms")
    for key in ("failover_s_other_shard_node", "failover_s_world_node"):
        out[key] = max(m[key] for m in manys)
    for key in ("action_latency_p50_ms", "action_latency_p99_ms", "missed_tick_fraction"):
        out[f"one_node_{key}"] = median(ones, key)
    out["rounds"] = rounds
    out["window_s"] = duration
    out["shard_exit_status"] = sorted({run["shard_exit_status"] for run in ones + manys})
    out["loadavg_1m_at_end"] = round(os.getloadavg()[0], 1)
    return out


def main() -> None:
    """Print one JSON object."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.splitlines()[0])
    p.add_argument("--npcs", type=int, default=16, help="NPCs of the organism, over both shards")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of each steady window")
    p.add_argument("--stage", type=int, default=3, help="world stage preset")
    p.add_argument("--rounds", type=int, default=2, help="one-node and cluster runs, alternating")
    a = p.parse_args()
    if a.npcs < SHARDS:
        p.error(f"--npcs={a.npcs}: must be >= {SHARDS}, one NPC per shard at least")
    if a.rounds < 1:
        p.error(f"--rounds={a.rounds}: must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(bench(a.npcs, a.duration, a.stage, a.rounds))))


if __name__ == "__main__":
    main()
