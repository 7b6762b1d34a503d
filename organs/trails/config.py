"""TrailsConfig: where decision trails are stored and how the trail writer batches, as one config group."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nervous.trail_stream import TrailStreamConfig

#: The SQLite file of a run's trails, inside its run folder, when neither store nor dsn is set.
DEFAULT_STORE_NAME = "trails.sqlite"
_DURABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class TrailsConfig:
    """The trail store (SQLite file or PostgreSQL), the writer's batching and the stream's limits."""

    record: bool = False
    """In-process training and eval: record every gate decision and escalation into the store."""
    outcome_ticks: int = 40
    """World ticks after a decision at which its outcome (reward, lock opened, died) is measured."""
    eval_last: int = 3
    """mode=eval with record: each NPC's last escalations kept in eval_stage<s>.json and printed."""
    store: str = ""
    """SQLite file of the trails; '' puts ``trails.sqlite`` in the run folder."""
    dsn: str = ""
    """postgresql://user@host:port/db of a PostgreSQL store; when set it is used instead of ``store``."""
    batch_size: int = 2000
    """Events the writer commits at most in one transaction."""
    flush_interval_s: float = 0.05
    """Longest an event waits in the writer's batch before its commit."""
    ack_wait_s: float = 10.0
    """Seconds an event delivered to the writer may stay unacked before the stream delivers it again."""
    durable: str = "trail-writer"
    """Name of the writer's durable consumer on the trails stream."""
    heartbeat_s: float = 1.0
    """Seconds between the writer's heartbeats."""
    stream: TrailStreamConfig = field(default_factory=TrailStreamConfig)
    """Limits of the JetStream trails stream (max age, max bytes, duplicate window)."""

    def __post_init__(self) -> None:
        if isinstance(self.stream, dict):
            self.stream = TrailStreamConfig(**self.stream)
        if self.dsn and not self.dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"trails.dsn={self.dsn!r}: must start with postgresql://")
        if not isinstance(self.outcome_ticks, int) or self.outcome_ticks < 1:
            raise ValueError(f"trails.outcome_ticks={self.outcome_ticks!r}: must be an integer >= 1")
        if isinstance(self.eval_last, bool) or not isinstance(self.eval_last, int) or self.eval_last < 1:
            raise ValueError(f"trails.eval_last={self.eval_last!r}: must be an integer >= 1")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"trails.batch_size={self.batch_size!r}: must be an integer in 1..10000")
        if not 0 < self.flush_interval_s <= 10:
            raise ValueError(f"trails.flush_interval_s={self.flush_interval_s!r}: must be in (0, 10]")
        if not self.ack_wait_s >= 1:
            raise ValueError(f"trails.ack_wait_s={self.ack_wait_s!r}: must be >= 1")
        if not self.heartbeat_s > 0:
            raise ValueError(f"trails.heartbeat_s={self.heartbeat_s!r}: must be > 0")
        if not isinstance(self.durable, str) or not _DURABLE.fullmatch(self.durable):
            raise ValueError(f"trails.durable={self.durable!r}: must be 1-64 letters, digits, '_' or '-'")

    def location(self, run_dir: str | Path = ".") -> str:
        """The store to open: the dsn when set, else the SQLite path (default ``run_dir/trails.sqlite``)."""
        if self.dsn:
            return self.dsn
        return self.store or str(Path(run_dir) / DEFAULT_STORE_NAME)
