"""The live feed: frame messages, FramePublisher rate limiting, and the viewer against a real nats-server."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from nervous.messages import MessageError, WaveBatch, decode, encode  # noqa: E402
from nervous.server import EmbeddedServer, free_port  # noqa: E402
from train.live_feed import FrameMessage, FramePublisher, discovery_path  # noqa: E402
from train.view import LiveSource, find_live_run, view  # noqa: E402
from world.core import GridWorld  # noqa: E402
from world.draw import WINDOW  # noqa: E402
from world.stages import stage_config  # noqa: E402

MESSAGE_RED = (120, 20, 20)


def make_world(stage: int = 0) -> GridWorld:
    world = GridWorld(stage_config(stage), num_envs=2, seed=0)
    world.reset(seed=0)
    return world


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_frame_message_round_trip_and_validation() -> None:
    world = make_world(5)
    frame = world.frame(1)
    frame["waves"] = np.random.default_rng(0).random((world.num_npcs, 6)).astype(np.float32)
    frame["overrides"] = np.arange(world.num_npcs) % 3 == 0
    message = FrameMessage.from_frame(frame, "run1")
    data = encode(message)
    assert len(data) < 8000  # a 64x64 stage-5 frame with waves stays small
    back = decode(data, FrameMessage, "dev.world.run1.frame").to_frame()
    for key in ("tiles", "npc_y", "npc_x", "alive", "lifeforce", "battery", "has_key", "signalling",
                "facing", "waves", "overrides"):
        np.testing.assert_array_equal(back[key], frame[key], err_msg=key)
    assert back["t"] == frame["t"] and back["stage"] == 5 and back["night"] == frame["night"]
    broken = encode(FrameMessage.from_frame(frame, "run1"))
    message.tiles = message.tiles[:-1]
    with pytest.raises(MessageError, match="tiles"):
        decode(encode(message), FrameMessage, "dev.world.run1.frame")
    with pytest.raises(MessageError):
        decode(broken[:-20], FrameMessage, "dev.world.run1.frame")


def test_the_governors_columns_ride_the_frame_and_are_checked() -> None:
    world = make_world(0)
    n = world.num_npcs
    frame = world.frame(0)
    frame["cpu_quota"] = np.linspace(5, 100, n).astype(np.float32)
    frame["llm_priority"] = (np.arange(n) % 12 - 1).astype(np.int8)  # -1: no allocation yet
    frame["gates"] = (np.arange(n) % 64).astype(np.uint8)
    frame["gate_flash"] = np.arange(n) % 2 == 0
    data = encode(FrameMessage.from_frame(frame, "gov"))
    back = decode(data, FrameMessage, "dev.world.gov.frame").to_frame()
    for key in ("cpu_quota", "llm_priority", "gates", "gate_flash"):
        np.testing.assert_array_equal(back[key], frame[key], err_msg=key)
    assert back["gate_flash"].dtype == bool
    short = FrameMessage.from_frame(frame, "gov")
    short.cpu_quota = short.cpu_quota[:-4]
    with pytest.raises(MessageError, match="cpu_quota"):
        decode(encode(short), FrameMessage, "dev.world.gov.frame")


def test_the_organs_states_ride_the_frame_and_are_checked() -> None:
    subject = "dev.world.org.frame"
    frame = make_world(0).frame(0) | {"organs": {"vision": "LOADING"}}
    back = decode(encode(FrameMessage.from_frame(frame, "org")), FrameMessage, subject).to_frame()
    assert back["organs"] == {"vision": "LOADING"}
    bare = FrameMessage.from_frame(make_world(0).frame(0), "org")
    assert "organs" not in decode(encode(bare), FrameMessage, subject).to_frame()
    message = FrameMessage.from_frame(frame, "org")
    raw = encode(message).replace(b"LOADING", b"DANCING")
    with pytest.raises(MessageError, match="organs"):
        decode(raw, FrameMessage, subject)


def test_publisher_is_rate_limited_and_cheap_when_not_due(nats_server: EmbeddedServer) -> None:
    world = make_world(5)
    with FramePublisher(run="rate", url=nats_server.url, fps=20.0, max_share=0.05) as feed:
        assert feed.active, feed.error
        queued, calls, not_due_s = 0, 0, 0.0
        start = time.perf_counter()
        while time.perf_counter() - start < 0.5:
            t0 = time.perf_counter()
            sent = feed.maybe_publish(world)
            if not sent:
                not_due_s += time.perf_counter() - t0
            queued += sent
            calls += 1
        assert 5 <= queued <= 11  # 20 fps for 0.5 s, plus the first
        assert not_due_s / (calls - queued) < 20e-6
        assert wait_for(lambda: feed.published + feed.replaced >= queued)
        feed.max_share = 1e-6  # a feed that would cost too much is spaced further apart than fps
        assert feed.interval_s > 1 / feed.fps
    assert not feed.active


def test_rate_limit_keeps_the_feed_within_its_share_of_the_loop(nats_server: EmbeddedServer) -> None:
    """The slowdown itself is measured by benchmarks/viewer.py (live_feed_slowdown_pct), not timed here."""
    world = make_world(3)
    actions = np.zeros((2, world.num_npcs), dtype=np.int64)
    with FramePublisher(run="cost", url=nats_server.url, fps=30.0) as feed:
        assert feed.maybe_publish(world)  # the first frame is due at once
        assert not feed.maybe_publish(world)  # the next one is not: nothing is copied or queued
        queued, start = 1, time.perf_counter()
        for _ in range(1500):
            world.step(actions)
            queued += feed.maybe_publish(world)
            # the interval always leaves the feed at most max_share of the caller's time
            assert feed.interval_s >= 1 / 30.0
            assert (feed._caller_cost + feed._thread_cost) <= feed.max_share * feed.interval_s + 1e-12
        elapsed = time.perf_counter() - start
        assert queued <= elapsed * 30.0 + 2  # never above the frame rate
        assert feed.published > 0


def test_unreachable_bus_turns_the_publisher_off_without_raising(capsys: pytest.CaptureFixture[str]) -> None:
    feed = FramePublisher(run="nobus", url=f"nats://127.0.0.1:{free_port()}", connect_timeout_s=10)
    try:
        assert not feed.active and "cannot connect" in feed.error
        assert feed.maybe_publish(make_world()) is False
    finally:
        feed.close()
    assert "live feed: cannot connect" in capsys.readouterr().err


def test_embedded_server_is_found_by_the_viewer() -> None:
    with FramePublisher(run="found") as feed:
        assert feed.active, feed.error
        assert discovery_path("dev", "found").read_text() == feed.url
        assert find_live_run("dev", "found") == (feed.url, "found")
        assert find_live_run("dev", None)[0] is not None
    assert not discovery_path("dev", "found").exists()


def publish_in_background(url: str, run: str, stop: threading.Event, waves: bool = True) -> threading.Thread:
    def work() -> None:
        world = make_world(3)
        rng = np.random.default_rng(0)
        with FramePublisher(run=run, url=url, fps=50.0) as feed:
            while not stop.is_set():
                world.step(rng.integers(0, 7, (2, world.num_npcs)))
                feed.maybe_publish(world, waves=rng.random((2, world.num_npcs, 6)) if waves else None)
                time.sleep(0.002)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_live_viewer_shows_frames_from_the_bus(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    stop = threading.Event()
    thread = publish_in_background(nats_server.url, "live1", stop)
    try:
        out = tmp_path / "live.png"
        status = view(live=True, bus_url=nats_server.url, run="live1", frames=4, screenshot=str(out), wait=5)
        assert status == 0
    finally:
        stop.set()
        thread.join(5)
    image = pygame.image.load(str(out))
    assert image.get_size() == WINDOW
    assert tuple(image.get_at((2, 2)))[:3] == (46, 125, 50)  # dev green


def test_live_source_merges_cell_waves_from_the_bus(nats_server: EmbeddedServer) -> None:
    import asyncio

    from nervous import subjects
    from nervous.bus import Bus, BusConfig
    from nervous.messages import Region

    stop = threading.Event()
    thread = publish_in_background(nats_server.url, "waves1", stop, waves=False)
    source = LiveSource(nats_server.url, "waves1", wait_s=5)
    try:
        assert wait_for(lambda: source.received > 0)
        batch = WaveBatch.from_arrays(7, ["smell"], [Region.FOOD], np.array([2]), np.array([0]),
                                      np.array([0.75], dtype=np.float32), np.array([1.0], dtype=np.float32))

        async def send() -> None:
            async with Bus(BusConfig(url=nats_server.url, name="cells")) as bus:
                await bus.publish(subjects.cell_wave("smell"), batch)
                await bus.flush()

        asyncio.run(send())

        def merged() -> bool:
            frame = source.next_frame()
            return frame is not None and "waves" in frame and frame["waves"][2, 0] == pytest.approx(0.75)

        assert wait_for(merged)
    finally:
        source.close()
        stop.set()
        thread.join(5)


def test_bus_without_frames_gives_a_message(nats_server: EmbeddedServer, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "empty.png"
    assert view(live=True, bus_url=nats_server.url, run="empty", frames=3, screenshot=str(out), wait=0.3) == 1
    err = capsys.readouterr().err
    assert f"no frames on dev.world.empty.frame from {nats_server.url}" in err
    image = pygame.image.load(str(out))
    assert tuple(image.get_at((WINDOW[0] // 2 - 200, 8 + 320 - 9)))[:3] == MESSAGE_RED


def test_unreachable_bus_gives_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    assert view(live=True, bus_url=url, run="x", frames=3, wait=5) == 1
    err = capsys.readouterr().err
    assert f"cannot connect to bus at {url}" in err and "Traceback" not in err


def test_the_live_viewer_shows_the_organ_hosts_events_and_the_trainers_organ_states(
        nats_server: EmbeddedServer) -> None:
    """In-process the cortex link's organ states ride the trainer's frames; live, the host's bus events."""
    import asyncio

    from governor.config import GovernorConfig
    from governor.runtime import GovernedReflex
    from nervous import subjects
    from nervous.bus import Bus, BusConfig
    from nervous.cells import CellBank
    from nervous.lifeforce import LifeforceConfig
    from nervous.messages import OrganEvent, OrganState
    from organs.config import CortexConfig
    from organs.link import CortexLink
    from train.modes import LiveFeed

    link = CortexLink(CortexConfig(backend="engine", vision_gate="open"))
    reflex = GovernedReflex(GovernorConfig(kind="heuristic"), LifeforceConfig(), None, cells=CellBank(),
                            escalator=link)
    world = make_world(4)
    source = LiveSource(nats_server.url, "organs1", wait_s=5)
    feed = LiveFeed(FramePublisher(run="organs1", url=nats_server.url, fps=50.0), None, reflex)
    try:
        frames: list[dict] = []

        def shown(state: str) -> bool:
            feed.maybe_publish(world)
            frame = source.next_frame()
            if frame is not None:
                frames.append(frame)
            return bool(frames) and frames[-1].get("organs") == {"vision": state}

        assert wait_for(lambda: shown("UNLOADED"))  # the trainer's frame: the organ not loaded yet

        async def send() -> None:
            async with Bus(BusConfig(url=nats_server.url, name="organ-host")) as bus:
                await bus.publish(subjects.organ_event("vision"),
                                  OrganEvent(organ="vision", state=OrganState.LOADING,
                                             previous=OrganState.UNLOADED))
                await bus.flush()

        asyncio.run(send())
        assert wait_for(lambda: shown("LOADING"))  # the host's event on the bus, newer than the frame's
    finally:
        feed.close()
        source.close()
        link.close()
