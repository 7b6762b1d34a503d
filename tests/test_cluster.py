"""The organism across hosts: a 3-node NATS cluster on loopback, clients failing over, shards on it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agents.action_watch import ActionWatch
from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.cluster import NatsCluster
from nervous.messages import Heartbeat
from nervous.trail_stream import TrailStreamConfig, ensure_trail_stream, stream_name
from tests.live import until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-servers joined by routes on loopback, with clustered JetStream."""
    with NatsCluster(3, tmp_path / "cluster") as started:
        yield started


def _beat(seq: int) -> Heartbeat:
    return Heartbeat(domain="test", service="cluster", seq=seq, uptime_s=0.0)


async def _publish_until_heard(bus: Bus, seq: int, heard: list[int], what: str) -> None:
    """Publish heartbeat seq every 50 ms until it is heard: a subscription's interest reaches the other
    nodes over the routes a moment after the subscribe, and a publish before then is dropped."""
    async def again() -> None:
        while seq not in heard:
            await bus.publish(subjects.heartbeat("test", "cluster"), _beat(seq))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(again())
    try:
        await until(lambda: seq in heard, 5, what)
    finally:
        task.cancel()


async def test_a_message_crosses_the_routes_and_a_client_fails_over(cluster: NatsCluster) -> None:
    heard: list[int] = []
    async with Bus(BusConfig(url=cluster.urls[2], name="listener")) as listener, \
            Bus(BusConfig(url=cluster.url, name="talker")) as talker:
        await listener.subscribe(subjects.heartbeat("test", "cluster"), Heartbeat,
                                 lambda msg, raw: heard.append(msg.seq))
        assert talker.nc.connected_url.port == cluster.nodes[0].port  # the first node in the list
        await _publish_until_heard(talker, 1, heard, "a publish on node 0 heard on node 2")

        killed_at = time.monotonic()
        cluster.kill(0)
        await until(lambda: talker.reconnects >= 1, 5, "the talker reconnected")
        assert time.monotonic() - killed_at < 2.0
        assert talker.nc.connected_url.port == cluster.nodes[1].port  # the next in the list
        await _publish_until_heard(talker, 2, heard, "a publish after failover heard")

        cluster.start_node(0)  # back on the same ports, routed again
        async with Bus(BusConfig(url=cluster.urls[0], name="late")) as late:
            await _publish_until_heard(late, 3, heard, "a publish on the restarted node heard")
    assert sorted(set(heard)) == [1, 2, 3]


async def test_the_trail_stream_lives_on_the_clustered_jetstream(cluster: NatsCluster) -> None:
    """Created through node 2, published to through node 0: one stream for the whole cluster."""
    async with Bus(BusConfig(url=cluster.urls[2], name="maker")) as maker, \
            Bus(BusConfig(url=cluster.urls[0], name="publisher")) as publisher:
        await ensure_trail_stream(maker.js, TrailStreamConfig())
        ack = await publisher.js.publish(subjects.trail_event(), b"event", headers={"Nats-Msg-Id": "e1"})
        again = await publisher.js.publish(subjects.trail_event(), b"event", headers={"Nats-Msg-Id": "e1"})
        assert (ack.stream, ack.seq) == (stream_name(), 1) and again.duplicate
        info = await maker.js.stream_info(stream_name())
        assert info.state.messages == 1
        assert info.cluster is not None and info.cluster.leader in {"n0", "n1", "n2"}


def test_a_cluster_needs_a_node_and_says_which_failed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cluster.nodes=0"):
        NatsCluster(0)
    proc = subprocess.run([sys.executable, "-m", "nervous.cluster", "--nodes", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "error: --nodes=0" in proc.stderr


def test_the_cluster_command_prints_its_url_and_stops_its_nodes_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "nervous.cluster", "--nodes", "2",
                             "--store-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        urls = proc.stdout.readline().strip().split(",")
        assert len(urls) == 2 and all(u.startswith("nats://127.0.0.1:") for u in urls)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for node in ("n0", "n1"):
        log = (tmp_path / node / "nats-server.log").read_text()
        assert "Server is ready" in log and "Server Exiting" in log


def _shard(k: int, n: int, npcs: int, url: str, run_dir: Path) -> subprocess.Popen[bytes]:
    """Shard k of n of the organism as its own OS process, as on its own host."""
    argv = [sys.executable, "-m", "agents.organism", "--npcs", str(npcs), "--shard", f"{k}/{n}",
            "--bus-url", url, "--duration", "0", "--stage", "0", "--run-dir", str(run_dir / f"shard{k}")]
    log = (run_dir / f"shard{k}.log").open("wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("node", [0, 1], ids=["world-node", "other-shard-node"])
async def test_shards_on_a_cluster_survive_a_killed_node(tmp_path: Path, cluster: NatsCluster,
                                                        node: int) -> None:
    """16 NPCs in 2 shards, each shard's processes on their own node (0 and 1), watched from node 2. Kill
    node 0 (the world server's and shard 0's) or node 1 (shard 1's): every NPC answers a fresh
    observation within 2 s, and both shards end with status 0."""
    npcs = 16
    shards = [_shard(k, 2, npcs, cluster.url, tmp_path) for k in range(2)]
    try:
        async with Bus(BusConfig(url=cluster.urls[2], name="watch")) as bus:
            watch = await ActionWatch(npcs).start(bus)
            await until(lambda: (watch.counts() > 20).all(), 120,
                        lambda: f"every NPC acting: {watch.counts()}")
            killed_at = time.monotonic()
            cluster.kill(node)
            await until(lambda: not np.isnan(watch.first_fresh_after(killed_at)).any(), 10,
                        lambda: f"every NPC acting again: {watch.first_fresh_after(killed_at) - killed_at}")
            back_s = watch.first_fresh_after(killed_at) - killed_at
            assert back_s.max() < 2.0, back_s
            counts = watch.counts()  # and goes on acting (how fast, under this load, is the benchmark's)
            await until(lambda: (watch.counts() > counts).all(), 5, "every NPC acting on")
    finally:
        for proc in shards:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        statuses = [await asyncio.to_thread(proc.wait, 60) for proc in shards]
    logs = [(tmp_path / f"shard{k}.log").read_text(errors="replace")[-2000:] for k in range(2)]
    assert statuses == [0, 0], logs
    head = json.loads((tmp_path / "shard0" / "summary.json").read_text())
    assert head["failed"] == [] and len(head["npcs"]) == npcs
    assert all(n["ticks"] > 0 for n in head["npcs"].values())
    other = json.loads((tmp_path / "shard1" / "summary.json").read_text())
    assert other["world_ticks"] is None and sorted(map(int, other["npcs"])) == list(range(1, npcs, 2))
