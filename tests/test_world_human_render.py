"""PettingZoo's human render mode: the viewer's window, drawn each step, closed by close(), headless."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from world import parallel_env  # noqa: E402
from world.draw import WINDOW, empty_tile_colour  # noqa: E402
from world.tiles import Action  # noqa: E402
from world.viewer_app import PushedFrames, Viewer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _pixels() -> np.ndarray:
    """The window's pixels, HWC."""
    return pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1)


def _colours(pixels: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}


def test_human_mode_draws_every_step_in_the_viewer_window_and_close_closes_it():
    env = parallel_env(stage=2, render_mode="human")
    env.reset(seed=0)
    assert pygame.display.get_init() and pygame.display.get_surface().get_size() == WINDOW
    first = _pixels()
    colours = _colours(first)
    assert empty_tile_colour() in colours and len(colours) > 20  # the grid, its shapes, the panel's text
    for _ in range(5):
        assert env.step({agent: Action.EAST for agent in env.agents})[0]
        assert env.render() is None
    assert not np.array_equal(first, _pixels())  # NPCs moved, the clock advanced: each step was drawn
    env.close()
    assert not pygame.display.get_init()
    env.close()  # twice is harmless


def test_closing_the_window_stops_drawing_until_the_next_reset():
    env = parallel_env(stage=0, render_mode="human")
    env.reset(seed=1)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    env.step({})
    assert not pygame.display.get_init()
    env.step({})
    assert not pygame.display.get_init()  # it does not pop up again on the next step
    env.reset(seed=1)
    assert pygame.display.get_init() and pygame.display.get_surface().get_size() == WINDOW
    env.close()


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="DISPLAY decides only on X11 / Wayland")
def test_without_a_display_human_mode_says_so_at_once(monkeypatch):
    for name in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=r"render_mode='human': no display .*SDL_VIDEODRIVER=dummy"):
        parallel_env(stage=0, render_mode="human")
    assert parallel_env(stage=0, render_mode="rgb_array").reset(seed=0)  # rgb_array needs no display


def test_human_mode_prints_no_pygame_banner():
    env = {k: v for k, v in os.environ.items() if k != "PYGAME_HIDE_SUPPORT_PROMPT"}
    env.update(SDL_VIDEODRIVER="dummy", PYTHONPATH=str(ROOT))
    code = ("from world import parallel_env\n"
            "env = parallel_env(stage=0, render_mode='human')\n"
            "env.reset(seed=0)\nenv.step({})\nenv.close()\nprint('drawn')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "drawn\n" and "pygame" not in done.stderr.lower()


def test_space_holds_the_stepping_caller_until_space_again():
    env = parallel_env(stage=0)
    env.reset(seed=0)
    viewer = Viewer(PushedFrames("env"), speed=1000.0, headless=False)  # as with a display
    try:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE))
        release = threading.Timer(0.3, lambda: pygame.event.post(
            pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE)))
        release.start()
        started = time.monotonic()
        assert viewer.show(env.core.frame(0))
        assert time.monotonic() - started >= 0.25 and not viewer.state.paused
        release.join()
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_PERIOD))  # one frame, then paused
        assert viewer.show(env.core.frame(0)) and viewer.state.paused and viewer.shown == 2
    finally:
        viewer.close()
