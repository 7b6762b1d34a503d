"""The live feed: world frames published on ``{env}.world.{run}.frame`` for the viewer, rate-limited.

``FramePublisher(run)`` is what a training loop calls::

    feed = FramePublisher(run="ppo-stage5", url=None)   # None: start an embedded nats-server
    for update in ...:
        world.step(actions)
        feed.maybe_publish(world, waves=bank.last.confidence, overrides=nerve_mask)
    feed.close()

``maybe_publish`` costs one clock read until the next frame is due. When due it copies env 0's frame
(``GridWorld.frame``) and hands it to a background thread, which owns its own asyncio loop and bus
connection and encodes and publishes it; a frame still waiting when the next one arrives is replaced
(the viewer wants the newest, not all). Frames are at most ``fps`` per second, and further apart
when needed so that the feed's measured cost (copy in the caller plus encode and publish in the
thread) stays under ``max_share`` of wall time. The default share is 3 %, not the 5 % training may
lose: the thread's GIL contention is partly invisible to that accounting, and measured slowdowns
run up to ~4 % at a 5 % share (benchmarks/viewer.py, live_feed_slowdown_pct). A bus that cannot be
reached is reported once and the publisher turns into a no-op.

When the publisher starts its own server it writes the url to a discovery file
(``discovery_path(env, run)``), so ``python -m train.view --live --run NAME`` finds it without a url.

``FrameMessage`` is the encoding of a frame on the bus (``nervous.messages`` has no frame type):
a msgspec MessagePack struct of the frame's arrays as raw little-endian bytes, validated on receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.messages import REGIONS, Message, Name, OrganState, Tick

log = logging.getLogger(__name__)

#: (frame key, dtype on the wire) of the per-NPC arrays, in message order.
NPC_FIELDS = (("npc_y", "<i2"), ("npc_x", "<i2"), ("alive", "u1"), ("lifeforce", "<f4"),
              ("battery", "<f4"), ("has_key", "u1"), ("signalling", "u1"), ("facing", "i1"))
#: Optional per-NPC arrays ([N] each; waves is [N, R]). The governor's, as the live organism applied
#: them: cpu_quota (% of a core), llm_priority (-1: none yet), gates (bit k: nervous.messages.REGIONS[k]
#: open), gate_flash (a gate opened within the last second).
OPTIONAL_FIELDS = (("overrides", "u1"), ("actions", "i1"), ("tick_rate", "<f4"), ("cpu_use", "<f4"),
                   ("cpu_quota", "<f4"), ("llm_priority", "i1"), ("gates", "u1"), ("gate_flash", "u1"),
                   ("escalations", "<u2"), ("escalation_ago", "<f4"), ("planning", "u1"),
                   ("escalation_outcome", "i1"))
_OPTIONAL_NAMES = frozenset(name for name, _ in OPTIONAL_FIELDS)
_BOOL_FIELDS = {"alive", "has_key", "signalling", "overrides", "gate_flash", "planning"}


class FrameMessage(Message, tag="world_frame"):
    """One env's world snapshot for viewers: tiles uint8 [H, W] and per-NPC columns as raw bytes."""

    run: Name
    tick: Tick
    stage: int
    height: Annotated[int, msgspec.Meta(ge=1, le=1024)]
    width: Annotated[int, msgspec.Meta(ge=1, le=1024)]
    npcs: Annotated[int, msgspec.Meta(ge=0, le=4096)]
    tiles: bytes
    npc_y: bytes
    npc_x: bytes
    alive: bytes
    lifeforce: bytes
    battery: bytes
    has_key: bytes
    signalling: bytes
    facing: bytes
    night: bool = False
    weather: Annotated[int, msgspec.Meta(ge=0, le=2)] = 0
    regions: list[str] = []
    cells: list[str] = []
    waves: bytes = b""
    overrides: bytes = b""
    actions: bytes = b""
    tick_rate: bytes = b""
    cpu_use: bytes = b""
    cpu_quota: bytes = b""
    llm_priority: bytes = b""
    gates: bytes = b""
    gate_flash: bytes = b""
    escalations: bytes = b""
    escalation_ago: bytes = b""
    planning: bytes = b""
    escalation_outcome: bytes = b""
    organs: dict[Name, OrganState] = {}
    """The organ host's organs by name, each in its lifecycle state (empty: no organs in this run)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.tiles) != self.height * self.width:
            raise ValueError(f"tiles has {len(self.tiles)} bytes, expected height*width - at `$.tiles`")
        for name, dtype in NPC_FIELDS:
            if len(getattr(self, name)) != self.npcs * np.dtype(dtype).itemsize:
                raise ValueError(f"length does not match npcs ({self.npcs}) - at `$.{name}`")
        for name, dtype in OPTIONAL_FIELDS:
            size = len(getattr(self, name))
            if size and size != self.npcs * np.dtype(dtype).itemsize:
                raise ValueError(f"length does not match npcs ({self.npcs}) - at `$.{name}`")
        if self.waves and len(self.waves) != self.npcs * len(self.regions) * 4:
            raise ValueError(f"length does not match npcs x regions ({self.npcs} x {len(self.regions)}) "
                             "- at `$.waves`")

    @classmethod
    def from_frame(cls, frame: dict[str, Any], run: str, regions: list[str] | None = None,
                   cells: list[str] | None = None) -> FrameMessage:
        """A message from a `GridWorld.frame` dict (optional keys: waves, overrides, actions, ...)."""
        tiles = np.asarray(frame["tiles"], dtype=np.uint8)
        columns = {name: np.ascontiguousarray(frame[name], dtype=dtype).tobytes()
                   for name, dtype in NPC_FIELDS}
        optional = {name: np.ascontiguousarray(frame[name], dtype=dtype).tobytes()
                    for name, dtype in OPTIONAL_FIELDS if frame.get(name) is not None}
        waves = frame.get("waves")
        regions = list(regions or [])
        if waves is not None:
            waves = np.ascontiguousarray(waves, dtype="<f4")
            if not regions:
                regions = [r.value for r in REGIONS][: waves.shape[-1]]
            optional["waves"] = waves.tobytes()
        return cls(run=run, tick=int(frame.get("t", 0)), stage=int(frame.get("stage", -1)),
                   height=tiles.shape[0], width=tiles.shape[1], npcs=len(frame["alive"]),
                   tiles=np.ascontiguousarray(tiles).tobytes(), night=bool(frame.get("night", False)),
                   weather=int(frame.get("weather", 0)), regions=regions, cells=list(cells or []),
                   organs={str(k): OrganState(v) for k, v in (frame.get("organs") or {}).items()},
                   **columns, **optional)

    def to_frame(self) -> dict[str, Any]:
        """The frame dict the drawer takes (arrays are read-only views of the message bytes)."""
        frame: dict[str, Any] = {
            "tiles": np.frombuffer(self.tiles, dtype=np.uint8).reshape(self.height, self.width),
            "t": self.tick, "stage": self.stage, "night": self.night, "weather": self.weather,
        }
        for name, dtype in NPC_FIELDS + OPTIONAL_FIELDS:
            data = getattr(self, name)
            if data or name in dict(NPC_FIELDS):
                array = np.frombuffer(data, dtype=dtype)
                frame[name] = array.astype(bool) if name in _BOOL_FIELDS else array
        if self.waves:
            frame["waves"] = np.frombuffer(self.waves, dtype="<f4").reshape(self.npcs, len(self.regions))
        if self.organs:
            frame["organs"] = {name: str(state) for name, state in self.organs.items()}
        return frame


def discovery_path(env: str, run: str) -> Path:
    """Where a publisher with its own embedded server leaves that server's url for viewers."""
    return Path(tempfile.gettempdir()) / "nimmerverse-live" / f"{env}.{run}.url"


