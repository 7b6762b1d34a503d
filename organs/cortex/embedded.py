"""The embedded cortex: ``python -m organs.cortex serve`` as a subprocess on a free loopback port.

Used when no ``cortex.base_url`` is given (as ``nervous.server.EmbeddedServer`` is for nats-server):
``start`` waits until ``/health`` answers, ``stop`` ends exactly the process it started (SIGTERM, then
SIGKILL after a deadline). Usable as a sync or async context manager.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from nervous.server import free_port, stop_process


class CortexServerError(RuntimeError):
    """The embedded cortex server did not come up."""


class EmbeddedCortex:
    """One cortex server process on 127.0.0.1, owned by this object."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 20.0, delay_ms: float = 0.0) -> None:
        self.port = port or free_port()
        self.delay_ms = delay_ms
        """How long the server holds each chat completion (``--delay-ms``: an LLM's latency)."""
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        """The OpenAI API root of this server (``cortex.base_url``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> EmbeddedCortex:
        """Start the server and wait until /health answers; CortexServerError with its last line if not."""
        if self.process is not None and self.process.poll() is None:
            return self
        cmd = [
            sys.executable,
            "-m",
            "organs.cortex",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--delay-ms",
            str(self.delay_ms),
        ]
        root = str(Path(__file__).resolve().parents[2])  # the checkout whose organs package this is
        self._log = tempfile.TemporaryFile(prefix="nimmerverse-cortex-")  # a pipe nobody reads could fill
        self.process = subprocess.Popen(
            cmd, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")
                self.process = None
                last = err.strip().splitlines()[-1:] or ["no output"]
                raise CortexServerError(f"cortex server on port {self.port} exited at start: {last[0]}")
            if self._healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise CortexServerError(
            f"cortex server on port {self.port} not healthy after {self.start_timeout_s:.1f} s"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=0.5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop this server (SIGTERM, then SIGKILL after timeout_s); safe to call twice."""
        proc, self.process = self.process, None
        if proc is None:
            return
        stop_process(proc, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedCortex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedCortex:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
