"""Helpers for tests of the live organism with real processes: waiting on conditions, liveness."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from agents.organism import OrganismConfig
from agents.supervisor import SupervisorConfig


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until check() holds; fails naming what after timeout."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, OSError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


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
