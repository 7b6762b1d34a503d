"""Replays through the viewer: what was recorded is what is shown, pixel for pixel."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402

from world.core import GridWorld  # noqa: E402
from world.draw import WINDOW, Drawer, ViewState  # noqa: E402
from world.replay import ReplayWriter  # noqa: E402
from world.stages import stage_config  # noqa: E402
from world.viewer_app import ReplaySource  # noqa: E402

REGIONS = ["food", "hazard", "collision", "math", "social", "energy"]


def test_replay_round_trip_through_the_viewer(tmp_path: Path) -> None:
    world = GridWorld(stage_config(5), seed=3)
    world.reset(seed=3)
    rng = np.random.default_rng(3)
    writer = ReplayWriter(5, "full", regions=REGIONS)
    originals = []
    for _ in range(8):
        actions = rng.integers(0, 7, (1, world.num_npcs))
        world.step(actions)
        frame = world.frame(0)
        frame["waves"] = rng.random((world.num_npcs, 6)).astype(np.float32)
        frame["overrides"] = rng.random(world.num_npcs) > 0.5
        frame["actions"] = actions[0].astype(np.int8)
        writer.add(frame, waves=frame["waves"], overrides=frame["overrides"], actions=frame["actions"])
        originals.append(frame)
    source = ReplaySource(writer.save(tmp_path / "full.npz"))
    assert source.regions == REGIONS and source.status() == ""
    pygame.display.init()
    live, replayed = pygame.Surface(WINDOW), pygame.Surface(WINDOW)
    drawer_a, drawer_b = Drawer(REGIONS), Drawer(REGIONS)
    state = ViewState(selected=3)
    for original in originals:
        frame = source.next_frame()
        assert frame is not None
        for key, value in original.items():
            np.testing.assert_array_equal(frame[key], value, err_msg=key)
        drawer_a.draw(live, original, state)
        drawer_b.draw(replayed, frame, state)
        assert pygame.image.tobytes(live, "RGB") == pygame.image.tobytes(replayed, "RGB")
    assert source.done and source.next_frame() is None
    source.seek(2)
    assert int(source.next_frame()["t"]) == int(originals[2]["t"])
