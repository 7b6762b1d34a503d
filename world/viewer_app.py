"""The viewer window: plays frames from a source, handles keys and the mouse, screenshots and records.

Sources (`FrameSource`) hand over frames; this module holds the replay source, the bus-facing live
source lives in ``train.view`` (``world`` knows nothing of the bus). PettingZoo's human render mode
(``world.env``) instead hands each frame to `Viewer.show` as the env steps (`PushedFrames`).

Keys: space pause, ``.`` or right arrow single step (pauses), left arrow one back (replays),
``+`` faster, ``-`` slower, ``f`` follow the selected NPC (zoomed), tab / shift-tab next / previous
NPC, ``1``-``6`` toggle the layers tiles, npcs, waves, signals, overrides, sky; ``c`` cycles the
oscilloscope through one region at a time; ``home`` restarts a replay; ``esc`` / ``q`` quits. Click
an NPC (on the grid or its panel row) to select it and see its cells and its last escalations (from
the decision trails given as ``trails``, a ``TrailLines``; without one the panel says so in a line);
click a legend entry of the oscilloscope to show or hide that region.

Headless (``SDL_VIDEODRIVER=dummy``) the viewer does not wait between frames: each loop shows the
next frame, so ``frames=N`` renders N frames as fast as it can.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's banner stays out of the user's terminal
import pygame  # noqa: E402

from world.draw import LAYERS, SCOPE_FRAMES, WINDOW, Drawer, ViewState  # noqa: E402
from world.recording import Recorder, RecordError, save_screenshot  # noqa: E402
from world.replay import ReplayError, load_replay  # noqa: E402

MIN_SPEED, MAX_SPEED = 0.5, 240.0
_LAYER_KEYS = {getattr(pygame, f"K_{i + 1}"): name for i, name in enumerate(LAYERS)}


class FrameSource(Protocol):
    """Where frames come from: a replay file or the bus."""

    name: str
    regions: list[str]
    cells: list[str]
    done: bool  # nothing more will come (end of replay, failed connection, gave up waiting)

    def next_frame(self) -> dict[str, Any] | None:
        """The next frame to show, or None when there is no new one."""

    def status(self) -> str:
        """A problem to show on screen and in the terminal ('' when all is well)."""

    def close(self) -> None:
        """Release what the source holds."""


class TrailLines(Protocol):
    """The selected NPC's last escalations from the decision trails (``organs.trails.panel.TrailPanel``)."""

    def lines(self, npc: int) -> list[str]:
        """The panel's lines for NPC npc now, without waiting on the store."""

    def close(self) -> None:
        """Release what it holds."""


#: The panel's line when the viewer was given no trail store.
NO_TRAILS = "no decision trails (start the viewer with --trails PATH)"


