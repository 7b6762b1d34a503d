"""The viewer's NPC panel lists the selected NPC's last escalations from a real trail store."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import sqlite3  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from nervous.messages import Region, TrailEvent, TrailKind, TrailOutcome  # noqa: E402
from nervous.trail_stream import trail_id  # noqa: E402
from organs.trails.panel import LAST, TrailPanel, escalation_row  # noqa: E402
from organs.trails.recorder import TrailRecorder  # noqa: E402
from organs.trails.store import TrailRecord, TrailStoreError, open_store  # noqa: E402
from organs.trails.writer import TrailWriter  # noqa: E402
from train.view import LiveSource, main, trails_for, trails_run  # noqa: E402
from world.core import GridWorld  # noqa: E402
from world.draw import GATE_COLOUR  # noqa: E402
from world.replay import ReplayWriter  # noqa: E402
from world.stages import stage_config  # noqa: E402
from world.viewer_app import NO_TRAILS, ReplaySource, Viewer  # noqa: E402


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[TrailRecord]]:
    """A stage-4 run recorded through the cortex link into a SQLite store by the real recorder and writer:
    (store path, the NPC with the most escalations, its escalations newest first)."""
    from tests.stage4_trails import record_stage4

    path = tmp_path_factory.mktemp("trails") / "trails.sqlite"
    writer = TrailWriter(open_store(str(path)))
    record_stage4(TrailRecorder(writer.write_many, "viewer-run", outcome_ticks=10), ticks=300)
    writer.close()
    with open_store(str(path), create=False) as store:
        escalations = store.last(n=10_000, kind="escalation")
        counts = np.bincount([r.event.npc for r in escalations])
        npc = int(np.argmax(counts))
        assert counts[npc] > LAST, "the fixture must give one NPC more escalations than the panel lists"
        return path, npc, store.last(npc=npc, n=LAST, kind="escalation")


@pytest.fixture
def replay_path(tmp_path: Path) -> Path:
    """A 6-frame stage-4 replay (16 NPCs)."""
    world = GridWorld(stage_config(4), seed=1)
    world.reset(seed=1)
    writer = ReplayWriter(4, "keys")
    for _ in range(6):
        world.step(np.zeros((1, world.num_npcs), dtype=np.int64))
        writer.add(world.frame(0))
    return writer.save(tmp_path / "episode.npz")


def settled(panel: TrailPanel, npc: int, timeout: float = 10.0,
            done: Callable[[list[str]], bool] = lambda lines: lines[-1] != "reading...") -> list[str]:
    """The panel's lines for npc once its thread has read the store (or said why not)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = panel.lines(npc)
        if done(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"panel still shows {lines} after {timeout:g} s")
        time.sleep(0.02)


def test_the_panel_lists_an_npcs_last_escalations_newest_first(recorded) -> None:
    path, npc, records = recorded
    panel = TrailPanel(str(path), interval_s=0.05)
    try:
        lines = settled(panel, npc)
    finally:
        panel.close()
    head, titles, *rows = lines
    assert head == f"NPC {npc} last escalations  (trails.sqlite, every 0.05 s)"
    assert titles.split("\t") == ["tick", "region", "call/fallback", "outcome", "ms", "R@10"]
    assert len(rows) == LAST
    ticks = [int(row.split("\t")[0]) for row in rows]
    assert ticks == [r.event.tick for r in records] and ticks == sorted(ticks, reverse=True)
    for row, record in zip(rows, records, strict=True):
        tick, region, call, outcome, ms, reward = row.split("\t")
        e, o = record.event, record.outcome
        assert region == str(e.region)
        assert outcome == (e.cortex_outcome if len(e.cortex_outcome) <= 8 else e.cortex_outcome[:7] + "~")
        assert ms == (f"{e.latency_ms:.1f}" if e.latency_ms < 10 else f"{e.latency_ms:.0f}")
        assert reward == (f"{o.reward:+.2f}" if o is not None else "?")
        if e.cortex_outcome == "planned":
            assert not call.startswith("fb ") and call not in ("-", "?")
        else:
            assert call.startswith("fb ") and "reflex" in call


