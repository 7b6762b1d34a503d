"""The supervisor: NPC processes as a small state machine, in the style of supervisord and OTP.

States per child (supervisord's names)::

    STOPPED -> STARTING --(up start_s)--> RUNNING --(exit, crash, OOM, hang)--> STARTING (restart)
                  |                          |
                  +--(exit while starting)--> BACKOFF --(delay)--> STARTING ... --> FATAL
    any live state --(stop)--> STOPPING --(exit, or SIGKILL after stop_timeout_s)--> STOPPED

- A child that dies while STARTING goes to BACKOFF (delay doubling from ``backoff_s``) and after
  ``start_retries`` failed starts in a row to FATAL.
- A RUNNING child that exits, is OOM-killed (its group's OOM count rose) or stops heartbeating for
  ``heartbeat_timeout_s`` (it is SIGKILLed: "hang"; before its first heartbeat it gets
  ``first_heartbeat_timeout_s``, for a spawned process's imports) is restarted at once, from its
  last checkpoint;
  while the supervisor's own bus is down it hears no one, so silence then does not count;
  more than ``max_restarts`` restarts inside ``restart_period_s`` (OTP's restart intensity) is FATAL.
- Every child is its own process group in its own cgroup; signals go to the group, and the cgroup is
  killed too, so no grandchild survives a restart or the end.

``Supervisor`` is pure logic over an injectable clock and process factory (unit-tested with a fake
clock); ``serve`` runs it on the bus: heartbeats in, ``{env}.thalamus.governor.allocate`` applied as
live CPU quotas (and forwarded to the NPC as a command), SIGTERM/SIGINT drain everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.cgroups import CgroupError, Cgroups, check_quota
from nervous import subjects
from nervous.bus import Bus
from nervous.messages import Allocation, Command, Heartbeat

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    """Lifecycle state of one supervised child."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    FATAL = "FATAL"