class ReplaySource:
    """Frames of a replay file, in order; seekable."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.error = ""
        self.done = False
        self.index = 0
        try:
            self.replay = load_replay(self.path)
        except ReplayError as error:
            self.replay, self.error, self.done = None, str(error), True
        extra = self.replay.extra if self.replay is not None else {}
        self.regions = list(self.replay.regions) if self.replay is not None else []
        self.cells = [str(c) for c in extra.get("cells", [])]
        self.name = f"replay {self.path.name}"

    def next_frame(self) -> dict[str, Any] | None:
        """The frame at the play head, advancing it; None at the end."""
        if self.replay is None or self.index >= len(self.replay):
            self.done = True
            return None
        frame = self.replay.frame(self.index)
        self.index += 1
        self.done = self.index >= len(self.replay)
        return frame

    def seek(self, index: int) -> None:
        """Move the play head to frame `index` (clamped)."""
        if self.replay is not None:
            self.index = int(np.clip(index, 0, len(self.replay) - 1))
            self.done = False

    def status(self) -> str:
        """The load error, if any."""
        return self.error

    def close(self) -> None:
        """Nothing to release."""


class PushedFrames:
    """The source of a window whose frames are handed to `Viewer.show` (PettingZoo's human mode)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.regions: list[str] = []
        self.cells: list[str] = []
        self.done = False

    def next_frame(self) -> dict[str, Any] | None:
        """None: frames come through `Viewer.show`, not from here."""
        return None

    def status(self) -> str:
        """Nothing to report."""
        return ""

    def close(self) -> None:
        """Nothing to release."""


class Viewer:
    """The viewer window: one `Drawer`, one `FrameSource`, keys, screenshots and recording."""

    def __init__(self, source: FrameSource, env: str = "dev", speed: float = 10.0,
                 headless: bool | None = None, trails: TrailLines | None = None) -> None:
        self.source = source
        self.trails = trails
        self.headless = os.environ.get("SDL_VIDEODRIVER") == "dummy" if headless is None else headless
        pygame.display.init()
        pygame.display.set_caption(f"nimmerverse viewer - {source.name}")
        self.surface = pygame.display.set_mode(WINDOW)
        self.drawer = Drawer(source.regions, source.cells)
        self.state = ViewState(env=env, speed=speed, source=source.name)
        self.frame: dict[str, Any] | None = None
        self.shown = 0
        self._history: list[np.ndarray] = []
        self._step_request = 0
        self._due = 0.0
        self._last = time.monotonic()
        self._printed = ""
        self.clock = pygame.time.Clock()

    # -- input ------------------------------------------------------------------------------------

    def handle(self, event: pygame.event.Event) -> bool:
        """Apply one pygame event; False when the viewer should quit."""
        state = self.state
        if event.type == pygame.QUIT:
            return False
        if event.type == pygame.KEYDOWN:
            key, mods = event.key, getattr(event, "mod", 0)
            if key in (pygame.K_ESCAPE, pygame.K_q):
                return False
            if key == pygame.K_SPACE:
                state.paused = not state.paused
            elif key in (pygame.K_PERIOD, pygame.K_RIGHT):
                state.paused = True
                self._step_request += 1
            elif key == pygame.K_LEFT:
                state.paused = True
                self._seek(-1)
            elif key == pygame.K_HOME:
                self._seek(None)
            elif key in (pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS, pygame.K_RIGHTBRACKET):
                state.speed = min(MAX_SPEED, state.speed * 2)
            elif key in (pygame.K_MINUS, pygame.K_KP_MINUS, pygame.K_LEFTBRACKET):
                state.speed = max(MIN_SPEED, state.speed / 2)
            elif key == pygame.K_f:
                state.follow = not state.follow
                if state.selected is None:
                    state.selected = 0
            elif key == pygame.K_TAB:
                self._cycle_npc(-1 if mods & pygame.KMOD_SHIFT else 1)
            elif key in _LAYER_KEYS:
                name = _LAYER_KEYS[key]
                state.layers[name] = not state.layers[name]
            elif key == pygame.K_c:
                self._cycle_region()
        elif event.type == pygame.MOUSEBUTTONDOWN and getattr(event, "button", 1) == 1:
            self.click(event.pos)
        return True

    def pump(self) -> bool:
        """Apply every pending pygame event; False when one of them asks to quit."""
        running = True
        for event in pygame.event.get():
            running = self.handle(event) and running
        return running

    def click(self, pos: tuple[int, int]) -> None:
        """Select the NPC under a pixel, or toggle the oscilloscope region under it."""
        for region, rect in self.drawer.legend_rects.items():
            if rect.collidepoint(pos):
                every = set(self.drawer.regions)
                shown = set(every if self.state.scope_regions is None else self.state.scope_regions)
                shown ^= {region}
                self.state.scope_regions = None if shown == every else shown
                return
        if self.frame is not None:
            npc = self.drawer.npc_at(self.frame, pos)
            if npc is not None:
                self.state.selected = npc

    def _cycle_npc(self, step: int) -> None:
        n = len(self.frame["alive"]) if self.frame is not None else 0
        if n:
            current = self.state.selected if self.state.selected is not None else -step
            self.state.selected = (current + step) % n

    def _cycle_region(self) -> None:
        regions = self.drawer.regions
        if not regions:
            return
        current = self.state.scope_regions
        if current is None:
            self.state.scope_regions = {regions[0]}
        else:
            index = regions.index(next(iter(current))) + 1 if len(current) == 1 else len(regions)
            self.state.scope_regions = {regions[index]} if index < len(regions) else None

    def _seek(self, delta: int | None) -> None:
        seek = getattr(self.source, "seek", None)
        if seek is None:
            return
        index = 0 if delta is None else getattr(self.source, "index", 1) - 1 + delta
        seek(index)
        self._history.clear()
        self._show(self.source.next_frame())

    # -- loop -------------------------------------------------------------------------------------

    def _show(self, frame: dict[str, Any] | None) -> bool:
        if frame is None:
            return False
        self.frame = frame
        self.shown += 1
        waves = frame.get("waves")
        if waves is not None:
            self._history.append(np.asarray(waves, dtype=np.float32))
            del self._history[:-SCOPE_FRAMES]
        return True

    def _scope(self) -> np.ndarray | None:
        n = self.state.selected if self.state.selected is not None else 0
        rows = [w[n] for w in self._history if n < len(w)]
        return np.stack(rows) if rows else None

    def tick(self) -> bool:
        """One loop: events, advance the frames due, draw; True when a new frame was shown."""
        now = time.monotonic()
        dt, self._last = now - self._last, now
        advanced = False
        if self._step_request:
            self._step_request -= 1
            advanced = self._show(self.source.next_frame())
        elif not self.state.paused:
            if self.headless:
                advanced = self._show(self.source.next_frame())
            else:
                self._due = min(self._due + dt * self.state.speed, 4.0)
                while self._due >= 1.0:
                    self._due -= 1.0
                    advanced = self._show(self.source.next_frame()) or advanced
        self.drawer.regions, self.drawer.cells = self.source.regions, self.source.cells
        message = self.source.status()
        if message and message != self._printed:
            print(f"viewer: {message}", file=sys.stderr, flush=True)
        self._printed = message
        self.state.message = message
        self._draw()
        return advanced

    def show(self, frame: dict[str, Any]) -> bool:
        """Draw a frame handed over now (at most `speed` a second on a display); False once the user quit.

        With a display, space (pause) holds the caller here until space again or ``.`` (one frame).
        """
        running = self.pump()
        self._show(frame)
        self._draw()
        if self.headless:
            return running
        while running and self.state.paused and not self._step_request:
            self.clock.tick(30)
            running = self.pump()
            self._draw()
        self._step_request = 0
        self.clock.tick(self.state.speed)
        return running

    def _draw(self) -> None:
        n = self.state.selected
        if n is None:
            self.state.trail_lines = []
        else:
            self.state.trail_lines = self.trails.lines(n) if self.trails is not None else [NO_TRAILS]
        self.drawer.draw(self.surface, self.frame, self.state, self._scope())
        pygame.display.flip()

    def run(self, frames: int | None = None, screenshot: str | None = None, record: str | None = None) -> int:
        """Show frames until quit (or until `frames` were shown); 0 when frames were shown, else 1."""
        recorder = None
        try:
            recorder = Recorder(record, fps=self.state.speed) if record else None
        except RecordError as error:
            self.state.message = str(error)
            print(f"viewer: {error}", file=sys.stderr, flush=True)
            return 1
        status = 0
        try:
            while True:
                if not self.pump():
                    break
                new = self.tick()
                if new and recorder is not None:
                    recorder.add(self.surface)
                if frames is not None and self.shown >= frames:
                    break
                if self.headless and self.source.done and not self._step_request:
                    break
                if not self.headless:
                    self.clock.tick(60)
                elif not new:
                    time.sleep(0.01)  # headless and waiting on a live source
            if self.source.status() and self.shown == 0:
                status = 1
            if screenshot:
                path = save_screenshot(self.surface, screenshot)
                print(f"viewer: screenshot {path}", file=sys.stderr)
            if recorder is not None:
                path = recorder.close()
                print(f"viewer: recorded {recorder.frames} frames to {path}", file=sys.stderr)
        except RecordError as error:
            print(f"viewer: {error}", file=sys.stderr, flush=True)
            status = 1
        finally:
            self.source.close()
            if self.trails is not None:
                self.trails.close()
        return status

    def close(self) -> None:
        """Close the window."""
        pygame.display.quit()
