"""The viewer command: play a replay file, or watch a live run's frames on the bus.

    python -m train.view --replay runs/eval/episode_0.npz
    python -m train.view --live [--bus-url nats://host:4222] [--run NAME] [--trails RUN/trails.sqlite]
    python -m train.view --replay FILE --frames 100 --screenshot out.png --record out.gif   # headless

Why ``python -m train.view`` and argparse rather than only ``python -m train mode=view``: the viewer
has nothing to compose (no world, brain or governor config), its inputs are a file or a url plus
output paths, and argparse gives ``--help`` and typed flags that read like what they are
(``--screenshot out.png``). It is still one module of ``train``; ``python -m train mode=view ...``
routes to the same `view()` function with the same names, so both spellings do the same thing.

Options: ``--env dev|staging|prod`` (default ``NIMMERVERSE_ENV``, else dev) picks the subject prefix
and the background colour; ``--speed`` frames per second of playback; ``--frames N`` exits after N
frames (headless use); ``--wait S`` seconds to wait for a first live frame before saying so.
Without ``--bus-url``, live mode reads the url a local ``FramePublisher`` left for the run
(``train.live_feed.discovery_path``), else tries ``nats://127.0.0.1:4222``.

``--trails PATH`` (a SQLite file or a postgresql:// dsn) is the decision-trail store whose escalations
the selected NPC's panel lists (``organs.trails.panel``, read-only on a thread, polled every second).
Without it a replay uses the ``trails.sqlite`` beside the replay file when there is one (mode=eval
``trails.record=true`` writes both into the run folder); ``viewer=live`` passes the run's store.

Bad input (an unreadable replay, a bus that cannot be reached or that carries no frames) shows one
line on screen and in the terminal and exits 1 in headless use; it never raises.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.messages import REGIONS, OrganEvent, WaveBatch
from organs.trails.config import DEFAULT_STORE_NAME
from train.live_feed import FrameMessage, discovery_path

DEFAULT_URL = "nats://127.0.0.1:4222"


def find_live_run(env: str, run: str | None) -> tuple[str | None, str | None]:
    """(url, run) left by a local publisher: of `run`, or of the newest run when None."""
    if run is not None:
        path = discovery_path(env, run)
        return (path.read_text().strip(), run) if path.is_file() else (None, run)
    folder = discovery_path(env, "x").parent
    found = sorted(folder.glob(f"{env}.*.url"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not found:
        return None, None
    newest = found[-1]
    return newest.read_text().strip(), newest.name.removeprefix(f"{env}.").removesuffix(".url")


class LiveSource:
    """Frames of a live run from the bus (with the cells' wave batches and the organs' lifecycle events),
    received on its own thread."""

    def __init__(self, url: str, run: str, wait_s: float = 5.0) -> None:
        self.url, self.run, self.wait_s = url, run, wait_s
        self.subject = subjects.world_frame(run)
        self.waves_pattern = subjects.all_cell_waves_pattern()
        self.name = f"live {self.subject}"
        self.regions: list[str] = [r.value for r in REGIONS]
        self.cells: list[str] = []
        self.done = False
        self.error = ""
        self.received = 0
        self.bad = 0
        self._latest: FrameMessage | None = None
        self._seen = 0
        self._bus_waves: dict[int, np.ndarray] = {}
        self._organs: dict[str, str] = {}
        """Each organ's lifecycle state, from the organ host's events on the bus."""
        self._wave_tick = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = self._last_frame = time.monotonic()
        self._thread = threading.Thread(target=self._serve, name="viewer-live", daemon=True)
        self._thread.start()

    def next_frame(self) -> dict[str, Any] | None:
        """The newest frame when one arrived since the last call, else None."""
        with self._lock:
            message, count = self._latest, self.received
            bus_waves = dict(self._bus_waves)
            organs = dict(self._organs)
        if message is None or count == self._seen:
            return None
        self._seen = count
        self.regions, self.cells = list(message.regions) or self.regions, list(message.cells)
        frame = message.to_frame()
        if "waves" not in frame and bus_waves:
            waves = np.zeros((message.npcs, len(self.regions)), dtype=np.float32)
            for k, region in enumerate(self.regions):
                if region in bus_waves:
                    column = bus_waves[region][: message.npcs]
                    waves[: len(column), k] = column
            frame["waves"] = waves
        if organs:  # the organ host's events are newer than what a publisher last knew of them
            frame["organs"] = {**frame.get("organs", {}), **organs}
        return frame

    def status(self) -> str:
        """Why nothing is shown: a connection error, or no frames after the wait."""
        if self.error:
            return self.error
        now = time.monotonic()
        if self.received == 0:
            if now - self._started > self.wait_s:
                self.done = True
                return f"no frames on {self.subject} from {self.url} after {self.wait_s:g} s"
            return f"waiting for frames on {self.subject} from {self.url}"
        if now - self._last_frame > max(self.wait_s, 5.0):
            self.done = True  # headless use stops; a window keeps waiting
            return f"no new frames on {self.subject} for over {max(self.wait_s, 5.0):g} s (run ended?)"
        return ""

    def close(self) -> None:
        """Disconnect and stop the thread."""
        self._stop.set()
        self._thread.join(5.0)

    # -- the background thread --------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        bus = Bus(BusConfig(url=self.url, name="viewer", connect_timeout_s=2.0, max_reconnect_attempts=-1))
        try:
            await bus.connect()
        except (BusError, OSError) as error:
            self.error, self.done = str(error), True
            return
        try:
            await bus.subscribe(self.subject, FrameMessage, self._on_frame, max_bytes=8 << 20)
            await bus.subscribe(self.waves_pattern, WaveBatch, self._on_waves)
            await bus.subscribe(subjects.all_organ_events_pattern(), OrganEvent, self._on_organ)
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
                self.bad = sum(bus.bad_messages.values())
        finally:
            await bus.close()

    async def _on_frame(self, message: FrameMessage, raw: Any) -> None:
        with self._lock:
            self._latest = message
            self.received += 1
            self._last_frame = time.monotonic()

    async def _on_organ(self, event: OrganEvent, raw: Any) -> None:
        with self._lock:
            self._organs[event.organ] = str(event.state)

    async def _on_waves(self, batch: WaveBatch, raw: Any) -> None:
        npc, index, confidence, _ = batch.arrays()
        with self._lock:
            if batch.tick != self._wave_tick:
                self._bus_waves, self._wave_tick = {}, batch.tick
            for k, region in enumerate(batch.regions):
                rows = index == k
                if not rows.any():
                    continue
                size = int(npc[rows].max()) + 1
                column = self._bus_waves.setdefault(region.value, np.zeros(0, dtype=np.float32))
                if len(column) < size:
                    column = np.pad(column, (0, size - len(column)))
                np.maximum.at(column, npc[rows], confidence[rows])
                self._bus_waves[region.value] = column


class MessageSource:
    """No frames, only a message (a bad command line): shown like any other problem."""

    def __init__(self, message: str) -> None:
        self.name, self.regions, self.cells, self.done, self.message = "viewer", [], [], True, message

    def next_frame(self) -> None:
        """Never a frame."""
        return None

    def status(self) -> str:
        """The message."""
        return self.message

    def close(self) -> None:
        """Nothing to release."""


def trails_run(source: Any) -> str | None:
    """The run whose escalations the panel lists: the live run's, or the one a replay names (mode=eval
    writes it); None (every run in the store) for a replay that names none."""
    if isinstance(source, LiveSource):
        return source.run
    replay = getattr(source, "replay", None)
    named = replay.extra.get("trails_run") if replay is not None else None
    return str(named) if named else None


def trails_for(trails: str | None, replay: str | None) -> str | None:
    """The trail store the viewer reads: the one given, else a replay's neighbour ``trails.sqlite``."""
    if trails:
        return trails
    if replay is not None:
        beside = Path(replay).parent / DEFAULT_STORE_NAME
        return str(beside) if beside.is_file() else None
    return None


