"""Stored trail records as a readable fixed-width text table (oldest first, like ``tail``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def record_row(record: TrailRecord) -> dict[str, Any]:
    """One record as a JSON-ready row: the table's columns, with numbers as numbers."""
    e, o = record.event, record.outcome
    return {"tick": e.tick, "npc": e.npc, "kind": str(e.kind), "region": str(e.region),
            "gate_open": e.gate_open, "cortex": e.cortex_outcome, "latency_ms": round(e.latency_ms, 3),
            "fallback": e.fallback,
            "after_ticks": o.after_ticks if o else None, "reward": o.reward if o else None,
            "lock_opened": o.lock_opened if o else None, "died": o.died if o else None, "id": e.id}


def format_per_npc(by_npc: dict[int, list[TrailRecord]], max_npcs: int = 16) -> str:
    """Each NPC's records (newest first, as ``TrailStore.last_per_npc`` gives them) in one table, NPC by
    NPC, oldest row first; the first max_npcs NPCs, then a line saying how many were left out."""
    shown = list(by_npc)[:max_npcs]
    rows = [record for npc in reversed(shown) for record in by_npc[npc]]  # format_table reverses again
    text = format_table(rows)
    if len(by_npc) > max_npcs:
        text += f"\n... and {len(by_npc) - max_npcs} more NPCs"
    return text
