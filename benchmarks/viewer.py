"""Viewer drawing speed: frames per second for a stage-5 world (64x64, 32 NPCs) in software rendering.

Draws recorded frames of a random-action episode with waves, overrides and signals on every
NPC (the busiest picture) onto the dummy video driver's display surface, flipping each frame, and
prints one JSON object: {"cores", "fps", "npcs", "grid", "live_feed_slowdown_pct", "fps_trails",
"trails_poll_ms", "trails_events"}. The issue's targets: >= 60 fps, and a training loop slowed by <= 5 %
by the live frame feed. ``fps_trails``: the same drawing with the selected NPC's escalation list taken
from a ``TrailPanel`` each frame, on a SQLite store of ``trails_events`` escalations that a writer
keeps growing meanwhile; ``trails_poll_ms``: the panel thread's read of one NPC's last 5 (median).

    python -m benchmarks.viewer [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402

from world.core import GridWorld  # noqa: E402
from world.draw import WINDOW, Drawer, ViewState  # noqa: E402
from world.stages import stage_config  # noqa: E402

REGIONS = ["food", "hazard", "collision", "math", "social", "energy"]


def frames(count: int = 200, seed: int = 0) -> list[dict]:
    """Frames of a random stage-5 episode with random waves and overrides."""
    world = GridWorld(stage_config(5), seed=seed)
    world.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        world.step(rng.integers(0, 7, (1, world.num_npcs)))
        frame = world.frame(0)
        shape = (world.num_npcs, len(REGIONS))
        frame["waves"] = rng.random(shape) * (rng.random(shape) > 0.5)
        frame["overrides"] = rng.random(world.num_npcs) > 0.8
        out.append(frame)
    return out


def main() -> None:
    """Measure and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    recorded = frames()
    pygame.display.init()
    surface = pygame.display.set_mode(WINDOW)
    drawer = Drawer(REGIONS)
    state = ViewState(env="dev", selected=0)
    history = np.stack([f["waves"][0] for f in recorded[:120]])
    for frame in recorded[:20]:  # warm the caches
        drawer.draw(surface, frame, state, history)
    drawn, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        drawer.draw(surface, recorded[drawn % len(recorded)], state, history)
        pygame.display.flip()
        drawn += 1
    fps = drawn / (time.perf_counter() - start)
    print(json.dumps({"cores": os.cpu_count(), "fps": round(fps, 1), "npcs": len(recorded[0]["alive"]),
                      "grid": list(recorded[0]["tiles"].shape),
                      "live_feed_slowdown_pct": round(live_feed_slowdown_pct(), 2),
                      **trails_figures(recorded, surface, drawer, history, args.seconds)}))


def trails_figures(recorded: list[dict], surface: pygame.Surface, drawer: Drawer, history: np.ndarray,
                   seconds: float, events: int = 20_000) -> dict[str, float]:
    """Frames per second with the selected NPC's trail list drawn from a ``TrailPanel`` while a writer
    adds escalations to its store, and the median time of the panel's read of one NPC's last 5."""
    import tempfile
    import threading

    from nervous.messages import Region, TrailEvent, TrailKind
    from organs.trails.panel import TrailPanel
    from organs.trails.store import open_store

    def batch(start: int, n: int) -> list[TrailEvent]:
        return [TrailEvent(id=f"bench:{i}", run="bench", env="dev", npc=i % 32, tick=i,
                           kind=TrailKind.ESCALATION, region=Region.MATH, gate_open=True,
                           cortex_outcome="planned", latency_ms=3.0,
                           cortex_response='{"name": "go_to", "arguments": {}}')
                for i in range(start, start + n)]

    with tempfile.TemporaryDirectory() as folder:
        location = os.path.join(folder, "trails.sqlite")
        with open_store(location) as store:
            store.insert(batch(0, events))
        with open_store(location, readonly=True) as reader:
            polls = []
            for _ in range(50):
                begin = time.perf_counter()
                reader.last(npc=int(np.random.default_rng(len(polls)).integers(32)), n=5, kind="escalation")
                polls.append(time.perf_counter() - begin)
        stop = threading.Event()

        def write() -> None:  # the live trail writer beside the viewer: 200 events every 50 ms
            with open_store(location) as store:
                added = events
                while not stop.wait(0.05):
                    store.insert(batch(added, 200))
                    added += 200

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        panel = TrailPanel(location, interval_s=1.0)
        state = ViewState(env="dev", selected=0)
        try:
            drawn, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                state.selected = drawn // 30 % 32  # a new NPC each 30 frames: the panel reads at once
                state.trail_lines = panel.lines(state.selected)
                drawer.draw(surface, recorded[drawn % len(recorded)], state, history)
                pygame.display.flip()
                drawn += 1
            fps = drawn / (time.perf_counter() - start)
        finally:
            panel.close()
            stop.set()
            writer.join(5.0)
    return {"fps_trails": round(fps, 1), "trails_poll_ms": round(1000 * float(np.median(polls)), 3),
            "trails_events": events}


def live_feed_slowdown_pct(steps: int = 6000, repeats: int = 3) -> float:
    """How much a training-style loop (a stage-3 batch stepping) slows with `viewer=live`'s frame feed
    on its own embedded bus, in percent (the issue's limit: 5)."""
    from train.live_feed import FramePublisher

    world = GridWorld(stage_config(3), num_envs=2, seed=0)
    actions = np.zeros((2, world.num_npcs), dtype=np.int64)

    def loop(feed: FramePublisher | None) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            world.step(actions)
            if feed is not None:
                feed.maybe_publish(world)
        return time.perf_counter() - start

    with FramePublisher(run="bench-feed") as feed:  # as viewer=live builds it (default fps)
        loop(None)  # warm-up
        bare = min(loop(None) for _ in range(repeats))
        fed = min(loop(feed) for _ in range(repeats))
    return 100.0 * (fed / bare - 1.0)


if __name__ == "__main__":
    main()
