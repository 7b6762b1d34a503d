"""The viewer's trail panel: the selected NPC's last escalations, read from a trail store on a thread.

``TrailPanel(location, run=...)`` opens the store read-only (``open_store(..., readonly=True)``) on a daemon
thread that polls it every ``interval_s`` (and at once when the selection changes), so the viewer's
frame loop never waits on the database: ``lines(npc)`` only copies what the thread last read. SQLite in
WAL mode lets this reader run beside the live trail writer. A store that is missing, corrupt or of
another schema version is one line in the panel (retried each poll: a run may create it later), never
an exception in the viewer.

NPC ids are the store's: slot ``b * N + n`` of env ``b``, so the viewer's NPC ``n`` (env 0) is ``n``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec

from organs.trails.store import TrailRecord, TrailStore, TrailStoreError, is_dsn, open_store, shown

#: Escalations listed for the selected NPC.
LAST = 5
#: Widest tool-call / fallback and outcome cells of a row (characters).
_CALL_CHARS, _OUTCOME_CHARS = 13, 8


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def escalation_row(record: TrailRecord) -> str:
    """One escalation as a panel row of tab-separated cells: tick, region, the call (the plan's tool, or
    ``fb`` and the fallback taken, e.g. ``fb reflex``; ``+enc`` when the boundary's encoder stood in for
    its model), the cortex's outcome, latency (ms), reward after K ticks ('?' until known)."""
    e, o = record.event, record.outcome
    call = ""
    if e.cortex_response:
        try:
            call = str(msgspec.json.decode(e.cortex_response).get("name", "")) or "?"
        except (msgspec.DecodeError, AttributeError):
            call = "?"
    parts = [p for p in e.fallback.split(",") if p]
    others = [p for p in parts if not p.startswith("encoder")]
    call = call or (f"fb {'+'.join(others)}" if others else "-")
    if len(others) < len(parts):
        call += "+enc"
    reward = f"{o.reward:+.2f}" if o is not None else "?"
    outcome = _cut(e.cortex_outcome or "-", _OUTCOME_CHARS)
    latency = f"{e.latency_ms:.1f}" if e.latency_ms < 10 else f"{e.latency_ms:.0f}"  # in-process: < 1 ms
    cells = (str(e.tick), str(e.region), _cut(call, _CALL_CHARS), outcome, latency, reward)
    return "\t".join(cells)


def panel_lines(npc: int, records: Sequence[TrailRecord], source: str) -> list[str]:
    """The panel's text for NPC npc: a head line naming where the list comes from, column titles, then its
    escalations newest first ('none recorded yet' when there are none)."""
    head = f"NPC {npc} last escalations  ({source})"
    if not records:
        return [head, "none recorded yet"]
    k = next((r.outcome.after_ticks for r in records if r.outcome is not None), None)
    titles = "\t".join(("tick", "region", "call/fallback", "outcome", "ms", f"R@{k}" if k else "R@K"))
    return [head, titles, *(escalation_row(r) for r in records)]


class TrailPanel:
    """The selected NPC's last escalations from one trail store, polled read-only on its own thread."""

    def __init__(self, location: str, last: int = LAST, interval_s: float = 1.0, run: str | None = None
                 ) -> None:
        if last < 1:
            raise ValueError(f"last={last!r}: must be >= 1")
        if interval_s <= 0:
            raise ValueError(f"interval_s={interval_s!r}: must be > 0")
        self.location, self.last, self.interval_s, self.run = location, last, interval_s, run
        """run: list only this run's escalations (a store may hold several runs); None: every run's."""
        self.name = shown(location) if is_dsn(location) else Path(location).name
        self.source = f"{self.name}{f' run {run}' if run else ''}, every {interval_s:g} s"
        self.error = ""
        """Why the store cannot be read ('' when it can), one line."""
        self._npc: int | None = None
        self._read: tuple[int, list[TrailRecord]] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="viewer-trails", daemon=True)
        self._thread.start()

    def lines(self, npc: int) -> list[str]:
        """What the panel shows for NPC npc now (never waits on the store); asks the thread for npc."""
        with self._lock:
            if self._npc != npc:
                self._npc = npc
                self._wake.set()
            read, error = self._read, self.error
        if error:  # the file's name, not its whole path: one line that fits the panel
            return [error.replace(self.location, self.name)]
        if read is None or read[0] != npc:
            return [f"NPC {npc} last escalations  ({self.source})", "reading..."]
        return panel_lines(npc, read[1], self.source)

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(5.0)

    # -- the background thread --------------------------------------------------------------------

    def _serve(self) -> None:
        store: TrailStore | None = None
        try:
            while not self._stop.is_set():
                with self._lock:
                    npc = self._npc
                    self._wake.clear()
                if npc is not None:
                    store = self._poll(store, npc)
                self._wake.wait(self.interval_s)
        finally:
            if store is not None:
                store.close()

    def _poll(self, store: TrailStore | None, npc: int) -> TrailStore | None:
        """Read NPC npc's last escalations (opening the store first when needed); the store to keep,
        None after an error (closed, reopened at the next poll)."""
        try:
            if store is None:
                store = open_store(self.location, readonly=True)
            records = store.last(npc=npc, n=self.last, run=self.run, kind="escalation")
        except Exception as exc:  # noqa: BLE001  # TrailStoreError, or sqlite3/psycopg errors while reading
            if isinstance(exc, TrailStoreError):
                error = str(exc)
            else:
                first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                error = f"trail store {shown(self.location)}: cannot read: {first}"
            with self._lock:
                self.error, self._read = error, None
            if store is not None:
                store.close()
            return None
        with self._lock:
            self._read, self.error = (npc, records), ""
        return store