def test_a_row_names_the_plan_s_tool_or_the_fallback_and_waits_for_its_reward() -> None:
    base = dict(id=trail_id("r", 3, 120, TrailKind.ESCALATION, "math"), run="r", env="dev", npc=3, tick=120,
                kind=TrailKind.ESCALATION, region=Region.MATH, gate_open=True, latency_ms=41.6)
    planned = TrailEvent(**base, cortex_outcome="planned",
                         cortex_response='{"name": "open_door", "arguments": {"x": 1}}')
    outcome = TrailOutcome(id=planned.id, npc=3, tick=160, after_ticks=40, reward=0.5, lock_opened=True,
                           died=False)
    assert escalation_row(TrailRecord(planned, outcome)) == "120\tmath\topen_door\tplanned\t42\t+0.50"
    encoded = TrailEvent(**{**base, "latency_ms": 1234.4}, cortex_outcome="planned",
                         fallback="encoder:no_call",
                         cortex_response='{"name": "go_to", "arguments": {}}')
    assert escalation_row(TrailRecord(encoded, None)) == "120\tmath\tgo_to+enc\tplanned\t1234\t?"
    failed = TrailEvent(**base, cortex_outcome="invalid_answer", fallback="encoder:bad_json,reflex")
    assert escalation_row(TrailRecord(failed, None)) == "120\tmath\tfb reflex+enc\tinvalid~\t42\t?"


def test_the_selected_npc_s_escalations_are_drawn_headless(recorded, replay_path: Path) -> None:
    path, npc, _ = recorded
    npc %= 16  # the replay is one env of 16 NPCs; the store's NPC ids are env * 16 + slot
    viewer = Viewer(ReplaySource(replay_path), headless=True, trails=TrailPanel(str(path), interval_s=0.05))
    try:
        viewer.tick()
        assert viewer.drawer.trail_text == []  # nothing selected: no trail list
        viewer.click(viewer.drawer.row_rects[npc].center)
        assert viewer.state.selected == npc
        assert viewer.trails is not None
        expected = settled(viewer.trails, npc)
        viewer.tick()
        assert viewer.drawer.trail_text == expected
        # the head line is drawn in cognitive violet between the NPC rows and the legend
        rows_end = max(r.bottom for r in viewer.drawer.row_rects.values())
        legend_top = min(r.top for r in viewer.drawer.tile_legend_rects.values())
        band = pygame.surfarray.pixels3d(viewer.surface)[viewer.drawer.panel_rect.left:
                                                         viewer.drawer.panel_rect.right, rows_end:legend_top]
        assert (band == np.array(GATE_COLOUR, dtype=np.uint8)).all(axis=-1).sum() > 20
        del band
    finally:
        viewer.trails.close()
        viewer.close()


def test_without_a_store_the_panel_says_so_in_one_line(replay_path: Path) -> None:
    viewer = Viewer(ReplaySource(replay_path), headless=True)
    try:
        viewer.tick()
        viewer.state.selected = 2
        viewer.tick()
        assert viewer.drawer.trail_text == [NO_TRAILS]
    finally:
        viewer.close()


@pytest.mark.parametrize("content", [None, b"this is not a database, only forty bytes\n" * 30])
def test_a_missing_or_corrupt_store_is_one_line_not_a_crash(tmp_path: Path, replay_path: Path,
                                                            content: bytes | None) -> None:
    path = tmp_path / "trails.sqlite"
    if content is not None:
        path.write_bytes(content)
    viewer = Viewer(ReplaySource(replay_path), headless=True, trails=TrailPanel(str(path), interval_s=0.05))
    try:
        viewer.state.selected = 1
        viewer.tick()
        assert viewer.trails is not None
        lines = settled(viewer.trails, 1, done=lambda lines: len(lines) == 1)
        viewer.tick()
        assert viewer.drawer.trail_text == lines
        why = "no such file" if content is None else "file is not a database"
        assert lines == [f"trail store trails.sqlite: {'cannot read: ' if content else ''}{why}"]
        assert (not path.exists()) if content is None else path.read_bytes() == content  # read-only
    finally:
        viewer.trails.close()
        viewer.close()


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store location not yet written: a SQLite path, or an empty PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_dsn")
    return str(tmp_path / "trails.sqlite")


