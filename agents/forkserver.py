"""How NPC processes are made: forked from a preloaded server (shared pages), or spawned plainly.

``ForkServer`` starts ``python -m agents.forkserver`` once: it imports torch and the project
(``agents.npc`` and what it imports, with torch threads = 1), calls the module's ``preload()`` and
then forks one child per request, so a child starts in milliseconds and shares the preloaded pages
(its PSS is its own pages plus a share of the rest). Each child, before anything else: leaves the
server's socket, becomes its own session and process group, asks for SIGKILL when the server dies
(the server asks the same of the supervisor, so no child outlives its supervisor), writes its pid
into its cgroup's ``cgroup.procs`` files, points stdout and stderr at its log file, sets the
environment its spec gives (its bus login), drops to its spec's Unix user (``agents.identity``) and
calls the target ``module:function(config)``; the return value is the exit code.

The server reaps its children and reports every exit over the socket, so ``ForkedProcess.poll``
sees exit codes (negative: killed by that signal) as a child of its own would. When the server
itself dies, its children die with it; each ``ForkedProcess`` then learns its end from a pidfd, so
a supervisor sees every NPC of a dead server exit and restarts them after it (OTP's rest_for_one).
The server is a supervised child itself: ``ForkServer.launch`` is its factory, and its liveness
pings (``{"alive"}`` every ``alive_s``) are its heartbeats. With ``standby`` a second, preloaded
server waits beside it and takes over at once when it dies (preloading takes seconds; a restart
then costs a fork), and a new spare preloads behind it.

``SpawnFactory`` runs ``python -m agents.npc`` per child instead (wrapped in a systemd scope by that
backend), or any ``ChildSpec.argv`` (cell services, and the other supervised services); slower and
not shared, but needs no server. Both are ``ProcessFactory``s.

Wire protocol (newline-delimited JSON over a socketpair): request ``{"id", "target", "name",
"config", "procs", "log", "env", "user"}``; reply ``{"id", "pid"}`` or ``{"id", "error"}``; events
``{"exit", "code"}`` and ``{"alive"}``; ``{"id": -1, "pid"}`` once preloading is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import gc
import importlib
import json
import logging
import os
import select
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

from agents.identity import drop_ids, drop_to, lookup
from agents.supervisor import ChildSpec

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

log = logging.getLogger(__name__)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send sig to this process when its parent exits (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def join_cgroup(procs_files: list[str], pid: int | None = None) -> None:
    """Write a pid (this process's by default) into each cgroup.procs file."""
    text = str(pid if pid is not None else os.getpid())
    for path in procs_files:
        with open(path, "w") as f:
            f.write(text)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # not yet its own group, or gone
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def make_subreaper() -> None:
    """Adopt this process's orphaned descendants (Linux prctl), so the children of a dead fork server
    are reaped here instead of lingering as zombies under a PID 1 that may never reap them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):  # gone already (its exit is reported), or no pidfds here
        return None


class ForkedProcess:
    """A child of the fork server, seen from the supervisor.

    Its exit is known from the server's report or, when the server died first (its children die with
    it: they asked for SIGKILL), from a pidfd opened when it was forked; it is then reaped here if this
    process adopted it (``make_subreaper``) and reported as killed by SIGKILL when its status is lost.
    """

    def __init__(self, pid: int, link: _ServerLink) -> None:
        self.pid = pid
        self.link = link
        self._fd = _pidfd(pid)
        self._code: int | None = None

    def poll(self) -> int | None:
        """Exit code (reported by the server, or found after the server died), or None while it runs."""
        if self._code is None:
            code = self.link.exits.get(self.pid)
            if code is None and self.link.closed.is_set() and self._exited():
                code = self._reap()
            if code is not None:
                self._code = code
                self._close_fd()
        return self._code

    def _exited(self) -> bool:
        if self._fd is None:
            return not process_alive(self.pid)
        return bool(select.select([self._fd], [], [], 0)[0])

    def _reap(self) -> int:
        with contextlib.suppress(ChildProcessError):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return os.waitstatus_to_exitcode(status)
        return -signal.SIGKILL  # died with its server; the status went to whoever reaped it

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def signal(self, sig: int) -> None:
        """Signal the child's process group."""
        if self.poll() is None:
            _signal_group(self.pid, sig)

    def __del__(self) -> None:
        self._close_fd()


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class _ServerLink:
    """One incarnation of the fork server: its socket, reader thread, replies and reported exits."""

    def __init__(self, sock: socket.socket, on_alive: Callable[[], None] | None) -> None:
        self.sock = sock
        self.on_alive = on_alive
        self.exits: dict[int, int] = {}
        self.replies: dict[int, dict[str, Any]] = {}
        self.cond = threading.Condition()
        self.closed = threading.Event()
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, name="forkserver-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self.cond:
                    self.closed.set()
                    self.cond.notify_all()
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            alive = False
            with self.cond:
                for line in lines:
                    try:
                        msg = json.loads(line)
                        if "exit" in msg:
                            self.exits[int(msg["exit"])] = int(msg["code"])
                        elif "alive" in msg:
                            alive = True
                        else:
                            rid = int(msg["id"])
                            if rid == -1:  # preloaded: {"id": -1, "pid"}
                                self.ready.set()
                                alive = True
                            else:
                                self.replies[rid] = msg
                    except (ValueError, KeyError, TypeError):
                        log.warning("fork server: unreadable line %r", line[:80])
                self.cond.notify_all()
            if alive and self.on_alive is not None:
                self.on_alive()

    def wait_reply(self, rid: int, timeout: float) -> dict[str, Any]:
        """The server's reply to request rid; RuntimeError when it closed, TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while rid not in self.replies:
                if self.closed.is_set():
                    raise RuntimeError("fork server: closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fork server: no answer to request {rid} in {timeout:.1f} s")
                self.cond.wait(left)
            return self.replies.pop(rid)

    def close(self) -> None:
        """Shut the socket (the server then kills its children and exits)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class ForkServer:
    """Client of the preloading fork server; a ``ProcessFactory`` for NPCs.

    ``start()`` launches it and waits until it is ready (standalone use); under a supervisor,
    ``launch`` is the fork server's own factory: it returns at once, ``on_alive`` is called on its
    readiness and every liveness ping (``alive_s``), and NPCs are forked only while it is ready.
    Each launch is a new incarnation; children of an earlier one see their server's end.
    """

    def __init__(self, target: str = "agents.npc:child_main", preload: tuple[str, ...] = ("agents.npc",),
                 log_dir: str | Path | None = None, start_timeout_s: float = 60.0,
                 fork_timeout_s: float = 2.0, alive_s: float = 0.25,
                 on_alive: Callable[[], None] | None = None, standby: bool = False) -> None:
        self.target = target
        self.preload = preload
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.start_timeout_s = start_timeout_s
        self.fork_timeout_s = fork_timeout_s
        self.alive_s = alive_s
        self.on_alive = on_alive
        self.standby = standby
        self.process: subprocess.Popen[bytes] | None = None
        self._link: _ServerLink | None = None
        self._spare: tuple[subprocess.Popen[bytes], _ServerLink] | None = None
        self._next = 0

    @property
    def pid(self) -> int:
        """Process id of the current incarnation (0 when none runs)."""
        return self.process.pid if self.process is not None else 0

    @property
    def ready(self) -> bool:
        """The current incarnation has preloaded and takes requests."""
        link = self._link
        return link is not None and link.ready.is_set() and not link.closed.is_set()

    def launch(self, spec: ChildSpec | None = None, procs_files: list[str] | None = None) -> PopenProcess:
        """Start a new incarnation without waiting for it (ends the old one first); its handle.

        With ``standby``, a preloaded spare takes over at once (moved into procs_files' groups) and a
        new spare starts preloading behind it, so a restart costs a fork, not an import of torch.
        """
        self._end_incarnation()
        spare, self._spare = self._spare, None
        if spare is not None and spare[0].poll() is None and not spare[1].closed.is_set():
            self.process, self._link = spare
            with contextlib.suppress(OSError):
                join_cgroup(procs_files or [], self.process.pid)
            self._link.on_alive = self.on_alive
            if self._link.ready.is_set() and self.on_alive is not None:
                self.on_alive()  # it was ready before it took over
        else:
            if spare is not None:
                self._kill(spare)
            self.process, self._link = self._popen(procs_files or [], self.on_alive)
        if self.standby:
            self._spare = self._popen([], None)
        return PopenProcess(self.process)

    def _popen(self, procs_files: list[str],
               on_alive: Callable[[], None] | None) -> tuple[subprocess.Popen[bytes], _ServerLink]:
        parent, child = socket.socketpair()
        cmd = [sys.executable, "-m", "agents.forkserver", str(child.fileno()), ",".join(self.preload),
               str(self.alive_s)]
        log_file = open(self.log_dir / "forkserver.log", "ab") if self.log_dir is not None else None  # noqa: SIM115
        try:
            process = subprocess.Popen(
                cmd, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                process_group=0, preexec_fn=(lambda: join_cgroup(procs_files)) if procs_files else None,
            )
        finally:
            child.close()
            if log_file is not None:
                log_file.close()
        return process, _ServerLink(parent, on_alive)

    @staticmethod
    def _kill(incarnation: tuple[subprocess.Popen[bytes], _ServerLink]) -> None:
        process, link = incarnation
        link.close()
        if process.poll() is None:
            process.kill()
        process.wait()

    def start(self) -> ForkServer:
        """Start the server and wait until its preloading is done."""
        self.launch()
        assert self._link is not None and self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while not self._link.ready.wait(0.05):
            if self._link.closed.is_set() or self.process.poll() is not None:
                raise RuntimeError(f"fork server: exited at start (code {self.process.poll()})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"fork server: not ready after {self.start_timeout_s:.1f} s")
        return self

    def __call__(self, spec: ChildSpec, procs_files: list[str]) -> ForkedProcess:
        """Fork one child for spec, joining the given cgroup files first."""
        link = self._link
        if link is None or not link.ready.is_set() or link.closed.is_set():
            raise RuntimeError("fork server is not ready")
        self._next += 1
        rid = self._next
        log_path = str(self.log_dir / f"{spec.name}.log") if self.log_dir is not None else ""
        request = {"id": rid, "target": spec.target or self.target, "name": spec.name, "config": spec.config,
                   "procs": procs_files, "log": log_path, "env": spec.env, "user": spec.user}
        try:
            link.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise RuntimeError(f"fork server: {exc}") from None
        reply = link.wait_reply(rid, self.fork_timeout_s)
        if "error" in reply:
            raise RuntimeError(f"fork server: {reply['error']}")
        return ForkedProcess(int(reply["pid"]), link)

    def _end_incarnation(self) -> None:
        if self._link is not None and self.process is not None:
            self._kill((self.process, self._link))  # a restart replaces a server that may be frozen
        self.process, self._link = None, None

    def close(self) -> None:
        """Stop the server and its spare (their remaining children get SIGKILL from the kernel)."""
        if self._spare is not None:
            self._kill(self._spare)
            self._spare = None
        if self._link is not None:
            self._link.close()
            self._link = None
        if self.process is not None:
            proc, self.process = self.process, None
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

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
    """Runs ``spec.argv``, or ``python -m agents.npc --config-json ...``, per child; ``wrap`` may put it
    in a scope."""

    def __init__(self, module: str = "agents.npc", log_dir: str | Path | None = None,
                 wrap: Callable[[str, list[str]], list[str]] | None = None) -> None:
        self.module = module
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.wrap = wrap

    def __call__(self, spec: ChildSpec, procs_files: list[str]) -> PopenProcess:
        """Spawn one child for spec."""
        argv = list(spec.argv) or [sys.executable, "-m", self.module, "--config-json",
                                   json.dumps(spec.config)]
        if self.wrap is not None:
            argv = self.wrap(spec.name, argv)
        out = open(self.log_dir / f"{spec.name}.log", "ab") if self.log_dir is not None else None  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, process_group=0,
                                    preexec_fn=_before_exec(procs_files, spec.user),
                                    env={**os.environ, **spec.env} if spec.env else None)
        finally:
            if out is not None:
                out.close()
        return PopenProcess(proc)