def view(replay: str | None = None, live: bool = False, bus_url: str | None = None, run: str | None = None,
         env: str | None = None, screenshot: str | None = None, record: str | None = None,
         frames: int | None = None, speed: float = 10.0, wait: float = 5.0, trails: str | None = None) -> int:
    """Open the viewer on a replay or a live run; the exit status (0 ok, 1 a problem was shown)."""
    before = os.environ.get(subjects.ENV_VAR)
    try:
        return _view(replay, live, bus_url, run, env, screenshot, record, frames, speed, wait, trails)
    finally:  # the env only picks subjects while the viewer runs; callers keep theirs
        if before is None:
            os.environ.pop(subjects.ENV_VAR, None)
        else:
            os.environ[subjects.ENV_VAR] = before


def _view(replay: str | None, live: bool, bus_url: str | None, run: str | None, env: str | None,
          screenshot: str | None, record: str | None, frames: int | None, speed: float, wait: float,
          trails: str | None = None) -> int:
    env = env or os.environ.get(subjects.ENV_VAR, "dev")
    problem = ""
    if env not in subjects.ENVS:
        problem, env = f"--env {env!r} is not one of {', '.join(subjects.ENVS)}", "dev"
    os.environ[subjects.ENV_VAR] = env
    if not problem and (replay is None) == (not live):
        problem = "give exactly one of --replay FILE or --live"
    if not problem and frames is not None and frames < 1:
        problem = f"--frames {frames}: must be >= 1"
    source: Any
    if problem:
        source = MessageSource(problem)
    elif replay is not None:
        from world.viewer_app import ReplaySource

        source = ReplaySource(replay)
    else:
        url, found_run = (bus_url, run) if bus_url else find_live_run(env, run)
        try:
            source = LiveSource(url or DEFAULT_URL, found_run or run or "default", wait_s=wait)
        except ValueError as error:  # a run name that is no subject token
            source = MessageSource(f"--run: {error}")
    from world.viewer_app import Viewer  # pygame only once the arguments are checked

    location = trails_for(trails, replay)
    panel = None
    if location and not problem:
        from organs.trails.panel import TrailPanel

        panel = TrailPanel(location, run=trails_run(source))
    viewer = Viewer(source, env=env, speed=speed, trails=panel)
    try:
        return viewer.run(frames=frames, screenshot=screenshot, record=record)
    finally:
        viewer.close()


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m train.view`."""
    p = argparse.ArgumentParser(prog="python -m train.view", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--replay", metavar="FILE", help="play a replay file (.npz from eval/record)")
    mode.add_argument("--live", action="store_true", help="watch a live run's frames on the bus")
    p.add_argument("--bus-url", help="nats://host:port (default: the local run's server, else 4222)")
    p.add_argument("--run", help="run name of the live feed (default: the newest local one)")
    p.add_argument("--env", choices=subjects.ENVS, help="dev|staging|prod (default: $NIMMERVERSE_ENV)")
    p.add_argument("--screenshot", metavar="PNG", help="write the last shown frame to this image")
    p.add_argument("--record", metavar="GIF", help="record the frames shown (.gif, or .mp4 with ffmpeg)")
    p.add_argument("--frames", type=int, help="exit after this many frames (headless use)")
    p.add_argument("--speed", type=float, default=10.0, help="playback frames per second")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a first live frame")
    p.add_argument("--trails", metavar="PATH", help="decision-trail store (SQLite file or postgresql:// dsn) "
                   "for the selected NPC's last escalations (default: trails.sqlite beside the replay)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the viewer; the exit status."""
    args = parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return view(replay=args.replay, live=args.live, bus_url=args.bus_url, run=args.run, env=args.env,
                    screenshot=args.screenshot, record=args.record, frames=args.frames, speed=args.speed,
                    wait=args.wait, trails=args.trails)
    return 130


if __name__ == "__main__":
    sys.exit(main())
