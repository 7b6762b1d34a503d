"""Live governor benchmark: ``python -m benchmarks.governor_live [--npcs 64] [--duration 40]``, one JSON.

Runs the live organism (one OS process and cgroup per NPC, the real-time 20 Hz world clock, the
embedded nats-server) at stage 5 and measures, over a window that follows a warm-up:

- ``missed_tick_fraction``: brain calls due (at each NPC's commanded tick rate) that the world did
  not get in time, over the brain calls due;
- ``action_latency_p99_ms``: from the world publishing an observation to receiving its action, over
  the actions in time for their tick (every action is a brain call: the nerves run in the world
  server); ``action_latency_p99_ms_with_late``: late actions too (up to ``OBS_TIMES`` ticks late);
- ``return``: world reward per NPC per episode's worth of ticks (``max_steps``, 400 at stage 5): the
  reward of every NPC summed over the window, divided by the NPCs and by the window's ticks over
  ``max_steps`` (episodes restart and NPCs respawn inside the window, so whole episodes are not cut
  out of it);
- ``cpu_s_per_npc_min``: CPU seconds of the NPCs' cgroups per NPC-minute (``..._with_governor``
  adds the governor process's); ``observation_cpu_us``: the NPCs' CPU per observation the world sent
  them (an NPC is woken only at its brain calls); ``cores``: cores used by the NPCs, the governor,
  this process (world server with every NPC's cells and nerves, and supervisor) and the nats-server;
- ``wakeups_per_tick_p99`` and ``_max``: NPCs woken at one world tick (the burst the machine must
  answer inside the tick; brain ticks are staggered over each rate's period, ``governor.runtime``);
- ``brain_calls_per_npc_s``: what the NPCs sent; ``observations_per_npc_s``: their wake-ups;
  ``reflexes_per_npc_s``: moves the world's nerves made between brain calls; ``throttled_period_fraction``:
  CFS periods in which an NPC's quota throttled it, over its periods with work;
- with a governor process, ``decision_latency_p99_ms``: from the governor taking the NPC states in
  for a decision to the last allocation of it handed to the bus (the governor's own clock, its
  ``decision latency`` log line; the wait for its next 2 Hz tick is not in it).

``run_live64`` runs 64 NPCs with the ``fixed`` governor - no governor process: every NPC at 20 Hz
with a full quota, today's organism - and with the ``learned`` one (its ``--checkpoint``, or one
trained first as ``benchmarks.governor`` trains its stage-2 governor; ``cpu_budget``
4 cores by default: 64 NPCs at the 5 % minimum quota need 3.2, and quotas are caps, not
reservations; ``calls_budget`` ``CALLS_BUDGET`` brain calls per second for all NPCs, ``--calls-budget``),
one after the other on the same machine; keys ``live64_{fixed,learned}_...`` (``live{N}_`` with
``--npcs N``) and ``live_decision_latency_p99_ms``. The calls budget is what lets the learned governor
hold more NPCs than fixed: at stage 5 the NPCs, born together, get hungry together, and the network
sends nearly all of them to 20 Hz at once (96 NPCs: the fixed governor's load, which 2 cores do not
hold); within 960 calls/s the hungry crowd runs at 10 Hz, the neediest at 20. 960 (48 wake-ups a
tick) is three quarters of what 64 NPCs at 20 Hz ask, which 2 idle cores hold at 0.06 % missed.
``observation_cpu`` measures the NPCs' CPU per observation at fixed tick rates without a governor
(``--observation-cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.organism import Organism, OrganismConfig
from agents.supervisor import SupervisorConfig
from governor.config import GovernorConfig
from world import stage_config

#: The stage-2 learned governor trained in-process (``python -m train +experiment=governor``).
#: Seconds of silence after which the benchmark's supervisor takes a child for hung.
HANG_TIMEOUT_S = 15.0
#: The learned governor's calls budget (``governor.calls_budget``, brain calls/s for all NPCs) on the 2-core
#: machine.
CALLS_BUDGET = 960.0
_DECISION_LOG = re.compile(r"decision latency p50 ([\d.na]+) ms p99 ([\d.na]+) ms over (\d+) decisions")


async def _until(check: Any, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"benchmark: {what} not reached in {timeout:g} s")
        await asyncio.sleep(0.05)


def _proc_cpu_s(pid: int | None) -> float:
    """CPU seconds of a process so far (0 when it is gone or unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(org: Organism) -> dict[str, Any]:
    """CPU seconds so far: per NPC cgroup, the governor's, this process's and the nats-server's."""
    sup = org.supervisor
    assert sup is not None
    npcs = np.array([sup.cgroups.cpu_seconds(f"npc-{i}") for i in range(org.config.npcs)])
    governor = sup.cgroups.cpu_seconds("governor") if "governor" in sup.children else 0.0
    nats = _proc_cpu_s(org.server.pid if org.server is not None else None)
    return {"npcs": npcs, "governor": governor, "self": time.process_time(), "nats": nats}


def _throttled(org: Organism) -> tuple[int, int]:
    """(CFS periods, periods throttled) summed over the NPC groups (cgroup v1 or v2 cpu.stat; 0s if none)."""
    sup = org.supervisor
    assert sup is not None
    periods = throttled = 0
    for i in range(org.config.npcs):
        for d in getattr(sup.cgroups, "dirs", lambda _: [])(f"npc-{i}"):
            stat = d / "cpu.stat"
            if stat.exists():
                values = dict(line.split()[:2] for line in stat.read_text().splitlines() if line.strip())
                periods += int(values.get("nr_periods", 0))
                throttled += int(values.get("nr_throttled", 0))
                break
    return periods, throttled


def _snapshot(org: Organism) -> dict[str, Any]:
    w = org.world
    assert w is not None
    return {"t": time.monotonic(), "tick": w.tick, "n_lat": w.n_latency, "acted": int(w.acted.sum()),
            "missed": int(w.missed.sum()), "reflexes": int(w.reflexes.sum()), "reward": w.reward_sum.copy(),
            "observations": int(w.observations.sum()), "wakeups": w.wakeups_per_tick.copy(),
            "cpu": _cpu(org), "throttled": _throttled(org)}


def _decision_latency(log: Path) -> dict[str, float]:
    """The governor's last logged decision latency (p50, p99 ms and decisions); {} when none was logged."""
    if not log.exists():
        return {}
    found = _DECISION_LOG.findall(log.read_text(errors="replace"))
    if not found:
        return {}
    p50, p99, n = found[-1]
    return {"decision_latency_p50_ms": round(float(p50), 3), "decision_latency_p99_ms": round(float(p99), 3),
            "decisions": int(n)}


async def measure(config: OrganismConfig, warmup_s: float, duration_s: float) -> dict[str, Any]:
    """Run one organism; what it did in the window of duration_s seconds that follows warmup_s."""
    async with Organism(config) as org:
        world = org.world
        assert world is not None
        running = asyncio.create_task(org.run(0))
        try:
            await _until(lambda: org.spawn_all_s == org.spawn_all_s, 300, "every NPC heartbeating")
            await asyncio.sleep(warmup_s)
            a = _snapshot(org)
            await asyncio.sleep(duration_s)
            b = _snapshot(org)
            lat = world.latencies_ms(start=a["n_lat"])
            all_lat = world.latencies_ms(start=a["n_lat"], late=True)
        finally:
            org.stop.set()
            summary = await asyncio.wait_for(running, 120)
    n = config.npcs
    seconds, ticks = b["t"] - a["t"], b["tick"] - a["tick"]
    acted, missed = b["acted"] - a["acted"], b["missed"] - a["missed"]
    cpu = {k: b["cpu"][k] - a["cpu"][k] for k in a["cpu"]}
    npc_cpu = float(cpu["npcs"].sum())
    episodes = ticks / stage_config(config.stage).max_steps
    out: dict[str, Any] = {
        "npcs": n,
        "window_s": round(seconds, 1),
        "world_ticks_per_s": round(ticks / seconds, 2),
        "spawn_all_s": round(org.spawn_all_s, 2),
        "missed_tick_fraction": round(missed / max(1, acted + missed), 5),
        "action_latency_p50_ms": _pct(lat, 50),
        "action_latency_p99_ms": _pct(lat, 99),
        "action_latency_p99_ms_with_late": _pct(all_lat, 99),
        "return": round(float((b["reward"] - a["reward"]).sum()) / n / max(episodes, 1e-9), 4),
        "wakeups_per_tick_p99": _hist_pct(b["wakeups"] - a["wakeups"], 99),
        "wakeups_per_tick_max": int(np.flatnonzero(b["wakeups"] - a["wakeups"]).max(initial=0)),
        "brain_calls_per_npc_s": round(acted / n / seconds, 3),
        "observations_per_npc_s": round((b["observations"] - a["observations"]) / n / seconds, 3),
        "reflexes_per_npc_s": round((b["reflexes"] - a["reflexes"]) / n / seconds, 3),
        "cpu_s_per_npc_min": round(npc_cpu / (n * seconds / 60.0), 3),
        "observation_cpu_us": round(1e6 * npc_cpu / max(1, b["observations"] - a["observations"]), 1),
        "cores": {"npcs": round(npc_cpu / seconds, 3), "governor": round(cpu["governor"] / seconds, 3),
                  "organism_process": round(cpu["self"] / seconds, 3),
                  "nats_server": round(cpu["nats"] / seconds, 3)},
        "throttled_period_fraction": round((b["throttled"][1] - a["throttled"][1])
                                           / max(1, b["throttled"][0] - a["throttled"][0]), 4),
        "restarts": summary["restarts"],
        "bad_allocations": summary["bad_allocations"],
    }
    if config.governor is not None:
        out["cpu_s_per_npc_min_with_governor"] = round((npc_cpu + cpu["governor"]) / (n * seconds / 60.0), 3)
        out |= _decision_latency(Path(config.run_dir) / "logs" / "governor.log")
    return out


def _hist_pct(counts: np.ndarray, q: float) -> int:
    """The q-th percentile of a histogram (counts[k]: how often the value was k)."""
    total = int(counts.sum())
    return int(np.searchsorted(np.cumsum(counts), q / 100.0 * total)) if total else 0


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if len(values) else float("nan")


def live_config(npcs: int, run_dir: Path, name: str, governor: GovernorConfig | None = None,
                stage: int = 5, **changes: Any) -> OrganismConfig:
    """The organism of a benchmark run: npcs NPC processes at stage 5, fresh brains, 20 Hz to start;
    a child is taken for hung after ``HANG_TIMEOUT_S`` of silence (on a machine other people load, the
    supervisor's 3 s killed starved but healthy NPCs, and their restarts were all the run measured)."""
    changes.setdefault("supervisor", SupervisorConfig(heartbeat_timeout_s=HANG_TIMEOUT_S))
    return OrganismConfig(npcs=npcs, duration_s=0, stage=stage, run=f"bench-{name}",
                          run_dir=str(run_dir / name), governor=governor, **changes)


def train_stage2_governor(folder: Path) -> str:
    """A learned governor trained as ``benchmarks.governor`` trains its stage-2 one (about 40 s on 2 idle
    cores): its governor.pt in folder."""
    from benchmarks.governor import stage_run, train_learned

    args = argparse.Namespace(seed=1, train_ticks=2_000_000, checkpoint="")
    config = GovernorConfig(kind="learned")
    print(f"no --checkpoint: training a stage-2 governor into {folder}", file=sys.stderr, flush=True)
    path, _, _ = train_learned(stage_run(2, config, args), folder / "governor_stage2.pt")
    return str(path)


def run_live64(npcs: int = 64, duration_s: float = 40.0, warmup_s: float = 10.0,
               checkpoint: str = "", cpu_budget: float = 4.0, greedy: bool = True,
               stage: int = 5, repeats: int = 1, calls_budget: float = CALLS_BUDGET) -> dict[str, Any]:
    """64 NPCs (or npcs) live with the fixed governor and with the learned one: ``live64_...`` figures.

    With repeats > 1 the two alternate (fixed, learned, fixed, ...) and each figure is the median over
    the repeats; ``..._runs`` lists every run's missed-tick fraction and action latency p99."""
    if not checkpoint:
        checkpoint = train_stage2_governor(Path(tempfile.mkdtemp(prefix="governor-live-")))
    prefix = f"live{npcs}"
    learned = GovernorConfig(kind="learned", checkpoint=checkpoint, cpu_budget=cpu_budget, greedy=greedy,
                             calls_budget=calls_budget)
    out: dict[str, Any] = {"npcs": npcs, "stage": stage, "window_s": duration_s, "warmup_s": warmup_s,
                           "repeats": repeats, "learned_checkpoint": checkpoint,
                           "learned_cpu_budget": cpu_budget, "learned_calls_budget": calls_budget,
                           "learned_greedy": greedy}
    runs: dict[str, list[dict[str, Any]]] = {"fixed": [], "learned": []}
    with tempfile.TemporaryDirectory(prefix="bench-governor-live-") as tmp:
        for r in range(repeats):
            for kind, governor in (("fixed", None), ("learned", learned)):
                config = live_config(npcs, Path(tmp), f"{kind}-{r}", governor, stage)
                runs[kind].append(asyncio.run(measure(config, warmup_s, duration_s)))
    for kind, measured in runs.items():
        for key, value in measured[0].items():
            if key == "npcs":
                continue
            if isinstance(value, dict):
                value = {k: _median([m[key][k] for m in measured]) for k in value}
            elif isinstance(value, int | float):
                value = _median([m.get(key, float("nan")) for m in measured])
            out[f"{prefix}_{kind}_{key}"] = value
        out[f"{prefix}_{kind}_runs"] = [[m["missed_tick_fraction"], m["action_latency_p99_ms"]]
                                        for m in measured]
    out["live_decision_latency_p99_ms"] = out.get(f"{prefix}_learned_decision_latency_p99_ms", float("nan"))
    for kind in ("fixed", "learned"):  # what the organism's processes cost, the governor's included
        out[f"{prefix}_{kind}_cpu_s_per_npc_min_measured"] = out.get(
            f"{prefix}_{kind}_cpu_s_per_npc_min_with_governor", out[f"{prefix}_{kind}_cpu_s_per_npc_min"])
    return out


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 5)


