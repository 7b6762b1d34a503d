"""The trail store: trail events and their outcomes in SQLite (a file) or PostgreSQL (a dsn), one schema.

``open_store("runs/x/trails.sqlite")`` or ``open_store("postgresql://user@host:5432/db")`` opens (and
migrates, see ``organs.trails.schema``) a store; a store whose schema version is newer than this code
knows is refused with one ``TrailStoreError`` line, as is one that cannot be reached or read.
``open_store(..., readonly=True)`` (the viewer) reads an existing store without writing to it.

Plain SQL through the standard library's ``sqlite3`` and psycopg 3: the two dialects differ only in
placeholders and in how a transaction is locked, so no SQL toolkit sits in between. ``insert`` is
idempotent per id (``ON CONFLICT (id) DO NOTHING``): a redelivered or republished event is stored
once, and the first outcome of an event wins. SQLite runs in WAL mode with ``synchronous=FULL``: a
commit that returned survives a crash of the process and of the machine.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from nervous.messages import TrailEvent, TrailKind, TrailOutcome
from organs.trails.schema import (
    EVENT_COLUMNS,
    LATEST,
    MIGRATIONS,
    OUTCOME_COLUMNS,
    SCHEMA_VERSION_TABLE,
    insert_sql,
)

#: Rows from which a PostgreSQL batch goes in by COPY rather than executemany.
COPY_ROWS = 100
#: Key of the PostgreSQL advisory lock held while a store is migrated.
_MIGRATION_LOCK = 0x7472_6169_6C73  # "trails"



def _select_events(filters: tuple[tuple[str, object], ...], order: str) -> tuple[str, list[object]]:
    """SELECT of events with their outcomes, filtered by the clauses whose value is given, in order."""
    where = [clause for clause, value in filters if value is not None]
    params = [value for _, value in filters if value is not None]
    cols = ", ".join(f"e.{c}" for c in EVENT_COLUMNS) + ", " + ", ".join(f"o.{c}" for c in OUTCOME_COLUMNS)
    sql = (f"SELECT {cols} FROM trail_events e LEFT JOIN trail_outcomes o ON o.id = e.id"
           + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {order}")
    return sql, params

class TrailStoreError(RuntimeError):
    """A trail store that cannot be opened, read or written, in one line naming it."""


@dataclass(frozen=True)
class TrailRecord:
    """One stored event with its outcome (None until one arrived)."""

    event: TrailEvent
    outcome: TrailOutcome | None


def is_dsn(location: str) -> bool:
    """Whether a store location is a PostgreSQL dsn (else it is a SQLite path)."""
    return location.startswith(("postgresql://", "postgres://"))


def shown(location: str) -> str:
    """A store location fit for messages: a dsn's password hidden."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", location)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class TrailStore:
    """Trail events and outcomes in one database; use ``open_store``."""

    def __init__(self, conn: Any, dialect: str, where: str) -> None:
        self.conn, self.dialect, self.where = conn, dialect, where
        self._event_sql = self._sql(insert_sql("trail_events", EVENT_COLUMNS))
        self._outcome_sql = self._sql(insert_sql("trail_outcomes", OUTCOME_COLUMNS))

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.dialect == "postgres" else text

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Any]:
        """A cursor inside one transaction, committed when the block ends, rolled back on error."""
        if self.dialect == "postgres":
            with self.conn.transaction(), self.conn.cursor() as cur:
                yield cur
            return
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # a writer takes SQLite's lock at once
        try:
            yield cur
        except BaseException:
            self.conn.rollback()
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    # -- schema -----------------------------------------------------------------------------------

    def version(self) -> int:
        """The schema version of the store (0: empty)."""
        with self._transaction() as cur:
            return self._version(cur)

    def _version(self, cur: Any) -> int:
        if self.dialect == "postgres":
            cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
        else:
            cur.execute("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'schema_version'")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT MAX(version) FROM schema_version")
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def migrate(self, create: bool = True) -> int:
        """Bring the schema to LATEST (without create: refuse an empty store); the version found."""
        with self._transaction(write=True) as cur:
            if self.dialect == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            found = self._version(cur)
            if found > LATEST:
                raise TrailStoreError(
                    f"trail store {shown(self.where)} has schema version {found}, newer than the {LATEST} "
                    "this nimmerverse knows: upgrade nimmerverse or use another store"
                )
            if found == 0 and not create:
                raise TrailStoreError(f"trail store {shown(self.where)} holds no trails (no schema)")
            if found < LATEST:
                cur.execute(SCHEMA_VERSION_TABLE)
            for version in range(found + 1, LATEST + 1):
                for statement in MIGRATIONS[version - 1]:
                    cur.execute(statement)
                cur.execute(self._sql("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"),
                            (version, time.time()))
            return found

    def check(self) -> int:
        """Refuse (one line) a store this code cannot read as it is, without changing it; its version."""
        found = self.version()
        if found == 0:
            raise TrailStoreError(f"trail store {shown(self.where)} holds no trails (no schema)")
        if found != LATEST:
            newer = "newer" if found > LATEST else "older"
            raise TrailStoreError(
                f"trail store {shown(self.where)} has schema version {found}, {newer} than the {LATEST} "
                "this nimmerverse reads: " + ("upgrade nimmerverse" if found > LATEST
                                              else "open it once with a writer to migrate it")
            )
        return found

    # -- writing ----------------------------------------------------------------------------------

    def insert(
        self, msgs: Iterable[TrailEvent | TrailOutcome], stored_at: float | None = None
    ) -> tuple[int, int]:
        """Store events and outcomes in one transaction; (new events, new outcomes), repeats skipped."""
        now = time.time() if stored_at is None else stored_at
        events: list[tuple[Any, ...]] = []
        outcomes: list[tuple[Any, ...]] = []
        encode = msgspec.json.encode
        for m in msgs:
            if isinstance(m, TrailEvent):
                events.append((
                    m.id, m.run, m.env, m.npc, m.tick, m.kind.value, m.region.value, m.gate_open,
                    encode(m.inputs).decode(), m.situation, m.cortex_request, m.cortex_response,
                    m.cortex_outcome, m.latency_ms, m.fallback, m.at, m.numbers, m.stage, m.cortex_model, now,
                ))  # fmt: skip
            elif isinstance(m, TrailOutcome):
                outcomes.append(
                    (m.id, m.npc, m.tick, m.after_ticks, m.reward, m.lock_opened, m.died, m.at, now)
                )
            else:
                raise TypeError(f"trail store: {type(m).__name__} is not a TrailEvent or TrailOutcome")
        new_events = new_outcomes = 0
        try:
            with self._transaction(write=True) as cur:
                if events:
                    new_events = self._insert_rows(cur, "trail_events", EVENT_COLUMNS, self._event_sql,
                                                   events)
                if outcomes:
                    new_outcomes = self._insert_rows(cur, "trail_outcomes", OUTCOME_COLUMNS,
                                                     self._outcome_sql, outcomes)
        except TrailStoreError:
            raise
        except Exception as exc:  # sqlite3.Error, psycopg.Error: the store is away or broken
            where = shown(self.where)
            raise TrailStoreError(f"trail store {where}: write failed: {_first_line(exc)}") from None
        return new_events, new_outcomes

    def _insert_rows(self, cur: Any, table: str, columns: tuple[str, ...], sql: str,
                     rows: list[tuple[Any, ...]]) -> int:
        """Insert rows whose id is new (the first of a batch's repeats wins); how many were new.

        PostgreSQL takes a batch of ``COPY_ROWS`` or more by COPY into a temporary table, then one
        ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: 25 us a row against executemany's 42 (2,000-row
        batches, loaded machine). Smaller batches and SQLite go through executemany.
        """
        if self.dialect != "postgres" or len(rows) < COPY_ROWS:
            cur.executemany(sql, rows)
            return max(cur.rowcount, 0)
        first: dict[Any, tuple[Any, ...]] = {}
        for row in rows:
            first.setdefault(row[0], row)
        names = ", ".join(columns)
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table}_incoming (LIKE {table}) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY {table}_incoming ({names}) FROM STDIN") as copy:
            for row in first.values():
                copy.write_row(row)
        cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_incoming "
                    "ON CONFLICT (id) DO NOTHING")
        return max(cur.rowcount, 0)

    # -- reading ----------------------------------------------------------------------------------

    def last(self, npc: int | None = None, n: int = 20, run: str | None = None,
             kind: TrailKind | str | None = None) -> list[TrailRecord]:
        """The newest n events (highest tick first), of one NPC, run or kind when given, with outcomes."""
        kind_value = None if kind is None else TrailKind(kind).value
        sql, params = _select_events((("e.npc = ?", npc), ("e.run = ?", run), ("e.kind = ?", kind_value)),
                                     "e.tick DESC, e.at DESC, e.id DESC LIMIT ?")
        with self._transaction() as cur:
            cur.execute(self._sql(sql), (*params, n))
            rows = cur.fetchall()
        return [self._record(row) for row in rows]

    def records(self, kind: TrailKind | str | None = None, run: str | None = None, since: float | None = None,
                until: float | None = None, stage: int | None = None, batch: int = 1000
                ) -> Iterator[TrailRecord]:
        """Every event (of one kind, run and stage, decided in [since, until), when given) with its outcome,
        oldest first, read ``batch`` rows at a time."""
        kind_value = None if kind is None else TrailKind(kind).value
        sql, params = _select_events((("e.kind = ?", kind_value), ("e.run = ?", run), ("e.at >= ?", since),
                                      ("e.at < ?", until), ("e.stage = ?", stage)), "e.at, e.id")
        with self._transaction() as cur:
            cur.execute(self._sql(sql), tuple(params))
            while rows := cur.fetchmany(batch):
                yield from (self._record(row) for row in rows)

    def last_per_npc(self, run: str, n: int = 3, kind: TrailKind | str = TrailKind.ESCALATION
                     ) -> dict[int, list[TrailRecord]]:
        """Each NPC's newest n events of one kind in one run (newest first), by NPC id in order."""
        newest: dict[int, deque[TrailRecord]] = defaultdict(lambda: deque(maxlen=n))
        for record in self.records(kind=kind, run=run):
            newest[record.event.npc].append(record)
        ordered = {npc: sorted(records, key=lambda r: (r.event.tick, r.event.at), reverse=True)
                   for npc, records in newest.items()}
        return dict(sorted(ordered.items()))

    def _record(self, row: tuple[Any, ...]) -> TrailRecord:
        e = dict(zip(EVENT_COLUMNS, row[: len(EVENT_COLUMNS)], strict=True))
        o = dict(zip(OUTCOME_COLUMNS, row[len(EVENT_COLUMNS):], strict=True))
        del e["stored_at"]
        e.update(gate_open=bool(e["gate_open"]), inputs=msgspec.json.decode(e["inputs"]))
        event = TrailEvent(**e)
        outcome = None
        if o["id"] is not None:
            outcome = TrailOutcome(
                id=o["id"], npc=o["npc"], tick=o["tick"], after_ticks=o["after_ticks"], reward=o["reward"],
                lock_opened=bool(o["lock_opened"]), died=bool(o["died"]), at=o["at"],
            )
        return TrailRecord(event, outcome)

    def counts(self) -> tuple[int, int]:
        """(events, outcomes) stored."""
        with self._transaction() as cur:
            cur.execute("SELECT (SELECT COUNT(*) FROM trail_events), (SELECT COUNT(*) FROM trail_outcomes)")
            events, outcomes = cur.fetchone()
        return int(events), int(outcomes)

    def event_ids(self, since: float = 0.0) -> list[tuple[str, float]]:
        """(id, stored_at) of the events stored after ``since`` (Unix seconds)."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT id, stored_at FROM trail_events WHERE stored_at > ?"), (since,))
            return [(str(i), float(t)) for i, t in cur.fetchall()]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> TrailStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect_sqlite(path: str, create: bool, readonly: bool = False) -> Any:
    file = Path(path)
    if not create and not file.is_file():
        raise TrailStoreError(f"trail store {path}: no such file")
    if readonly:  # a reader beside a live writer: no pragma, no migration, no lock taken for writing
        try:
            return sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   timeout=30.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise TrailStoreError(f"trail store {path}: cannot open: {_first_line(exc)}") from None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(file, isolation_level=None, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except (OSError, sqlite3.Error) as exc:
        raise TrailStoreError(f"trail store {path}: cannot open: {_first_line(exc)}") from None
    return conn


def _connect_postgres(dsn: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise TrailStoreError(
            f"trail store {shown(dsn)} needs psycopg 3: pip install 'psycopg[binary]'"
        ) from None
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise TrailStoreError(f"cannot connect to trail store {shown(dsn)}: {_first_line(exc)}") from None


def open_store(location: str, create: bool = True, readonly: bool = False) -> TrailStore:
    """The store at a SQLite path or a postgresql:// dsn, migrated to the latest schema.

    Without create, a missing or empty store is refused instead of made (for readers). Readonly (the
    viewer) opens an existing store without writing to it: a store not at the latest schema is refused.
    """
    if not location:
        raise TrailStoreError("trail store: no location (a SQLite path or a postgresql:// dsn)")
    postgres = is_dsn(location)
    create = create and not readonly
    conn = _connect_postgres(location) if postgres else _connect_sqlite(location, create, readonly)
    store = TrailStore(conn, "postgres" if postgres else "sqlite", location)
    try:
        if readonly:
            store.check()
        else:
            store.migrate(create=create)
    except TrailStoreError:
        store.close()
        raise
    except Exception as exc:  # sqlite3.DatabaseError ("file is not a database"), psycopg errors
        store.close()
        raise TrailStoreError(f"trail store {shown(location)}: cannot read: {_first_line(exc)}") from None
    return store
