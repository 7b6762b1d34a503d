"""How the host loads an organ: into a worker process of its own (default), or into the host's process.

``ProcessLoader`` starts ``python -m organs.host.worker`` per loaded organ: loading is the worker's
start (python, torch, the weights), unloading ends the process, so every byte it used goes back to
the system - torch's allocator and the C heap keep freed memory in a process, an exited process keeps
nothing. ``InProcessLoader`` loads into this process (the in-process runtime, tests): fast, but what
unloading frees is up to the allocators.

Both return a ``LoadedOrgan``: ``await call(verb, data)`` (encoded request -> encoded reply),
``await close()``, ``rss_bytes()``. A failed load raises ``LoadError`` whose message names the weight
file; a failed call raises ``CallError``, and ``WorkerGone`` when the worker died (it is then unloaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from organs.host.memory import rss_bytes
from organs.host.registry import OrganSpec
from organs.host.worker import pack, read_frame_async

#: The folder holding the project's packages, put on a worker's PYTHONPATH so it runs the host's code.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class LoadError(RuntimeError):
    """An organ could not be loaded; the message names the organ and its weight file."""


class CallError(RuntimeError):
    """A loaded organ failed to answer one call."""


class WorkerGone(CallError):
    """The organ's worker process ended; the organ is no longer loaded."""


def _naming_file(spec: OrganSpec, reason: str) -> str:
    """A load failure's message: the organ, the reason, and the weight file when the reason omits it."""
    if spec.weights in reason:
        return f"{spec.name}: {reason}"
    return f"{spec.name}: {reason} (weights {spec.weights})"


class LoadedOrgan(Protocol):
    """One loaded organ."""

    pid: int
    """Its worker process (0: loaded in the host's own process)."""
    load_s: float
    """Seconds the load took."""

    async def call(self, verb: str, data: bytes) -> bytes:
        """The encoded reply to one encoded request."""
        ...

    async def close(self) -> None:
        """Unload: free what it holds."""
        ...

    def rss_bytes(self) -> int:
        """Resident memory of its worker process (0 in-process)."""
        ...


class Loader(Protocol):
    """Loads organs."""

    async def load(self, spec: OrganSpec) -> LoadedOrgan:
        """The loaded organ, or LoadError naming the weight file."""
        ...


class ProcessOrgan:
    """An organ loaded in its own worker process."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, load_s: float) -> None:
        self.name, self.proc, self.load_s = name, proc, load_s
        self.pid = proc.pid

    async def call(self, verb: str, data: bytes) -> bytes:
        """The encoded reply to one encoded request (one at a time: the caller serialises)."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(pack([verb, data]))
            await stdin.drain()
            frame = await read_frame_async(stdout)
        except (ConnectionError, ValueError) as exc:
            frame = None
            if isinstance(exc, ValueError):
                self.proc.kill()
        if frame is None:
            code = await self.proc.wait()
            raise WorkerGone(f"{self.name} worker (pid {self.pid}) ended with code {code}")
        status, payload = frame
        if status != "ok":
            raise CallError(f"{self.name}: {payload}")
        return payload

    async def close(self, timeout_s: float = 3.0) -> None:
        """End the worker: close its stdin, SIGKILL if it has not exited within timeout_s."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def rss_bytes(self) -> int:
        """Resident memory of the worker process."""
        return rss_bytes(self.pid) if self.proc.returncode is None else 0


class ProcessLoader:
    """Loads each organ into a new worker process."""

    def __init__(self, threads: int = 1, timeout_s: float = 60.0) -> None:
        self.threads, self.timeout_s = threads, timeout_s

    async def load(self, spec: OrganSpec) -> ProcessOrgan:
        """Start a worker for the organ and wait for it to be ready; LoadError naming the file if not."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH", "")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "organs.host.worker", "--entry", spec.kind.entry, "--weights", spec.weights,
            "--threads", str(self.threads), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            frame = await asyncio.wait_for(read_frame_async(proc.stdout), self.timeout_s)
        except TimeoutError:
            frame = ["error", f"loading {spec.weights} took more than {self.timeout_s:g} s"]
        except BaseException:  # cancelled (a stopping host) or a garbled frame: no worker is left behind
            proc.kill()
            await proc.wait()
            raise
        if frame is None or frame[0] != "ready":
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            code = await proc.wait()
            reason = (frame[1] if frame is not None
                      else f"worker exited with code {code} while loading {spec.weights}")
            raise LoadError(_naming_file(spec, reason))
        return ProcessOrgan(spec.name, proc, float(frame[1]))


class InProcessOrgan:
    """An organ loaded into the host's own process."""

    pid = 0

    def __init__(self, name: str, organ: Any, load_s: float) -> None:
        self.name, self.organ, self.load_s = name, organ, load_s

    async def call(self, verb: str, data: bytes) -> bytes:
        """The encoded reply, computed in a thread so the event loop keeps running."""
        if self.organ is None:
            raise WorkerGone(f"{self.name} is unloaded")
        try:
            return await asyncio.to_thread(self.organ.handle, verb, data)
        except Exception as exc:
            raise CallError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        """Drop the organ (what is freed is up to the allocators)."""
        self.organ = None

    def rss_bytes(self) -> int:
        """0: an in-process organ has no process of its own."""
        return 0


class InProcessLoader:
    """Loads organs into this process."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    async def load(self, spec: OrganSpec) -> InProcessOrgan:
        """The organ loaded in a thread; LoadError naming the file if it fails."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        module, _, function = spec.kind.entry.partition(":")
        try:
            load = getattr(importlib.import_module(module), function)
            organ = await asyncio.to_thread(load, spec.weights, self.threads)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise LoadError(_naming_file(spec, text[0] if text else type(exc).__name__)) from None
        return InProcessOrgan(spec.name, organ, loop.time() - started)
