"""Viewer drawing speed: frames per second for a stage-5 world (64x64, 32 NPCs) in software rendering.

Draws recorded frames of a random-action episode with waves, overrides and signals on every
NPC (the busiest picture) onto the dummy video driver's display surface, flipping each frame, and
prints one JSON object: {"cores", "fps", "npcs", "grid", "live_feed_slowdown_pct"}. The issue's
targets: >= 60 fps, and a training loop slowed by <= 5 % by the live frame feed.

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
                      "live_feed_slowdown_pct": round(live_feed_slowdown_pct(), 2)}))


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
