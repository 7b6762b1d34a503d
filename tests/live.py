"""Helpers for tests of the live organism with real processes: waiting on conditions, liveness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from agents.organism import OrganismConfig
from agents.supervisor import SupervisorConfig


async def until(check: Callable[[], object], timeout: float = 20.0,
                what: str | Callable[[], object] = "condition") -> float:
    """Seconds until check() holds; fails naming what (or what() when callable) after timeout."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            awaited = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {awaited}")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


def organism_config(tmp_path: Path, npcs: int, **supervisor: float) -> OrganismConfig:
    """A small stage-0 organism for tests; the supervisor's timings may be overridden.

    The hang timeout stays at its 3 s default: on a loaded 2-core machine a shorter one kills
    healthy NPCs whose heartbeats are merely late, and how fast a hang is noticed is not what these
    tests check (the fake-clock tests in test_supervisor_states.py do).
    """
    timings = {"start_s": 0.5, "stop_timeout_s": 3.0, "backoff_s": 0.2, **supervisor}
    return OrganismConfig(
        npcs=npcs,
        duration_s=0,
        stage=0,
        run="test-organism",
        run_dir=str(tmp_path / "run"),
        hidden=32,
        supervisor=SupervisorConfig(**timings),  # type: ignore[arg-type]
    )
