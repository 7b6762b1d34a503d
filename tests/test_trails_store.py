"""The trail store on SQLite and on a real PostgreSQL: round trips, idempotence, migrations, refusals."""

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from nervous.messages import Region, TrailEvent, TrailKind, TrailOutcome
from organs.trails import TrailsConfig, TrailStoreError, TrailWriter, open_store, pgserver
from organs.trails.cli import main
from organs.trails.schema import LATEST

STORES = ["sqlite", "postgres"]


@pytest.fixture(params=STORES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store location of each kind: a SQLite path, or the dsn of an empty PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_dsn")
    return str(tmp_path / "run" / "trails.sqlite")


SITUATION = '{"name": "report_situation", "arguments": {"npc": NPC, "note": "naïve \\u0000"}}'


def event(i: int, npc: int = 7, kind: TrailKind = TrailKind.ESCALATION, run: str = "run-1") -> TrailEvent:
    escalated = kind == TrailKind.ESCALATION
    return TrailEvent(
        id=f"{run}:{npc}:{i}:{kind}:math", run=run, env="dev", npc=npc, tick=10 * i, kind=kind,
        region=Region.MATH if i % 2 else Region.FOOD, gate_open=escalated or bool(i % 3),
        inputs={"collapse": 0.25 * i, "lifeforce": -1.5e-3, "ünïcode": 1e300},
        situation=SITUATION.replace("NPC", str(npc)) if escalated else "",
        cortex_request='{"model": "nyx", "messages": []}' if escalated else "",
        cortex_response='{"choices": [{"message": {"tool_calls": []}}]}' if escalated else "",
        cortex_outcome="planned" if escalated else "", latency_ms=12.25 * i,
        fallback="reflex" if i == 3 else "", at=1.7e9 + i,
    )  # fmt: skip


def outcome(ev: TrailEvent, reward: float = 1.5) -> TrailOutcome:
    return TrailOutcome(id=ev.id, npc=ev.npc, tick=ev.tick + 20, after_ticks=20, reward=reward,
                        lock_opened=reward > 0, died=reward < 0, at=ev.at + 1)


def test_events_and_outcomes_round_trip_unchanged(location: str) -> None:
    events = [event(i) for i in range(1, 6)] + [event(9, kind=TrailKind.GATE)] + [event(2, npc=3)]
    outcomes = [outcome(events[0]), outcome(events[2], reward=-2.0)]
    with open_store(location) as store:
        assert store.insert(events + outcomes) == (7, 2)
        records = store.last(npc=7, n=20)
        assert [r.event for r in records] == sorted(events[:6], key=lambda e: -e.tick)
        by_id = {r.event.id: r.outcome for r in records}
        assert by_id[events[0].id] == outcomes[0] and by_id[events[2].id] == outcomes[1]
        assert sum(o is not None for o in by_id.values()) == 2
        assert [r.event.id for r in store.last(npc=7, n=2)] == [events[5].id, events[4].id]
        assert [r.event.kind for r in store.last(kind="gate")] == [TrailKind.GATE]
        assert [r.event.npc for r in store.last(npc=3)] == [3]
        assert store.last(run="other") == []
        assert store.counts() == (7, 2)


def test_repeats_are_stored_once_and_the_first_outcome_wins(location: str) -> None:
    events = [event(i) for i in range(1, 4)]
    early = outcome(events[0], reward=2.0)
    with open_store(location) as store:
        assert store.insert([early]) == (0, 1)  # an outcome may come before its event
        assert store.insert(events + events[:2]) == (3, 0)  # repeats inside one batch, too
        assert store.insert(events + [outcome(events[0], reward=-9.0)]) == (0, 0)
        assert store.counts() == (3, 1)
        assert store.last(npc=7, n=1)[0].outcome is None  # newest first: tick 30
        assert {r.event.id: r.outcome for r in store.last(npc=7)}[events[0].id] == early
        writer = TrailWriter(store)  # the in-process feed of batched training
        assert writer.write_many(events + [event(4)]) == 1
        assert (writer.events, writer.repeats, writer.batches) == (1, 3, 1)
        assert writer.write_many([]) == 0 and writer.batches == 1


def _set_version(location: str, version: int) -> None:
    if location.startswith("postgresql://"):
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, 0)", (version,))
    else:
        with sqlite3.connect(location) as conn:
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (version,))
        conn.close()


