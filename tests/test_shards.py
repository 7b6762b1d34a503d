"""Shards of the live organism: the partition k/n, bad specs, and two shards making one organism."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from agents.organism import Organism, OrganismConfig, format_summary
from agents.shard import Shard, parse_shard
from agents.supervisor import State
from nervous import subjects
from nervous.bus import BusError, server_urls
from nervous.messages import Allocation
from nervous.server import EmbeddedServer
from tests.live import organism_config, until

URL = "nats://127.0.0.1:4222"


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("total", [1, 7, 16])
def test_shards_partition_the_npcs(n: int, total: int) -> None:
    """Every NPC falls to exactly one shard, the one its id is congruent to."""
    parts = [Shard(k, n).npcs(total) for k in range(n)]
    assert sorted(i for part in parts for i in part) == list(range(total))
    for k, part in enumerate(parts):
        assert all(i % n == k for i in part)


def test_parse_shard_reads_k_of_n() -> None:
    assert parse_shard("1/3", URL) == Shard(1, 3)
    assert parse_shard(" 0 / 1 ") == Shard(0, 1)
    assert parse_shard("0/1").head and not parse_shard("2/3", URL).head


@pytest.mark.parametrize(("spec", "url", "says"), [
    ("2/2", URL, "k must be in 0..n-1"),
    ("3/2", URL, "k must be in 0..n-1"),
    ("0/0", URL, "n must be >= 1"),
    ("-1/2", URL, "must be k/n"),
    ("1", URL, "must be k/n"),
    ("a/b", URL, "must be k/n"),
    ("1/2/3", URL, "must be k/n"),
    ("1/2", None, "give its url"),
    ("0/2", "", "give its url"),
])
def test_bad_shard_specs_name_the_field(spec: str, url: str | None, says: str) -> None:
    with pytest.raises(ValueError, match="runtime.organism.shard") as info:
        parse_shard(spec, url)
    assert says in str(info.value)
    with pytest.raises(ValueError, match=says):
        OrganismConfig(npcs=4, shard=spec, bus_url=url)


def test_a_shard_without_npcs_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shard='3/4': no NPC of 2"):
        OrganismConfig(npcs=2, shard="3/4", bus_url=URL)


@pytest.mark.parametrize("argv", [["--shard", "2/2", "--bus-url", URL], ["--shard", "0/2"]])
def test_cli_bad_shard_is_one_error_line_and_exit_2(argv: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "agents.organism", "--run-dir", str(tmp_path), *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "runtime.organism.shard" in errors[0]
    assert not (tmp_path / "summary.json").exists()


def test_a_shard_starts_on_its_own_node_and_fails_over_along_the_rest() -> None:
    urls = "nats://a:1,nats://b:2,nats://c:3"
    assert Shard(0, 2).bus_url_for(urls) == urls
    assert Shard(1, 2).bus_url_for(urls) == "nats://b:2,nats://c:3,nats://a:1"
    assert Shard(4, 5).bus_url_for(urls) == "nats://b:2,nats://c:3,nats://a:1"  # 4 mod 3 nodes
    assert Shard(1, 2).bus_url_for(URL) == URL
    assert server_urls(" nats://a:1 , nats://b:2,") == ["nats://a:1", "nats://b:2"]
    with pytest.raises(BusError, match="names no server"):
        server_urls(" , ")


async def test_two_shards_on_one_bus_are_one_organism(tmp_path: Path,
                                                      nats_server: EmbeddedServer) -> None:
    """Shard 0 runs the world for all 5 NPCs, shard 1 runs none; every NPC acts in that one world, and an
    allocation reaches the shard of its NPC without being refused by the other."""
    def config(k: int) -> OrganismConfig:
        base = organism_config(tmp_path / f"shard{k}", 5)
        return dataclasses.replace(base, shard=f"{k}/2", bus_url=nats_server.url, fork_standby=False,
                                   run="test-shards")

    async with Organism(config(0)) as head, Organism(config(1)) as other:
        assert head.world is not None and other.world is None
        assert head.world.config.n_npcs == 5
        assert (head.config.run, other.config.run) == ("test-shards", "test-shards-shard1")  # own cgroups
        assert config(1).run == "test-shards"  # the caller's config is left as it was
        assert set(head.supervisor.children) == {"forkserver", "npc-0", "npc-2", "npc-4"}
        assert set(other.supervisor.children) == {"forkserver", "npc-1", "npc-3"}
        world = head.world
        runs = [asyncio.create_task(org.run(0)) for org in (head, other)]
        try:
            await until(lambda: (world.acted > 3).all(), 60, lambda: f"every NPC acting: {world.acted}")
            await head.bus.publish(subjects.governor_allocate(), Allocation(
                npc=3, tick=0, tick_rate=20, cpu_quota=40.0, gates={}, llm_priority=0))
            npc3 = other.supervisor.children["npc-3"]
            await until(lambda: npc3.spec.cpu_quota == 40.0, 5, "quota on npc-3")
        finally:
            head.stop.set()
            other.stop.set()
            summaries = await asyncio.wait_for(asyncio.gather(*runs), 30)
    head_summary, other_summary = summaries
    assert head.supervisor.bad_allocations == 0 and other.supervisor.bad_allocations == 0
    assert set(head_summary["npcs"]) == set(range(5))  # the world's columns for every NPC
    assert all(head_summary["npcs"][i]["ticks"] > 3 for i in range(5))
    assert [head_summary["npcs"][i]["state"] for i in (1, 3)] == ["REMOTE", "REMOTE"]
    assert [head_summary["npcs"][i]["state"] for i in (0, 2, 4)] == [State.STOPPED] * 3
    assert other_summary["world_ticks"] is None and set(other_summary["npcs"]) == {1, 3}
    assert all(n["state"] == State.STOPPED for n in other_summary["npcs"].values())
    assert "shard 1/2" in format_summary(other_summary)
    assert len(format_summary(head_summary).splitlines()) == 3 + 5


def test_the_start_line_says_which_share_of_the_npcs_a_shard_runs() -> None:
    from train.modes import npc_processes

    assert npc_processes(OrganismConfig(npcs=5)) == "5 NPC processes"
    head = npc_processes(OrganismConfig(npcs=5, shard="0/2", bus_url=URL))
    assert head == "shard 0/2: 3 of 5 NPC processes, the world server and services"
    other = npc_processes(OrganismConfig(npcs=5, shard="1/2", bus_url=URL))
    assert other == "shard 1/2: 2 of 5 NPC processes"