def observation_cpu(npcs: int = 16, tick_rates: tuple[int, ...] = (20, 2), duration_s: float = 20.0,
                    warmup_s: float = 5.0, stage: int = 5) -> dict[str, Any]:
    """The NPCs' CPU per observation (us) at fixed tick rates without a governor, per rate."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-obs-cpu-") as tmp:
        for rate in tick_rates:
            config = live_config(npcs, Path(tmp), f"obs-{rate}hz", stage=stage, tick_rate=rate)
            m = asyncio.run(measure(config, warmup_s, duration_s))
            out[f"observation_cpu_us_{rate}hz"] = m["observation_cpu_us"]
            out[f"missed_tick_fraction_{rate}hz"] = m["missed_tick_fraction"]
            out[f"reflexes_per_npc_s_{rate}hz"] = m["reflexes_per_npc_s"]
    return out


def main() -> None:
    """Print one JSON object."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.governor_live",
                                description=__doc__.splitlines()[0])
    p.add_argument("--npcs", type=int, default=64)
    p.add_argument("--duration", type=float, default=40.0, help="seconds of each measured window")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds before each window")
    p.add_argument("--checkpoint", default="",
                   help="the learned governor's weights (default: train one on stage 2 first, about 40 s)")
    p.add_argument("--cpu-budget", type=float, default=4.0, help="the learned governor's CPU budget (cores)")
    p.add_argument("--calls-budget", type=float, default=CALLS_BUDGET,
                   help="the learned governor's brain calls per second for all NPCs (0: no limit)")
    p.add_argument("--sample", action="store_true", help="the learned governor samples (greedy=false)")
    p.add_argument("--repeats", type=int, default=1, help="fixed and learned runs, alternating; medians")
    p.add_argument("--observation-cpu", action="store_true",
                   help="only the NPCs' CPU per observation at 20 and 2 Hz (16 NPCs, no governor)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out: dict[str, Any] = {"cores": os.cpu_count()}
    if a.observation_cpu:
        out |= observation_cpu(duration_s=a.duration)
    else:
        out |= run_live64(a.npcs, a.duration, a.warmup, a.checkpoint, a.cpu_budget, greedy=not a.sample,
                          repeats=a.repeats, calls_budget=a.calls_budget)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