@dataclass
class SupervisorConfig:
    """Restart policy and timeouts of the supervisor."""

    start_s: float = 1.0
    """Seconds a child must stay up to count as RUNNING (supervisord's startsecs)."""
    start_retries: int = 3
    """Failed starts in a row (exits while STARTING) before FATAL."""
    backoff_s: float = 0.5
    """BACKOFF delay after the first failed start; doubles with each further one."""
    backoff_max_s: float = 8.0
    """Longest BACKOFF delay."""
    max_restarts: int = 5
    """Restart intensity: more restarts than this inside restart_period_s makes a child FATAL."""
    restart_period_s: float = 30.0
    """Window of the restart intensity, in seconds."""
    stop_timeout_s: float = 5.0
    """Seconds between SIGTERM and SIGKILL when stopping."""
    heartbeat_timeout_s: float = 3.0
    """A RUNNING child silent for this long counts as hung and is killed and restarted."""
    first_heartbeat_timeout_s: float = 30.0
    """Seconds a child may take from its start to its first heartbeat (a spawned NPC imports torch)."""
    poll_s: float = 0.05
    """Seconds between two supervision passes in ``serve``."""

    def __post_init__(self) -> None:
        for name in ("start_s", "backoff_s", "backoff_max_s", "restart_period_s", "stop_timeout_s",
                     "heartbeat_timeout_s", "first_heartbeat_timeout_s", "poll_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"supervisor.{name}={getattr(self, name)!r}: must be >= 0")
        for name in ("start_retries", "max_restarts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"supervisor.{name}={getattr(self, name)!r}: must be an integer >= 0")


@dataclass
class ChildSpec:
    """What to run for one child: its name (= cgroup), NPC id, serialised NPC config and limits."""

    name: str
    npc: int
    config: dict[str, Any] = field(default_factory=dict)
    cpu_quota: float = 100.0
    memory_max: int | None = None


class ProcessHandle(Protocol):
    """A started child process (the leader of its own process group)."""

    pid: int

    def poll(self) -> int | None:
        """Exit code (negative: killed by that signal), or None while it runs."""

    def signal(self, sig: int) -> None:
        """Send a signal to the child's whole process group."""


#: Starts a child: (spec, cgroup.procs files the child joins before it runs) -> handle.
ProcessFactory = Callable[[ChildSpec, list[str]], ProcessHandle]


@dataclass
class Exit:
    """One exit of a child: when, why (exit, crash, oom, hang, stop) and its code."""

    at: float
    reason: str
    code: int


@dataclass
class Child:
    """Supervision state of one child."""

    spec: ChildSpec
    state: State = State.STOPPED
    handle: ProcessHandle | None = None
    started_at: float = 0.0
    last_heartbeat: float = 0.0
    heartbeats: int = 0
    heard_since_start: bool = False
    restarts: int = 0
    failed_starts: int = 0
    backoff_until: float = 0.0
    stop_deadline: float = 0.0
    killed_for: str = ""
    sigkill_sent: bool = False
    oom_at_start: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    exits: list[Exit] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


class Supervisor:
    """Starts, watches, restarts and stops children; call ``poll()`` often."""

    def __init__(self, config: SupervisorConfig, factory: ProcessFactory, cgroups: Cgroups,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.factory = factory
        self.cgroups = cgroups
        self.clock = clock
        self.children: dict[str, Child] = {}
        self.by_npc: dict[int, str] = {}
        self.stopping = False
        #: The supervisor cannot hear heartbeats (its bus is down): silence is not a hang then.
        self.deaf = False
        #: (time, child, from state, to state, reason) of every transition.
        self.events: list[tuple[float, str, State, State, str]] = []

    # -- commands ---------------------------------------------------------------------------------

    def add(self, spec: ChildSpec) -> Child:
        """Register a child and create its cgroup with its limits (not started yet)."""
        if spec.name in self.children:
            raise ValueError(f"child {spec.name!r} is already supervised")
        check_quota(spec.cpu_quota)
        self.cgroups.create(spec.name, cpu_quota=spec.cpu_quota, memory_max=spec.memory_max)
        child = self.children[spec.name] = Child(spec)
        self.by_npc[spec.npc] = spec.name
        return child

    def start(self, name: str) -> None:
        """Start a STOPPED (or FATAL) child."""
        child = self.children[name]
        if child.state in (State.STOPPED, State.FATAL):
            child.failed_starts = 0
            self._spawn(child, "start")

    def start_all(self) -> None:
        """Start every stopped child."""
        for name in self.children:
            self.start(name)

    def heartbeat(self, name: str) -> None:
        """Note a heartbeat of a child."""
        child = self.children.get(name)
        if child is not None:
            child.last_heartbeat = self.clock()
            child.heartbeats += 1
            child.heard_since_start = True

    def _silent(self, child: Child, now: float) -> bool:
        """A RUNNING child has been silent long enough to count as hung."""
        cfg = self.config
        limit = cfg.heartbeat_timeout_s if child.heard_since_start else cfg.first_heartbeat_timeout_s
        return now - child.last_heartbeat > limit

    def hearing(self, connected: bool) -> None:
        """Tell the supervisor whether it can hear heartbeats; after deafness every child gets a fresh
        heartbeat_timeout_s to be heard again (a broker outage silences everyone, it hangs no one)."""
        if self.deaf and connected:
            now = self.clock()
            for child in self.children.values():
                child.last_heartbeat = max(child.last_heartbeat, now)
        self.deaf = not connected

    def set_quota(self, name: str, percent: float) -> None:
        """Change a child's CPU quota live (kept for its restarts)."""
        child = self.children[name]
        child.spec.cpu_quota = check_quota(percent)
        self.cgroups.set_cpu_quota(name, child.spec.cpu_quota)

    def set_memory_max(self, name: str, max_bytes: int | None) -> None:
        """Change a child's memory max live (kept for its restarts)."""
        self.children[name].spec.memory_max = max_bytes
        try:
            self.cgroups.set_memory_max(name, max_bytes)
        except CgroupError as exc:
            log.warning("%s: memory max applies from its next start: %s", name, exc)

    def kill(self, name: str, reason: str) -> None:
        """SIGKILL a live child (its group and cgroup); it is restarted as after a crash."""
        child = self.children[name]
        if child.handle is not None and child.state in (State.STARTING, State.RUNNING):
            child.killed_for = reason
            child.handle.signal(signal.SIGKILL)
            self.cgroups.kill(name)

    def stop_all(self) -> None:
        """Begin stopping: SIGTERM to every live child; SIGKILL follows after stop_timeout_s."""
        self.stopping = True
        now = self.clock()
        for child in self.children.values():
            if child.handle is not None and child.state in (State.STARTING, State.RUNNING):
                child.handle.signal(signal.SIGTERM)
                child.stop_deadline = now + self.config.stop_timeout_s
                self._move(child, State.STOPPING, "stop")
            elif child.state in (State.BACKOFF, State.STARTING, State.RUNNING):
                self._move(child, State.STOPPED, "stop")

    @property
    def stopped(self) -> bool:
        """No child is live any more."""
        return all(c.state in (State.STOPPED, State.FATAL) for c in self.children.values())

    def close(self) -> None:
        """Kill whatever is left and remove every cgroup."""
        for child in self.children.values():
            if child.handle is not None and child.handle.poll() is None:
                child.handle.signal(signal.SIGKILL)
        self.cgroups.close()

    # -- the state machine ------------------------------------------------------------------------

    def poll(self) -> None:
        """Advance every child's state machine by what happened since the last call."""
        now = self.clock()
        cfg = self.config
        for child in self.children.values():
            state = child.state
            code = child.handle.poll() if child.handle is not None else None
            if state == State.STARTING:
                if code is not None:
                    self._exited(child, code, now)
                    child.failed_starts += 1
                    if child.failed_starts > cfg.start_retries:
                        self._move(child, State.FATAL, f"{child.failed_starts} failed starts")
                    else:
                        delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (child.failed_starts - 1))
                        child.backoff_until = now + delay
                        self._move(child, State.BACKOFF, f"exit while starting, retry in {delay:.2f} s")
                elif now - child.started_at >= cfg.start_s:
                    child.failed_starts = 0
                    self._move(child, State.RUNNING, f"up {cfg.start_s:g} s")
            elif state == State.RUNNING:
                if code is not None:
                    reason = self._exited(child, code, now)
                    child.restart_times.append(now)
                    while child.restart_times and now - child.restart_times[0] > cfg.restart_period_s:
                        child.restart_times.popleft()
                    if len(child.restart_times) > cfg.max_restarts:
                        self._move(child, State.FATAL,
                                   f"{len(child.restart_times)} restarts in {cfg.restart_period_s:g} s")
                    else:
                        child.restarts += 1
                        self._spawn(child, f"restart after {reason}")
                elif not (self.deaf or child.killed_for) and self._silent(child, now):
                    log.warning("%s: no heartbeat for %.1f s, killing it", child.spec.name,
                                now - child.last_heartbeat)
                    self.kill(child.spec.name, "hang")
            elif state == State.BACKOFF:
                if now >= child.backoff_until:
                    self._spawn(child, "backoff over")
            elif state == State.STOPPING:
                if code is not None:
                    self._exited(child, code, now, "stop")
                    self.cgroups.kill(child.spec.name)
                    self._move(child, State.STOPPED, f"exit {code}")
                elif now >= child.stop_deadline and not child.sigkill_sent:
                    log.warning("%s: no exit %.1f s after SIGTERM, SIGKILL", child.spec.name,
                                cfg.stop_timeout_s)
                    child.sigkill_sent = True
                    child.handle.signal(signal.SIGKILL)  # type: ignore[union-attr]
                    self.cgroups.kill(child.spec.name)

    def _exited(self, child: Child, code: int, now: float, reason: str = "") -> str:
        if not reason:
            ooms = self._ooms(child)
            if child.killed_for:
                reason = child.killed_for
            elif ooms > child.oom_at_start:
                reason = "oom"
            else:
                reason = "exit" if code == 0 else "crash"
        child.exits.append(Exit(now, reason, code))
        child.handle = None
        child.killed_for = ""
        (log.info if reason == "stop" else log.warning)("%s: %s (code %d)", child.spec.name, reason, code)
        return reason

    def _ooms(self, child: Child) -> int:
        try:
            return self.cgroups.oom_kills(child.spec.name)
        except Exception:  # a group that vanished has no count to report
            return 0

    def _spawn(self, child: Child, reason: str) -> None:
        now = self.clock()
        name = self.cgroups_safe_kill(child.spec.name)
        if child.spec.memory_max is not None or child.restarts or child.exits:
            try:
                self.cgroups.set_memory_max(name, child.spec.memory_max)
            except CgroupError as exc:
                log.warning("%s: %s", name, exc)
        child.oom_at_start = self._ooms(child)
        child.sigkill_sent = False
        try:
            child.handle = self.factory(child.spec, self.cgroups.procs_files(name))
        except Exception as exc:  # a failed start counts like an exit while starting
            log.warning("%s: start failed: %s", name, exc)
            child.handle = None
            child.failed_starts += 1
            if child.failed_starts > self.config.start_retries:
                self._move(child, State.FATAL, f"start failed: {exc}")
            else:
                child.backoff_until = now + self.config.backoff_s * 2 ** (child.failed_starts - 1)
                self._move(child, State.BACKOFF, f"start failed: {exc}")
            return
        child.pids.append(child.handle.pid)
        child.started_at = child.last_heartbeat = now
        child.heard_since_start = False
        self._move(child, State.STARTING, reason)

    def cgroups_safe_kill(self, name: str) -> str:
        """Kill leftovers of an earlier incarnation in a child's group; the group's name."""
        with contextlib.suppress(Exception):
            self.cgroups.kill(name)
        return name

    def _move(self, child: Child, state: State, reason: str) -> None:
        self.events.append((self.clock(), child.spec.name, child.state, state, reason))
        log.debug("%s: %s -> %s (%s)", child.spec.name, child.state, state, reason)
        child.state = state

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per child: state, restarts, exits by reason, CPU seconds and OOM kills."""
        out: dict[str, dict[str, Any]] = {}
        for name, child in self.children.items():
            reasons: dict[str, int] = {}
            for e in child.exits:
                reasons[e.reason] = reasons.get(e.reason, 0) + 1
            try:
                cpu = self.cgroups.cpu_seconds(name)
            except Exception:
                cpu = float("nan")
            out[name] = {"npc": child.spec.npc, "state": str(child.state), "restarts": child.restarts,
                         "exits": reasons, "cpu_s": cpu, "oom_kills": self._ooms(child)}
        return out


async def serve(sup: Supervisor, bus: Bus, stop: asyncio.Event, started: asyncio.Event | None = None) -> None:
    """Run the supervisor on the bus until ``stop`` is set, then drain every child."""
    subs = []
    unknown: list[int] = []

    for name, child in sup.children.items():
        async def on_heartbeat(msg: Heartbeat, raw: Any, name: str = name) -> None:
            sup.heartbeat(name)

        subject = subjects.heartbeat("npc", str(child.spec.npc))
        subs.append(await bus.subscribe(subject, Heartbeat, on_heartbeat))

    async def on_allocate(msg: Allocation, raw: Any) -> None:
        name = sup.by_npc.get(msg.npc)
        if name is None:
            unknown.append(msg.npc)
            log.warning("allocation for unknown npc %d ignored", msg.npc)
            return
        sup.set_quota(name, msg.cpu_quota)
        command = Command(npc=msg.npc, tick=msg.tick, tick_rate=msg.tick_rate, gates=msg.gates)
        await bus.publish(subjects.npc_command(msg.npc), command)

    subs.append(await bus.subscribe(subjects.governor_allocate(), Allocation, on_allocate))
    sup.start_all()
    if started is not None:
        started.set()
    try:
        while not stop.is_set():
            sup.hearing(bus.connected.is_set())
            sup.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), sup.config.poll_s)
    finally:
        sup.stop_all()
        while not sup.stopped:
            sup.poll()
            await asyncio.sleep(sup.config.poll_s)
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