def test_migrations_are_versioned_and_a_newer_schema_is_refused_in_one_line(location: str) -> None:
    with open_store(location) as store:
        assert store.version() == LATEST
        store.insert([event(1)])
    with open_store(location) as store:  # opening again applies nothing twice
        assert store.version() == LATEST and store.counts() == (1, 0)
    _set_version(location, LATEST + 1)
    with pytest.raises(TrailStoreError) as err:
        open_store(location)
    message = str(err.value)
    assert f"schema version {LATEST + 1}, newer than the {LATEST}" in message and "\n" not in message
    _set_version(location, LATEST + 2)
    with pytest.raises(TrailStoreError, match=f"schema version {LATEST + 2}"):
        open_store(location, create=False)


def _make_v2_store(location: str) -> None:
    """A store as version 2 of the schema left it, with one escalation row (no cortex_model column)."""
    from organs.trails.schema import EVENT_COLUMNS, MIGRATIONS, SCHEMA_VERSION_TABLE

    e = event(1)
    columns = [c for c in EVENT_COLUMNS if c != "cortex_model"]
    row = [getattr(e, c, None) for c in columns]
    row[columns.index("kind")], row[columns.index("region")] = e.kind.value, e.region.value
    row[columns.index("inputs")], row[columns.index("stored_at")] = "{}", 1.0
    statements = [SCHEMA_VERSION_TABLE, *MIGRATIONS[0], *MIGRATIONS[1]]
    postgres = location.startswith("postgresql://")
    mark = "%s" if postgres else "?"
    insert = f"INSERT INTO trail_events ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    versions = f"INSERT INTO schema_version (version, applied_at) VALUES ({mark}, 0)"
    conn = psycopg.connect(location, autocommit=True) if postgres else sqlite3.connect(location)
    if not postgres:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
    for statement in statements:
        conn.execute(statement)
    for version in (1, 2):
        conn.execute(versions, (version,))
    conn.execute(insert, row)
    conn.commit()
    conn.close()


def test_a_version_2_store_migrates_to_record_the_cortex_model(location: str) -> None:
    if not location.startswith("postgresql://"):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
    _make_v2_store(location)
    assert LATEST == 3
    with open_store(location) as store:
        assert store.version() == 3
        (old,) = store.last()
        assert old.event.id == event(1).id and old.event.cortex_model == ""  # the old row, defaulted
        new = event(2)
        new.cortex_model = "nyx"
        store.insert([new])
        assert {r.event.id: r.event.cortex_model for r in store.last()} == {event(1).id: "", new.id: "nyx"}
        assert store.last(n=1)[0].event == new
    _set_version(location, 4)
    with pytest.raises(TrailStoreError) as err:
        open_store(location)
    assert "schema version 4, newer than the 3 this nimmerverse knows" in str(err.value)
    assert "\n" not in str(err.value)


