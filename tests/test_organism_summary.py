"""The live organism's summary table: the cgroup line once, deaths, dead NPCs marked DEAD."""

from __future__ import annotations

from typing import Any

from agents.organism import format_summary


def _npc(lifeforce: float, alive: bool, deaths: int, state: str = "STOPPED") -> dict[str, Any]:
    return {"ticks": 100, "missed": 1, "late": 0, "cpu_s": 0.5, "lifeforce": lifeforce, "alive": alive,
            "deaths": deaths, "restarts": 0, "state": state}


SUMMARY: dict[str, Any] = {
    "cgroups": "cgroups: none (no permission); NPCs run UNCAPPED, CPU quotas are not enforced",
    "world_ticks": 101, "spawn_all_s": 0.25, "missed_tick_fraction": 0.01,
    "action_latency_p50_ms": 1.5, "action_latency_p99_ms": 4.0,
    "npcs": {0: _npc(0.734, True, 0), 1: _npc(0.0, False, 1), 2: _npc(0.5, True, 2),
             3: _npc(0.0, False, 1, state="FATAL")},
}


def test_the_table_marks_dead_npcs_counts_deaths_and_names_the_cgroups_once():
    lines = format_summary(SUMMARY).splitlines()
    assert sum("cgroups" in line for line in lines) == 1 and lines[0] == SUMMARY["cgroups"]
    header, rows = lines[2].split(), [line.split() for line in lines[3:]]
    assert header == ["npc", "ticks", "missed", "late", "cpu_s", "lifeforce", "deaths", "restarts", "state"]
    assert len(rows) == 4 and all(len(row) == len(header) for row in rows)
    table = {int(row[0]): dict(zip(header, row, strict=True)) for row in rows}
    assert (table[0]["lifeforce"], table[0]["deaths"], table[0]["state"]) == ("0.734", "0", "STOPPED")
    assert (table[1]["lifeforce"], table[1]["deaths"], table[1]["state"]) == ("dead", "1", "DEAD")
    assert (table[2]["deaths"], table[2]["state"]) == ("2", "STOPPED")  # died twice, respawned, alive now
    assert (table[3]["lifeforce"], table[3]["state"]) == ("dead", "FATAL")  # a process that never ran


def test_a_summary_without_the_alive_flag_reads_death_from_lifeforce():
    old = {**SUMMARY, "npcs": {0: {k: v for k, v in _npc(0.0, False, 1).items() if k != "alive"}}}
    assert format_summary(old).splitlines()[3].split()[-1] == "DEAD"


def test_a_live_cortex_adds_one_line_of_its_counters_above_the_table():
    cortex = {"escalations": 12.0, "planned": 9.0, "plans_done": 6.0, "plans_invalid": 3.0,
              "plans_invalid_at_start": 1.0, "stale_answers": 2.0, "discarded": 1.0,
              "latency_p50_ms": 3.25, "latency_p99_ms": 41.0}
    lines = format_summary({**SUMMARY, "cortex": cortex}).splitlines()
    assert lines[2] == ("cortex: 12 escalations, 9 planned, 6 plans done, 3 invalid (1 at start), 2 stale, "
                        "1 discarded, latency p50 3.2 ms p99 41.0 ms")
    assert lines[3].split()[0] == "npc" and len(lines) == 4 + 4
