"""Organs benchmark: ``python -m benchmarks.organs`` prints one JSON object.

Keys: cores; vision_accuracy_clear / _night / _fog (and _rain): per-cell accuracy of the shipped
vision weights on the held-out windows (12 worlds never trained on, 288 windows of 15x15 cells per
sky); then ``python -m organs.host --organs vision`` as its own process on an embedded nats-server,
asked over the bus: vision_load_s (median of 3 cold requests: the answer to a request that finds the
organ unloaded - worker start, torch import, weights, one detect), vision_detect_p50_ms / _p99_ms
(500 requests to the loaded organ, one at a time, bus round trip included), rss_loaded_mib (the host
process and its worker while loaded) and rss_unloaded_mib (the host after the idle unload, the worst
of 3; rss_base_mib: before the first load).

Stage 4 (locks), what vision adds to the cortex's plans: the scripted heuristic drives every NPC under
the heuristic governor (gates open on math collapses), with the cortex link (the nyx engine in-process),
STAGE4_EPISODES episodes at seed STAGE4_SEED, the same seeds for both runs, as ``benchmarks.cortex``
runs it: stage4_success_cortex / stage4_return_cortex with ``cortex.vision_gate=closed``;
stage4_success_cortex_vision / stage4_return_cortex_vision with ``open`` (every escalation first looks
through the vision organ, loaded in-process, each look charged ``per_organ_call``); the same keys
ending ``_vision_governed`` with ``governed`` (the heuristic governor opens an NPC's vision gate with its
math gate, ``governor.organ_gates``); ending ``_key`` and ``_vision_key``, closed and open with the key
cell's ``key_wanted`` at KEY_WANTED, so a door in view whose key the NPC does not know escalates too
(without it the math region collapses only once a key is known, and a key only vision could see never
triggers a look). ``--episodes N`` runs fewer (or more) episodes, ``--stage4-only`` skips the rest. With them:
escalations per 100 NPC ticks, plans done and invalid, mean outcome reward, deaths per NPC-episode and
the tools of the plans (``stage4_plan_tools``: how many of each) of both runs,
stage4_vision_calls (and per NPC-episode), stage4_vision_cells_per_call (cells of the seen map only
the look made known)
stage4_look_ms (one look: render, request, detect, merge; the mean over the run, the first load
included) and the wall seconds of both runs (1000 episodes: the difference is a few tenths of a
success point, and the success of 16,000 NPC-episodes has a standard error near 0.003).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from governor.compare import evaluate_governor
from governor.config import GovernorConfig
from governor.drivers import ScriptedDriver
from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.cells import CellBank, CellConfig
from nervous.config import NervousConfig
from nervous.messages import Heartbeat, OrganEvent, OrganState, VisionReply, VisionRequest
from nervous.server import EmbeddedServer
from organs.config import CortexConfig
from organs.cortex.backends import EngineBackend
from organs.cortex.tools import tool_name
from organs.escalation import Escalation, EscalationResult
from organs.host.memory import tree_rss_bytes
from organs.link import CortexLink
from organs.vision.frames import label_grid, render, window_labels, window_pixels
from world.core import GridWorld
from world.stages import stage_config

COLD_LOADS = 3
DETECTS = 500
UNLOAD_AFTER_S = 1.0
MIB = 1 << 20
STAGE4_EPISODES = 1000
STAGE4_SEED = 0
#: The key cell's confidence at a door whose key is unknown in the ``_key`` runs (>= 0.3 collapses).
KEY_WANTED = 0.5


def accuracy() -> dict[str, float]:
    """Per-cell accuracy of the shipped weights per sky on the held-out windows."""
    import torch

    from organs.vision import SHIPPED_WEIGHTS
    from organs.vision.model import load_weights
    from organs.vision.train import evaluate, heldout_windows

    torch.set_num_threads(1)
    report = evaluate(load_weights(SHIPPED_WEIGHTS), heldout_windows())
    return {f"vision_accuracy_{sky}": round(report[f"accuracy_{sky}"], 5)
            for sky in ("clear", "night", "fog", "rain")}


async def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def served() -> dict[str, float]:
    """Load time, detect latency and memory of the organ host as its own process."""
    frame = GridWorld(stage_config(4), seed=5).frame(0)
    x, y = int(frame["npc_x"][0]), int(frame["npc_y"][0])
    pixels = window_pixels(render(frame, "clear"), x, y).tobytes()
    truth = window_labels(label_grid(frame), x, y)
    subject = subjects.organ("vision", "detect")
    with EmbeddedServer() as server:
        async with Bus(BusConfig(url=server.url, name="bench")) as bus:
            events: list[OrganEvent] = []
            beats: list[Heartbeat] = []
            await bus.subscribe(subjects.organ_event("vision"), OrganEvent, lambda m, r: events.append(m))
            await bus.subscribe(subjects.organ_host_heartbeat(), Heartbeat, lambda m, r: beats.append(m))
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            proc = subprocess.Popen(
                [sys.executable, "-m", "organs.host", "--url", server.url, "--organs", "vision",
                 "--unload-after-s", str(UNLOAD_AFTER_S), "--heartbeat-s", "0.2"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                await _wait(lambda: beats, 30, "the organ host")
                await asyncio.sleep(0.5)
                base = tree_rss_bytes(proc.pid)
                loads, loaded, unloaded, latency = [], [], [], []
                ask = VisionRequest(npc=0, deadline_s=60, pixels=pixels)
                for round_ in range(COLD_LOADS):
                    t0 = time.perf_counter()
                    reply = await bus.request(subject, ask, VisionReply, timeout=60)
                    loads.append(time.perf_counter() - t0)
                    codes = np.frombuffer(reply.codes, np.uint8).reshape(truth.shape)
                    if (codes != truth).mean() > 0.03:
                        raise RuntimeError("the served organ answered wrongly")
                    loaded.append(tree_rss_bytes(proc.pid))
                    if round_ == 0:
                        for _ in range(DETECTS):
                            t0 = time.perf_counter()
                            await bus.request(subject, ask, VisionReply, timeout=10)
                            latency.append(time.perf_counter() - t0)
                    n = len(events)
                    await _wait(lambda n=n: any(e.state == OrganState.UNLOADED for e in events[n:]), 30,
                                "the idle unload")
                    unloaded.append(tree_rss_bytes(proc.pid))
            finally:
                proc.terminate()
                proc.wait(30)
    ms = np.array(latency) * 1000
    return {
        "vision_load_s": round(float(np.median(loads)), 3),
        "vision_detect_p50_ms": round(float(np.percentile(ms, 50)), 3),
        "vision_detect_p99_ms": round(float(np.percentile(ms, 99)), 3),
        "rss_loaded_mib": round(float(np.median(loaded)) / MIB, 1),
        "rss_unloaded_mib": round(max(unloaded) / MIB, 1),
        "rss_base_mib": round(base / MIB, 1),
    }


class CountingEngine(EngineBackend):
    """The nyx engine in-process, counting the tools of the plans it answers with."""

    def __init__(self, config: CortexConfig) -> None:
        super().__init__(config)
        self.tools: Counter[str] = Counter()

    def ask(self, escalations: list[Escalation]) -> list[EscalationResult]:
        """Each escalation answered by the engine, its tool counted."""
        results = super().ask(escalations)
        self.tools.update(tool_name(r.call) for r in results if r.call is not None)
        return results


def stage4_run(vision_gate: str, key_wanted: float = 0.0,
               episodes: int = STAGE4_EPISODES) -> tuple[dict[str, float], float, Counter[str]]:
    """Stage-4 episode means of the heuristic driver, heuristic governor and cortex link; its wall seconds
    and the tools of its plans (key_wanted: the key cell's, ``nervous.cells.key``)."""
    nervous = NervousConfig()
    nervous.cell = CellConfig(key_wanted=key_wanted)
    driver = ScriptedDriver(CellBank(nervous.cell), seed=STAGE4_SEED)
    config = CortexConfig(backend="engine", vision_gate=vision_gate)
    engine = CountingEngine(config)
    link = CortexLink(config, backend=engine, lifeforce=nervous.lifeforce)
    started = time.perf_counter()
    try:
        row = evaluate_governor(stage_config(4), driver, GovernorConfig(kind="heuristic"), nervous,
                                episodes=episodes, seed=STAGE4_SEED, escalator=link)
    finally:
        link.close()
    return row, time.perf_counter() - started, engine.tools


def stage4_figures(episodes: int = STAGE4_EPISODES) -> dict[str, float | int]:
    """What the vision organ adds to the cortex's plans on stage 4 (same seeds, vision closed then open),
    and what asking at doors whose key is unknown adds (``_key``: key_wanted, vision closed and open);
    ``_vision_governed``: the heuristic governor's vision gates (``governor.organ_gates``)."""
    import torch

    torch.set_num_threads(1)
    (plain, plain_s, plain_tools) = stage4_run("closed", episodes=episodes)
    (seeing, seeing_s, seeing_tools) = stage4_run("open", episodes=episodes)
    (wanting, _, wanting_tools) = stage4_run("closed", KEY_WANTED, episodes)
    (looking, looking_s, looking_tools) = stage4_run("open", KEY_WANTED, episodes)
    (governed, _, governed_tools) = stage4_run("governed", episodes=episodes)
    calls = seeing["cortex/vision_calls"]
    out: dict[str, float | int] = {"stage4_episodes": int(plain["episodes"]), "stage4_seed": STAGE4_SEED,
                                   "stage4_key_wanted": KEY_WANTED}
    arms = (("", plain, plain_tools), ("_vision", seeing, seeing_tools), ("_key", wanting, wanting_tools),
            ("_vision_key", looking, looking_tools), ("_vision_governed", governed, governed_tools))
    for suffix, row, tools in arms:
        out |= {f"stage4_success_cortex{suffix}": round(row["success"], 4),
                f"stage4_return_cortex{suffix}": round(row["return"], 4),
                f"stage4_escalations_per_100_ticks{suffix}": round(row["escalations_per_100_ticks"], 4),
                f"stage4_plans_done{suffix}": int(row["cortex/plans_done"]),
                f"stage4_plans_invalid{suffix}": int(row["cortex/plans_invalid"]),
                f"stage4_outcome_reward{suffix}": round(row.get("cortex/outcome_reward", 0.0), 4),
                f"stage4_deaths{suffix}": round(row["deaths"], 4),
                f"stage4_plan_tools{suffix}": dict(sorted(tools.items()))}
    out["stage4_vision_calls"] = int(calls)
    npc_episodes = seeing["episodes"] * stage_config(4).n_npcs
    out["stage4_vision_calls_per_npc_episode"] = round(calls / npc_episodes, 3)
    out["stage4_vision_refused"] = int(seeing["cortex/vision_refused"])
    out["stage4_vision_cells_per_call"] = round(seeing["cortex/vision_cells"] / max(calls, 1), 2)
    out["stage4_look_ms"] = round(seeing.get("cortex/vision_look_ms", 0.0), 2)
    out["stage4_wall_s"] = round(plain_s, 1)
    out["stage4_wall_s_vision"] = round(seeing_s, 1)
    key_calls = looking["cortex/vision_calls"]
    out["stage4_vision_calls_key"] = int(key_calls)
    out["stage4_vision_calls_per_npc_episode_key"] = round(key_calls / npc_episodes, 3)
    out["stage4_vision_cells_per_call_key"] = round(looking["cortex/vision_cells"] / max(key_calls, 1), 2)
    out["stage4_wall_s_vision_key"] = round(looking_s, 1)
    out["stage4_vision_calls_governed"] = int(governed["cortex/vision_calls"])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Every key of the benchmark (``--stage4-only``: only the stage-4 runs, while exploring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.organs", description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=STAGE4_EPISODES, help="stage-4 episodes per run")
    parser.add_argument("--stage4-only", action="store_true", help="skip the organ host and accuracy figures")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes {args.episodes}: must be >= 1")
    out: dict[str, Any] = {"cores": os.cpu_count() or 1}
    if not args.stage4_only:
        out.update(asyncio.run(served()))  # first: before this process has torch's threads around
        out.update(accuracy())
    out.update(stage4_figures(args.episodes))
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
