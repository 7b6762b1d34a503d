"""The trail store's schema as versioned migrations: one SQL text for SQLite and PostgreSQL.

``MIGRATIONS[i]`` takes a store from version ``i`` to ``i + 1``; ``schema_version`` holds one row per
applied migration (version, applied_at). Only types both databases read the same way are used
(TEXT, BIGINT, DOUBLE PRECISION, BOOLEAN); JSON lives in TEXT columns as the writer got it.

Version history:

1 - ``trail_events`` (one row per gate decision or escalation, keyed by event id) and
    ``trail_outcomes`` (one row per event id: the first outcome that arrived; no foreign key, since an
    outcome may arrive before its event).
2 - ``trail_events.numbers``: the boundary's input (the NPC's numbers message), '' in older rows;
    ``trail_events.stage``: the world's curriculum stage, -1 in older rows.
3 - ``trail_events.cortex_model``: the model the escalation's chat-completions request asked ('' for a
    gate decision and in older rows), so fine-tuning data can be chosen by the model that answered
    (the request itself, ``cortex_request``, was in the schema from version 1 but written empty until
    the live and in-process runtimes recorded it with this version).
"""

from __future__ import annotations

SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)

EVENT_COLUMNS = (
    "id", "run", "env", "npc", "tick", "kind", "region", "gate_open", "inputs", "situation",
    "cortex_request", "cortex_response", "cortex_outcome", "latency_ms", "fallback", "at", "numbers",
    "stage", "cortex_model", "stored_at",
)  # fmt: skip
OUTCOME_COLUMNS = ("id", "npc", "tick", "after_ticks", "reward", "lock_opened", "died", "at", "stored_at")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE trail_events (
            id TEXT PRIMARY KEY,
            run TEXT NOT NULL,
            env TEXT NOT NULL,
            npc BIGINT NOT NULL,
            tick BIGINT NOT NULL,
            kind TEXT NOT NULL,
            region TEXT NOT NULL,
            gate_open BOOLEAN NOT NULL,
            inputs TEXT NOT NULL,
            situation TEXT NOT NULL,
            cortex_request TEXT NOT NULL,
            cortex_response TEXT NOT NULL,
            cortex_outcome TEXT NOT NULL,
            latency_ms DOUBLE PRECISION NOT NULL,
            fallback TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            stored_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX trail_events_npc_tick ON trail_events (npc, tick)",
        """CREATE TABLE trail_outcomes (
            id TEXT PRIMARY KEY,
            npc BIGINT NOT NULL,
            tick BIGINT NOT NULL,
            after_ticks BIGINT NOT NULL,
            reward DOUBLE PRECISION NOT NULL,
            lock_opened BOOLEAN NOT NULL,
            died BOOLEAN NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            stored_at DOUBLE PRECISION NOT NULL
        )""",
    ),
    (
        "ALTER TABLE trail_events ADD COLUMN numbers TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE trail_events ADD COLUMN stage BIGINT NOT NULL DEFAULT -1",
    ),
    (
        "ALTER TABLE trail_events ADD COLUMN cortex_model TEXT NOT NULL DEFAULT ''",
    ),
)

#: The schema version this code writes and reads.
LATEST = len(MIGRATIONS)


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """An idempotent insert into table (a row whose id is already there is skipped), ``?`` placeholders."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"
