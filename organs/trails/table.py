"""Stored trail records as a readable fixed-width text table (oldest first, like ``tail``)."""

from __future__ import annotations

from collections.abc import Sequence

from organs.trails.store import TrailRecord

HEADER = ("tick", "npc", "kind", "region", "gate", "cortex", "latency_ms", "fallback", "K", "reward", "lock",
          "died", "id")
#: Columns aligned to the right (numbers).
_RIGHT = {"tick", "npc", "latency_ms", "K", "reward"}


def _row(record: TrailRecord) -> tuple[str, ...]:
    e, o = record.event, record.outcome
    escalated = e.kind == "escalation"
    return (
        str(e.tick), str(e.npc), str(e.kind), str(e.region), "open" if e.gate_open else "closed",
        e.cortex_outcome or "-", f"{e.latency_ms:.1f}" if escalated else "-", e.fallback or "-",
        str(o.after_ticks) if o else "-", f"{o.reward:+.3f}" if o else "-",
        ("yes" if o.lock_opened else "no") if o else "-", ("yes" if o.died else "no") if o else "-", e.id,
    )  # fmt: skip


def format_table(records: Sequence[TrailRecord]) -> str:
    """The records (newest first, as ``TrailStore.last`` gives them) as a table, oldest row first."""
    rows = [HEADER] + [_row(r) for r in reversed(records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if name in _RIGHT else cell.ljust(w)
                 for cell, w, name in zip(row, widths, HEADER, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