def _before_exec(procs_files: list[str], user: str) -> Callable[[], None] | None:
    """What a spawned child does before exec: join its cgroup (as root), then drop to its user."""
    ids = lookup(user) if user else None
    if not procs_files and ids is None:
        return None

    def run() -> None:
        join_cgroup(procs_files)
        if ids is not None:
            drop_ids(*ids)

    return run


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
        os.environ.update(request.get("env") or {})
        if request.get("user"):
            server = os.getppid()
            drop_to(request["user"])  # after the cgroup and the log, before the target loads a brain
            die_with_parent()  # a change of uid clears the parent-death signal: ask again
            if os.getppid() != server:  # the server died before that: no signal will come
                raise SystemExit(1)
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


def serve(fd: int, preload: list[str], alive_s: float = 0.25) -> None:
    """The fork server's loop: preload, then fork on request, report exits and say it is alive every
    alive_s until the socket closes."""
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
    last_alive = time.monotonic()
    while True:
        if time.monotonic() - last_alive >= alive_s:
            last_alive = time.monotonic()
            send({"alive": last_alive})
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
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            for pid in children:
                _signal_group(pid, signal.SIGKILL)
            return
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                request = json.loads(line)
            except ValueError:
                continue
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
    serve(int(sys.argv[1]), [m for m in sys.argv[2].split(",") if m],
          float(sys.argv[3]) if len(sys.argv) > 3 else 0.25)