def test_readers_do_not_make_stores_and_broken_stores_are_one_line(tmp_path: Path, postgres_dsn: str) -> None:
    missing = tmp_path / "none.sqlite"
    with pytest.raises(TrailStoreError, match="no such file"):
        open_store(str(missing), create=False)
    assert not missing.exists()
    with pytest.raises(TrailStoreError, match="holds no trails"):
        open_store(postgres_dsn, create=False)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TrailStoreError, match="garbage.sqlite: cannot open: file is not a database"):
        open_store(str(garbage))
    dsn = "postgresql://trails:secret@127.0.0.1:1/trails"
    with pytest.raises(TrailStoreError) as err:
        open_store(dsn)
    assert "postgresql://trails:***@127.0.0.1:1/trails" in str(err.value)
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("dsn", "mysql://x", "trails.dsn='mysql://x': must start with postgresql://"),
        ("batch_size", 0, "trails.batch_size=0: must be an integer in 1..10000"),
        ("flush_interval_s", 0.0, "trails.flush_interval_s=0.0: must be in (0, 10]"),
        ("ack_wait_s", 0.5, "trails.ack_wait_s=0.5: must be >= 1"),
        ("heartbeat_s", 0, "trails.heartbeat_s=0: must be > 0"),
        ("durable", "a.b", "trails.durable='a.b': must be 1-64 letters, digits, '_' or '-'"),
        ("stream", {"max_age_s": -1}, "trails.stream.max_age_s=-1: must be > 0"),
    ],
)
def test_bad_config_fields_are_named_in_one_line(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        TrailsConfig(**{field: value})
    assert str(err.value) == message


def test_the_store_defaults_to_the_run_folder_and_a_dsn_wins() -> None:
    assert TrailsConfig().location("outputs/run") == "outputs/run/trails.sqlite"
    assert TrailsConfig(store="/x/t.sqlite").location("outputs/run") == "/x/t.sqlite"
    dsn = "postgresql://u@h:5432/db"
    assert TrailsConfig(store="/x/t.sqlite", dsn=dsn).location("outputs/run") == dsn


def test_query_prints_an_npcs_last_decisions_as_a_table(
    location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [event(i) for i in range(1, 31)] + [event(40, npc=8)]
    with open_store(location) as store:
        store.insert(events + [outcome(events[28], reward=-0.5)])
    where = ["--dsn", location] if location.startswith("postgresql://") else ["--store", location]
    assert main(["query", *where, "--npc", "7", "--last", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = "tick npc kind region gate cortex latency_ms fallback K reward lock died id"
    assert lines[0].split() == header.split()
    assert [line.split()[0] for line in lines[1:]] == ["280", "290", "300"]  # the last three, oldest first
    row = f"290 7 escalation math open planned 355.2 - 20 -0.500 no yes {events[28].id}"
    assert lines[2].split() == row.split()
    assert lines[3].split()[8:12] == ["-", "-", "-", "-"]  # no outcome yet
    assert main(["query", *where, "--npc", "99"]) == 0
    assert capsys.readouterr().out.startswith("no trail events for npc 99 in ")


def test_query_errors_are_one_line_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--store", str(tmp_path / "none.sqlite"), "--npc", "1"]) == 2
    assert capsys.readouterr().err == f"error: trail store {tmp_path / 'none.sqlite'}: no such file\n"
    assert main(["query", "--npc", "1"]) == 2
    assert capsys.readouterr().err == "error: query needs --store PATH or --dsn postgresql://...\n"


def test_a_large_batch_goes_in_once_with_the_first_of_its_repeats_winning(location: str) -> None:
    """On PostgreSQL a batch of COPY_ROWS or more takes the COPY path: the same rules as executemany."""
    from organs.trails.store import COPY_ROWS

    events = [event(i, npc=i % 16) for i in range(1, 2 * COPY_ROWS)]
    first = [outcome(e, reward=1.0) for e in events]
    with open_store(location) as store:
        assert store.insert(events[:10]) == (10, 0)  # stored before: repeats in the large batch
        batch = events + events[COPY_ROWS:] + first + [outcome(events[0], reward=-5.0)]
        assert store.insert(batch) == (len(events) - 10, len(events))
        assert store.counts() == (len(events), len(events))
        stored = {r.event.id: r for r in store.records()}
        assert {i: r.event for i, r in stored.items()} == {e.id: e for e in events}
        assert all(r.outcome is not None and r.outcome.reward == 1.0 for r in stored.values())
        assert store.insert(batch) == (0, 0)


def test_a_batch_of_ten_thousand_commits_quickly_on_both_stores(location: str) -> None:
    events = [event(i, npc=i % 16) for i in range(10_000)]
    with open_store(location) as store:
        start = time.perf_counter()
        for k in range(0, len(events), 500):
            store.insert(events[k:k + 500])
        elapsed = time.perf_counter() - start
        assert store.counts() == (10_000, 0)
    assert elapsed < 10.0  # >= 1,000 events/s even on a loaded 2-core machine (the benchmark says how fast)


def test_without_postgresql_binaries_the_error_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pgserver, "SEARCH_DIRS", (str(tmp_path / "pg" / "*" / "bin"),))
    with pytest.raises(pgserver.PostgresError) as err:
        pgserver.find_bindir()
    assert str(err.value) == (
        f"no PostgreSQL server found (initdb and pg_ctl); looked in: pg_ctl on PATH, pg_config --bindir, "
        f"{tmp_path}/pg/*/bin; install one, e.g. apt-get install postgresql"
    )
    found = tmp_path / "pg" / "15" / "bin"
    found.mkdir(parents=True)
    for name in ("initdb", "pg_ctl"):
        (found / name).touch()
    assert pgserver.find_bindir() == found
