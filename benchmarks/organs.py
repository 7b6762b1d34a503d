"""Organs benchmark: ``python -m benchmarks.organs`` prints one JSON object.

Keys: cores; vision_accuracy_clear / _night / _fog (and _rain): per-cell accuracy of the shipped
vision weights on the held-out windows (12 worlds never trained on, 288 windows of 15x15 cells per
sky); then ``python -m organs.host --organs vision`` as its own process on an embedded nats-server,
asked over the bus: vision_load_s (median of 3 cold requests: the answer to a request that finds the
organ unloaded - worker start, torch import, weights, one detect), vision_detect_p50_ms / _p99_ms
(500 requests to the loaded organ, one at a time, bus round trip included), rss_loaded_mib (the host
process and its worker while loaded) and rss_unloaded_mib (the host after the idle unload, the worst
of 3; rss_base_mib: before the first load). The cortex's stage-4 success keys come with the planner
wiring.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import Heartbeat, OrganEvent, OrganState, VisionReply, VisionRequest
from nervous.server import EmbeddedServer
from organs.host.memory import tree_rss_bytes
from organs.vision.frames import label_grid, render, window_labels, window_pixels
from world.core import GridWorld
from world.stages import stage_config

COLD_LOADS = 3
DETECTS = 500
UNLOAD_AFTER_S = 1.0
MIB = 1 << 20


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


def main() -> dict[str, Any]:
    """Every key of the benchmark."""
    out: dict[str, Any] = {"cores": os.cpu_count() or 1}
    out.update(asyncio.run(served()))  # first: before this process has torch's threads around
    out.update(accuracy())
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
