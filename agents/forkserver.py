"""How NPC processes are made: forked from a preloaded server (shared pages), or spawned plainly.

``ForkServer`` starts ``python -m agents.forkserver`` once: it imports torch and the project
(``agents.npc`` and what it imports, with torch threads = 1), calls the module's ``preload()`` and
then forks one child per request, so a child starts in milliseconds and shares the preloaded pages
(its PSS is its own pages plus a share of the rest). Each child, before anything else: leaves the
server's socket, becomes its own session and process group, asks for SIGKILL when the server dies
(the server asks the same of the supervisor, so no child outlives its supervisor), writes its pid
into its cgroup's ``cgroup.procs`` files, points stdout and stderr at its log file and calls the
target ``module:function(config)``; the return value is the exit code.

The server reaps its children and reports every exit over the socket, so ``ForkedProcess.poll``
sees exit codes (negative: killed by that signal) as a child of its own would.

``SpawnFactory`` runs ``python -m agents.npc`` per child instead (wrapped in a systemd scope by that
backend); slower and not shared, but needs no server. Both are ``ProcessFactory``s.

Wire protocol (newline-delimited JSON over a socketpair): request ``{"id", "target", "name",
"config", "procs", "log"}``; reply ``{"id", "pid"}`` or ``{"id", "error"}``; event ``{"exit", "code"}``.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.supervisor import ChildSpec

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send sig to this process when its parent exits (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def join_cgroup(procs_files: list[str]) -> None:
    """Write this process's pid into each cgroup.procs file."""
    pid = str(os.getpid())
    for path in procs_files:
        with open(path, "w") as f:
            f.write(pid)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # not yet its own group, or gone
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class ForkedProcess:
    """A child of the fork server, seen from the supervisor."""

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self.server = server

    def poll(self) -> int | None:
        """Exit code reported by the server, or None while it runs."""
        return self.server.exits.get(self.pid)

    def signal(self, sig: int) -> None:
        """Signal the child's process group."""
        if self.poll() is None:
            _signal_group(self.pid, sig)


class ForkServer:
    """Client of one preloading fork server process; a ``ProcessFactory``."""

    def __init__(self, target: str = "agents.npc:child_main", preload: tuple[str, ...] = ("agents.npc",),
                 log_dir: str | Path | None = None, start_timeout_s: float = 60.0) -> None:
        self.target = target
        self.preload = preload
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.start_timeout_s = start_timeout_s
        self.exits: dict[int, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._next = 0
        self._reader: threading.Thread | None = None
        self.pid = 0

    def start(self) -> ForkServer:
        """Start the server and wait until its preloading is done."""
        parent, child = socket.socketpair()
        cmd = [sys.executable, "-m", "agents.forkserver", str(child.fileno()), ",".join(self.preload)]
        self.process = subprocess.Popen(cmd, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        child.close()
        self._sock = parent
        self._reader = threading.Thread(target=self._read, name="forkserver-reader", daemon=True)
        self._reader.start()
        ready = self._wait_reply(-1, self.start_timeout_s)
        self.pid = int(ready["pid"])
        return self

    def _read(self) -> None:
        buf = b""
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self._replies[-2] = {"error": "fork server closed"}
                    self._cond.notify_all()
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            with self._cond:
                for line in lines:
                    msg = json.loads(line)
                    if "exit" in msg:
                        self.exits[int(msg["exit"])] = int(msg["code"])
                    else:
                        self._replies[int(msg["id"])] = msg
                self._cond.notify_all()

    def _wait_reply(self, rid: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._replies:
                if -2 in self._replies:
                    raise RuntimeError(f"fork server: {self._replies[-2]['error']}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fork server: no answer to request {rid} in {timeout:.1f} s")
                self._cond.wait(left)
            return self._replies.pop(rid)

    def __call__(self, spec: ChildSpec, procs_files: list[str]) -> ForkedProcess:
        """Fork one child for spec, joining the given cgroup files first."""
        if self._sock is None:
            raise RuntimeError("fork server is not started")
        self._next += 1
        rid = self._next
        log = str(self.log_dir / f"{spec.name}.log") if self.log_dir is not None else ""
        request = {"id": rid, "target": self.target, "name": spec.name, "config": spec.config,
                   "procs": procs_files, "log": log}
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        reply = self._wait_reply(rid, 10.0)
        if "error" in reply:
            raise RuntimeError(f"fork server: {reply['error']}")
        return ForkedProcess(int(reply["pid"]), self)

    def close(self) -> None:
        """Stop the server (its remaining children get SIGKILL from the kernel)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        if self.process is not None:
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def __enter__(self) -> ForkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class PopenProcess:
    """A plainly spawned child (its own process group)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def poll(self) -> int | None:
        """Exit code, or None while it runs."""
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        """Signal the child's process group."""
        if self.proc.poll() is None:
            _signal_group(self.pid, sig)


class SpawnFactory:
    """Runs ``python -m agents.npc --config-json ...`` per child; ``wrap`` may put it in a scope."""

    def __init__(self, module: str = "agents.npc", log_dir: str | Path | None = None,
                 wrap: Callable[[str, list[str]], list[str]] | None = None) -> None:
        self.module = module
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.wrap = wrap

    def __call__(self, spec: ChildSpec, procs_files: list[str]) -> PopenProcess:
        """Spawn one child for spec."""
        argv = [sys.executable, "-m", self.module, "--config-json", json.dumps(spec.config)]
        if self.wrap is not None:
            argv = self.wrap(spec.name, argv)
        out = open(self.log_dir / f"{spec.name}.log", "ab") if self.log_dir is not None else None  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, process_group=0,
                                    preexec_fn=(lambda: join_cgroup(procs_files)) if procs_files else None)
        finally:
            if out is not None:
                out.close()
        return PopenProcess(proc)


# -- the server side ------------------------------------------------------------------------------


def _child(sock: socket.socket, request: dict[str, Any]) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        sock.close()
        os.setsid()
        die_with_parent()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        join_cgroup(request["procs"])
        if request.get("log"):
            fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> dumps its stacks into its log
        module, _, func = request["target"].partition(":")
        code = int(getattr(importlib.import_module(module), func)(request["config"]) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(fd: int, preload: list[str]) -> None:
    """The fork server's loop: preload, then fork on request and report exits until the socket closes."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when children stop
    import torch

    torch.set_num_threads(1)
    for name in preload:
        module = importlib.import_module(name)
        if hasattr(module, "preload"):
            module.preload()
    gc.collect()
    gc.freeze()  # preloaded objects stay out of the children's collections: their pages stay shared
    sock = socket.socket(fileno=fd)
    children: set[int] = set()

    def send(msg: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(json.dumps(msg).encode() + b"\n")

    send({"id": -1, "pid": os.getpid()})
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    buf = b""
    while True:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
        if not sel.select(timeout=0.02):
            continue
        data = sock.recv(65536)
        if not data:
            for pid in children:
                _signal_group(pid, signal.SIGKILL)
            return
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            request = json.loads(line)
            try:
                pid = os.fork()
            except OSError as exc:
                send({"id": request["id"], "error": f"fork: {exc}"})
                continue
            if pid == 0:
                _child(sock, request)
            children.add(pid)
            send({"id": request["id"], "pid": pid})


if __name__ == "__main__":
    serve(int(sys.argv[1]), [m for m in sys.argv[2].split(",") if m])
