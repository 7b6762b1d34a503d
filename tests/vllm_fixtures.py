"""A real vLLM for the tests marked ``vllm``: started from its own venv, torn down with its children."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.vllm import environment
from nervous.server import free_port

#: A cold start on 2 busy cores takes about a minute (imports, engine core, model load).
START_TIMEOUT_S = 300.0
#: Test-only settings: one sequence at a time (queued requests are served in the order the scheduling
#: policy picks) and a log line per request handed to the engine core.
SERVER_ARGS = ("--max-num-seqs", "1", "--enable-log-requests")


@dataclass
class VllmServer:
    """A running vLLM server serving the tiny model as nyx."""

    base_url: str
    """OpenAI API root, http://127.0.0.1:PORT/v1."""
    root: str
    """Server root (for /health and /metrics)."""
    start_s: float
    """Seconds from launch to a healthy /health."""
    log: Path
    """The server's stdout and stderr."""
    process: subprocess.Popen[bytes]


def _healthy(root: str) -> bool:
    try:
        with urllib.request.urlopen(f"{root}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM the server's process group (API server, engine core, workers), SIGKILL what outlives it."""
    group = process.pid  # start_new_session made it the group leader
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        process.poll()  # reap the leader so the group can empty
        time.sleep(0.2)
    else:
        os.killpg(group, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """vLLM from ``python -m deploy.vllm setup``'s venv, caches in a temp folder; fails if there is none."""
    try:
        env = environment.find()
    except environment.VllmEnvMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    cache = tmp_path_factory.mktemp("vllm")
    port = free_port()
    command, environ = environment.serve_command(env, port, cache, extra=SERVER_ARGS)
    environ["VLLM_SERVER_DEV_MODE"] = "1"  # /pause and /resume, to queue requests deterministically
    log = cache / "server.log"
    root = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while not _healthy(root):
            if process.poll() is not None:
                reason = f"vLLM exited with {process.returncode} while starting:\n{_tail(log)}"
                pytest.fail(reason, pytrace=False)
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(f"vLLM not healthy after {START_TIMEOUT_S:.0f} s:\n{_tail(log)}", pytrace=False)
            time.sleep(0.5)
        yield VllmServer(f"{root}/v1", root, time.monotonic() - started, log, process)
    finally:
        _stop(process)
