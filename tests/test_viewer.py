"""The viewer window: keys and clicks via posted pygame events, screenshots, recordings, bad input."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from train.view import main, view  # noqa: E402
from world.core import GridWorld  # noqa: E402
from world.draw import ENV_BACKGROUND, WINDOW  # noqa: E402
from world.replay import ReplayWriter  # noqa: E402
from world.stages import stage_config  # noqa: E402
from world.viewer_app import ReplaySource, Viewer  # noqa: E402

REGIONS = ["food", "hazard", "collision", "math", "social", "energy"]
MESSAGE_RED = (120, 20, 20)


@pytest.fixture
def replay_path(tmp_path: Path) -> Path:
    """A 12-frame stage-0 replay with waves, overrides and actions."""
    world = GridWorld(stage_config(0), seed=1)
    world.reset(seed=1)
    rng = np.random.default_rng(1)
    writer = ReplayWriter(0, "meadow", regions=REGIONS, extra={"cells": ["smell", "hazard", "proximity",
                                                                          "math", "social", "battery"]})
    for _ in range(12):
        actions = rng.integers(0, 7, (1, world.num_npcs))
        world.step(actions)
        writer.add(world.frame(0), waves=rng.random((world.num_npcs, 6)).astype(np.float32),
                   overrides=rng.random(world.num_npcs) > 0.5, actions=actions[0])
    return writer.save(tmp_path / "episode.npz")


@pytest.fixture
def viewer(replay_path: Path):
    v = Viewer(ReplaySource(replay_path), env="staging", headless=True)
    yield v
    v.close()


def key(k: int, mod: int = 0) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k, mod=mod, unicode="", scancode=0))


def test_keys_pause_step_speed_follow_layers(viewer: Viewer) -> None:
    viewer.tick()
    assert viewer.source.index == 1
    key(pygame.K_SPACE)
    assert viewer.pump()
    assert viewer.state.paused
    viewer.tick()
    viewer.tick()
    assert viewer.source.index == 1  # paused: no progress
    key(pygame.K_PERIOD)
    viewer.pump()
    viewer.tick()
    viewer.tick()
    assert viewer.source.index == 2  # exactly one step
    key(pygame.K_LEFT)
    viewer.pump()
    assert viewer.source.index == 1 and int(viewer.frame["t"]) == 1
    speed = viewer.state.speed
    key(pygame.K_PLUS)
    key(pygame.K_PLUS)
    key(pygame.K_MINUS)
    viewer.pump()
    assert viewer.state.speed == 2 * speed
    key(pygame.K_f)
    key(pygame.K_TAB)
    key(pygame.K_2)
    key(pygame.K_3)
    viewer.pump()
    assert viewer.state.follow and viewer.state.selected == 1
    assert not viewer.state.layers["npcs"] and not viewer.state.layers["waves"]
    key(pygame.K_c)
    viewer.pump()
    assert viewer.state.scope_regions == {"food"}
    key(pygame.K_SPACE)
    viewer.pump()
    viewer.tick()
    assert viewer.source.index == 2
    key(pygame.K_ESCAPE)
    assert not viewer.pump()
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert not viewer.pump()


def test_click_selects_the_npc_and_shows_its_cells(viewer: Viewer) -> None:
    viewer.tick()
    frame = viewer.frame
    n = int(np.flatnonzero(frame["alive"])[-1])
    pos = tuple(int(v) for v in viewer.drawer.cell_centre(int(frame["npc_y"][n]), int(frame["npc_x"][n])))
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=pos, button=1))
    viewer.pump()
    assert viewer.state.selected == n
    viewer.tick()
    scope = viewer._scope()
    assert scope is not None and scope.shape == (2, len(REGIONS))
    legend = viewer.drawer.legend_rects["math"]
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=legend.center, button=1))
    viewer.pump()
    assert viewer.state.scope_regions == set(REGIONS) - {"math"}
    assert viewer.state.selected == n  # a legend click is not a selection


def test_screenshot_written_and_read_back(replay_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    assert view(replay=str(replay_path), env="prod", frames=5, screenshot=str(out)) == 0
    image = pygame.image.load(str(out))
    assert image.get_size() == WINDOW
    assert tuple(image.get_at((2, 2)))[:3] == ENV_BACKGROUND["prod"]


def test_record_gif_of_the_frames_shown(replay_path: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "episode.gif"
    assert main(["--replay", str(replay_path), "--frames", "6", "--record", str(out)]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 6 and gif.size == WINDOW


def test_replay_plays_to_its_end_headless(replay_path: Path, tmp_path: Path) -> None:
    source = ReplaySource(replay_path)
    viewer = Viewer(source, headless=True)
    try:
        assert viewer.run(frames=100) == 0
    finally:
        viewer.close()
    assert viewer.shown == 12 and source.done


@pytest.mark.parametrize("content", [None, b"not a zip", b"PK\x03\x04broken"])
def test_bad_replay_gives_a_message_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                content: bytes | None) -> None:
    bad = tmp_path / "bad.npz"
    if content is not None:
        bad.write_bytes(content)
    out = tmp_path / "shot.png"
    assert main(["--replay", str(bad), "--frames", "3", "--screenshot", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"replay {bad}" in err and "Traceback" not in err
    image = pygame.image.load(str(out))
    centre = (WINDOW[0] // 2 - 170, 8 + 320 - 9)
    assert tuple(image.get_at(centre))[:3] == MESSAGE_RED


BAD_ARGV = [["--frames", "0", "--replay", "x.npz"], [], ["--record", "/nonexistent/a.gif"]]


@pytest.mark.parametrize("argv", BAD_ARGV)
def test_bad_command_lines_answer_one_line(argv: list[str], capsys: pytest.CaptureFixture[str],
                                          replay_path: Path) -> None:
    if argv and argv[0] == "--record":
        argv = [*argv, "--replay", str(replay_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("viewer: ")


def test_record_suffix_is_checked(replay_path: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--replay", str(replay_path), "--record", str(tmp_path / "a.avi")]) == 1
    assert "suffix .avi" in capsys.readouterr().err


def test_the_readme_pictures_are_the_viewer_s_current_layout():
    """docs/ holds a screenshot and a GIF made by the viewer (docs/regenerate.sh); a new layout, new ones."""
    from pathlib import Path

    from PIL import Image

    docs = Path(__file__).resolve().parents[1] / "docs"
    readme = (docs.parent / "README.md").read_text()
    assert "](docs/viewer.png)" in readme and "](docs/run.gif)" in readme
    with Image.open(docs / "viewer.png") as shot:
        assert shot.size == WINDOW
    with Image.open(docs / "run.gif") as gif:
        assert gif.size == WINDOW and gif.n_frames >= 10
