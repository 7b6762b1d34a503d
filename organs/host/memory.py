"""Resident memory of processes, read from /proc: how the organ host shows that unloading frees memory."""

from __future__ import annotations

from pathlib import Path


def rss_bytes(pid: int) -> int:
    """Resident set size of one process in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """Pids of the direct children of a process (all its threads' children)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return found


def descendants(pid: int) -> list[int]:
    """Pids of every process below one process."""
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (shared pages counted per process)."""
    return rss_bytes(pid) + sum(rss_bytes(child) for child in descendants(pid))