def test_the_panel_follows_a_store_written_while_it_reads(location: str) -> None:
    """A store that appears later and grows while the panel polls it (the live writer beside the viewer)."""
    panel = TrailPanel(location, interval_s=0.05)
    try:
        (waiting,) = settled(panel, 7, done=lambda lines: len(lines) == 1)
        assert waiting.endswith("holds no trails (no schema)" if location.startswith("postgresql://")
                                else "trail store trails.sqlite: no such file")
        store = open_store(location)
        events = [TrailEvent(id=trail_id("r", 7, t, TrailKind.ESCALATION, "food"), run="r", env="dev", npc=7,
                             tick=t, kind=TrailKind.ESCALATION, region=Region.FOOD, gate_open=True,
                             cortex_outcome="stale", fallback="reflex", latency_ms=5.0) for t in (10, 20)]
        store.insert(events[:1])
        first = settled(panel, 7, done=lambda lines: len(lines) == 3)
        assert first[2] == "10\tfood\tfb reflex\tstale\t5.0\t?"
        store.insert(events[1:])
        lines = settled(panel, 7, done=lambda lines: len(lines) == 4)
        assert [line.split("\t")[0] for line in lines[2:]] == ["20", "10"]
        assert settled(panel, 8)[1] == "none recorded yet"
        store.close()
    finally:
        panel.close()


def test_a_read_only_open_changes_nothing_and_refuses_an_older_schema(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    with pytest.raises(TrailStoreError, match="no such file"):
        open_store(str(missing), readonly=True)
    assert not missing.exists()
    old = tmp_path / "old.sqlite"
    with open_store(str(old)) as store:  # a version-2 store: the last migration undone
        store.conn.execute("DELETE FROM schema_version WHERE version = 3")
    with pytest.raises(TrailStoreError, match="schema version 2, older than the 3"):
        open_store(str(old), readonly=True)
    with sqlite3.connect(old) as conn:  # the reader left it as it was
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 2


def test_with_a_run_the_panel_lists_only_that_run_s_escalations(tmp_path: Path, replay_path: Path) -> None:
    store = open_store(str(tmp_path / "trails.sqlite"))
    store.insert([TrailEvent(id=trail_id(run, 7, tick, TrailKind.ESCALATION, "food"), run=run, env="dev",
                             npc=7, tick=tick, kind=TrailKind.ESCALATION, region=Region.FOOD, gate_open=True,
                             cortex_outcome="planned", latency_ms=1.0)
                  for run, tick in (("older", 900), ("newer", 30))])
    store.close()
    rows = {}
    for run in ("newer", None):
        panel = TrailPanel(str(tmp_path / "trails.sqlite"), interval_s=0.05, run=run)
        try:
            rows[run] = [line.split("\t")[0] for line in settled(panel, 7)[2:]]
        finally:
            panel.close()
    assert rows == {"newer": ["30"], None: ["900", "30"]}  # the older run's tick 900 is not this run's
    live = LiveSource.__new__(LiveSource)
    live.run = "newer"
    assert trails_run(live) == "newer"
    assert trails_run(ReplaySource(replay_path)) is None  # a replay that names no run: every run
    writer = ReplayWriter(4, "keys", extra={"trails_run": "eval-x"})
    world = GridWorld(stage_config(4), seed=1)
    world.reset(seed=1)
    writer.add(world.frame(0))
    assert trails_run(ReplaySource(writer.save(tmp_path / "named.npz"))) == "eval-x"


def test_the_viewer_finds_the_store_beside_a_replay(tmp_path: Path, replay_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert trails_for(None, str(replay_path)) is None  # no store there
    (replay_path.parent / "trails.sqlite").touch()
    assert trails_for(None, str(replay_path)) == str(replay_path.parent / "trails.sqlite")
    assert trails_for("postgresql://u@h/db", str(replay_path)) == "postgresql://u@h/db"
    assert trails_for(None, None) is None
    # an unreadable store given on the command line: the replay still plays, exit 0
    assert main(["--replay", str(replay_path), "--frames", "3", "--trails", str(tmp_path / "x.sqlite")]) == 0


def test_mode_view_and_viewer_live_take_the_trail_store(compose_run, replay_path: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from train.modes import open_viewer, view_mode

    store = tmp_path / "missing" / "trails.sqlite"
    run = compose_run("mode=view", f"view.replay={replay_path}", "view.frames=2", f"view.trails={store}")
    assert run.view.trails == str(store)
    assert view_mode(run) == 0  # an unreadable store is the panel's line, not the viewer's failure
    assert not store.parent.exists()  # the viewer only reads
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert open_viewer("run-1", "runs/x/trails.sqlite") is None
    told = capsys.readouterr().err
    assert "-m train.view --live --run run-1 --wait 30 --trails runs/x/trails.sqlite" in told
