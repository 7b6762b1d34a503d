"""Decision trails: every gate decision and escalation, kept without loss (the seed's phoebe).

Modules (one concept each):

- ``nervous.messages.TrailEvent`` / ``TrailOutcome`` - the typed records (an outcome K ticks later is
  its own message with the event's id); ``nervous.trail_stream`` - the JetStream work-queue stream with
  limits and dedup by event id, and ``TrailPublisher`` for the processes that decide.
- ``organs.trails.config`` - ``TrailsConfig``: store path or ``dsn``, batching, stream limits.
- ``organs.trails.schema`` - versioned migrations, one SQL text for SQLite and PostgreSQL.
- ``organs.trails.store`` - ``open_store(path_or_dsn)``: idempotent inserts keyed by id, queries.
- ``organs.trails.writer`` - ``TrailWriter.write_many``: batches into a store (also fed in-process).
- ``organs.trails.recorder`` - ``TrailRecorder``: gate decisions, escalations and their outcomes from a
  batched world (the trainer's, or the live world server's), to any sink.
- ``organs.trails.bus_sink`` - ``BusTrailSink``: the live processes' sink, queued from the tick and
  published into the stream by a task of its own.
- ``organs.trails.service`` - the writer on the bus: durable pull consumer, batches, ack after commit.
- ``organs.trails.table`` / ``organs.trails.cli`` - ``python -m organs.trails serve|query|export``.
- ``organs.trails.panel`` - ``TrailPanel``: the viewer's list of the selected NPC's last escalations,
  read-only on a thread of its own.
- ``organs.trails.export`` - fine-tuning examples (TRL chat format with tools) from the escalations.
- ``organs.trails.pgserver`` - a throwaway PostgreSQL cluster for tests and the benchmark.
"""

from organs.trails.config import TrailsConfig
from organs.trails.store import TrailRecord, TrailStore, TrailStoreError, open_store
from organs.trails.writer import TrailWriter

__all__ = ["TrailRecord", "TrailStore", "TrailStoreError", "TrailWriter", "TrailsConfig", "open_store"]