class FramePublisher:
    """Publishes env `env`'s frames of a GridWorld on the bus from a background thread, rate-limited."""

    def __init__(self, run: str = "default", url: str | None = None, fps: float = 10.0,
                 max_share: float = 0.03, env: int = 0, regions: list[str] | None = None,
                 cells: list[str] | None = None, connect_timeout_s: float = 10.0,
                 run_dir: str | os.PathLike | None = None) -> None:
        self.run, self.env, self.fps, self.max_share = run, env, fps, max_share
        self.regions, self.cells = list(regions or []), list(cells or [])
        self.subject = subjects.world_frame(run)
        self.published = 0
        self.replaced = 0
        self.error = ""
        self.url: str | None = url
        self._config = BusConfig(url=url, name=f"frames-{subjects.token(run, 'run')}")
        self._run_dir = run_dir
        self._next = 0.0
        self._caller_cost = 0.0
        self._thread_cost = 0.0
        self._pending: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop = False
        self._ready = threading.Event()
        self._discovery: Path | None = None
        self._thread = threading.Thread(target=self._serve, name=f"frames-{run}", daemon=True)
        self._thread.start()
        if not self._ready.wait(connect_timeout_s):
            self._fail(f"live feed: bus not ready after {connect_timeout_s:g} s")

    @property
    def active(self) -> bool:
        """True while frames can be published."""
        return not self.error and not self._stop

    @property
    def interval_s(self) -> float:
        """Current minimum seconds between frames (fps limit, widened to keep the cost share)."""
        return max(1.0 / self.fps, (self._caller_cost + self._thread_cost) / self.max_share)

    def maybe_publish(self, world: Any, waves: np.ndarray | None = None, organs: dict[str, str] | None = None,
                      **columns: np.ndarray | None) -> bool:
        """Publish the world's frame (with waves, the organs' states and the per-NPC columns of
        OPTIONAL_FIELDS, by name) when one is due; True if queued."""
        unknown = sorted(set(columns) - _OPTIONAL_NAMES)
        if unknown:
            raise TypeError(f"maybe_publish: {unknown[0]!r} is no frame column (OPTIONAL_FIELDS)")
        now = time.perf_counter()
        if now < self._next or not self.active:
            return False
        frame = world.frame(self.env)
        n = world.num_npcs
        for key, value in (("waves", waves), *columns.items()):
            if value is not None:
                frame[key] = self._env_slice(np.asarray(value), n, world.num_envs)
        if organs:
            frame["organs"] = dict(organs)
        with self._lock:
            self.replaced += self._pending is not None
            self._pending = frame
        assert self._loop is not None and self._wake is not None
        self._loop.call_soon_threadsafe(self._wake.set)
        done = time.perf_counter()
        self._caller_cost = 0.8 * self._caller_cost + 0.2 * (done - now) if self.published else done - now
        self._next = done + self.interval_s
        return True

    def _env_slice(self, value: np.ndarray, n: int, b: int) -> np.ndarray:
        """This env's rows of a [B, N, ...] or flat [B*N, ...] array (an [N, ...] array as is)."""
        if value.ndim >= 2 and value.shape[:2] == (b, n):
            return value[self.env].copy()
        if value.shape[0] == b * n:
            return value[self.env * n:(self.env + 1) * n].copy()
        return value.copy()

    def close(self) -> None:
        """Publish what is pending, disconnect, and stop the thread."""
        if self._stop:
            return
        self._stop = True
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)
        self._thread.join(10.0)
        if self._discovery is not None:
            self._discovery.unlink(missing_ok=True)

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, message: str) -> None:
        if not self.error:
            self.error = message
            print(message, file=sys.stderr, flush=True)

    # -- the background thread --------------------------------------------------------------------

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._wake = loop, asyncio.Event()
        bus = Bus(self._config, run_dir=self._run_dir)
        try:
            await bus.connect()
        except (BusError, OSError, RuntimeError) as error:
            self._fail(f"live feed: {error}")
            self._ready.set()
            return
        self.url = bus.url
        if self._config.url is None:
            self._discovery = discovery_path(subjects.env(), self.run)
            self._discovery.parent.mkdir(parents=True, exist_ok=True)
            self._discovery.write_text(self.url)
            print(f"live feed: python -m train.view --live --bus-url {self.url} --run {self.run}",
                  file=sys.stderr, flush=True)
        self._ready.set()
        try:
            while not self._stop:
                await self._wake.wait()
                self._wake.clear()
                await self._publish_pending(bus)
            await self._publish_pending(bus)
        finally:
            await bus.close()

    async def _publish_pending(self, bus: Bus) -> None:
        with self._lock:
            frame, self._pending = self._pending, None
        if frame is None:
            return
        start = time.perf_counter()
        try:
            message = FrameMessage.from_frame(frame, self.run, self.regions, self.cells)
            await bus.publish(self.subject, message)
        except Exception as error:  # noqa: BLE001  a bad frame or a dead bus must not stop training
            log.warning("live feed: frame not published: %s", error)
            return
        self.published += 1
        cost = time.perf_counter() - start
        self._thread_cost = 0.8 * self._thread_cost + 0.2 * cost if self.published > 1 else cost
