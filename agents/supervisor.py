"""The supervisor: NPC processes as a small state machine, in the style of supervisord and OTP.

States per child (supervisord's names)::

    STOPPED -> STARTING --(up start_s)--> RUNNING --(exit, crash, OOM, hang)--> STARTING (restart)
                  |                          |
                  +--(exit while starting)--> BACKOFF --(delay)--> STARTING ... --> FATAL
    any live state --(stop)--> STOPPING --(exit, or SIGKILL after stop_timeout_s)--> STOPPED

- A child that dies while STARTING, or before its first heartbeat, goes to BACKOFF (delay doubling
  from ``backoff_s``) and after ``start_retries`` failed starts in a row to FATAL.
- A RUNNING child that exits, is OOM-killed (its group's OOM count rose) or stops heartbeating for
  ``heartbeat_timeout_s`` (it is SIGKILLed: "hang"; before its first heartbeat it gets
  ``first_heartbeat_timeout_s``, for a spawned process's imports) is restarted at once, from its
  last checkpoint;
  while the supervisor's own bus is down it hears no one, so silence then does not count;
  more than ``max_restarts`` restarts inside ``restart_period_s`` (OTP's restart intensity) is FATAL.
- Every child is its own process group in its own cgroup; signals go to the group, and the cgroup is
  killed too, so no grandchild survives a restart or the end.
- Dependencies follow OTP's ``rest_for_one``: a child whose spec ``depends_on`` another (NPCs on the
  fork server they are forked from) is taken down when that one exits and WAITS until it is up again
  (started and heard), then restarts from its last checkpoint. Such a restart is counted in
  ``restarts`` but not in its own restart intensity: the fault was not its own.
- A gap of more than ``stall_s`` between two supervision passes is the supervisor's own stall (a
  loaded machine): children's silence during it does not count towards a hang.
- Stopping goes in reverse dependency order: a child gets SIGTERM (and SIGCONT, so a stopped one can
  act on it, and a full core, so one the governor throttled to a few percent can checkpoint and exit
  in time) once its dependents are down, SIGKILL ``stop_timeout_s`` later, and a child whose end is
  still unseen ``kill_grace_s`` after SIGKILL is given up as "lost" (logged): no stop waits forever.
  ``force_stop`` (a second SIGINT) SIGKILLs everything at once.
- FATAL is logged once as an error line; an ``essential`` child going FATAL is noted in ``failed``
  so its owner can stop the run; any other FATAL child is left out and the rest carries on.

``Supervisor`` is pure logic over an injectable clock and process factory (unit-tested with a fake
clock); ``serve`` runs it on the bus: heartbeats in, ``{env}.thalamus.governor.allocate`` applied as
live CPU quotas (and forwarded to the NPC as a command), SIGTERM/SIGINT drain everything.

An allocation that does not decode (a tick rate, quota or priority out of range, an unknown gate
region) is counted and logged by the bus; one that decodes but names an NPC the supervisor does not
run, or that ``check`` refuses (the organism passes ``governor.decisions.check_allocation`` with the
governor's tick rates), is logged with one line naming the field and counted in
``Supervisor.bad_allocations``. Either way nothing changes: the NPC keeps its last valid settings.
The last valid allocation of each NPC is kept (``Supervisor.allocations``) and its command is sent
again to a restarted NPC once it is heard, so a restart keeps the governor's settings even while no
governor runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.cgroups import DEFAULT_WEIGHT, CgroupError, Cgroups, check_quota, check_weight
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
    WAITING = "WAITING"


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
    kill_grace_s: float = 2.0
    """Seconds after SIGKILL after which a child whose exit is still unseen is given up as lost."""
    stall_s: float = 0.5
    """A gap this long between two supervision passes is the supervisor's own stall, not silence."""
    heartbeat_timeout_s: float = 3.0
    """A RUNNING child silent for this long counts as hung and is killed and restarted."""
    first_heartbeat_timeout_s: float = 30.0
    """Seconds a child may take from its start to its first heartbeat (a spawned NPC imports torch)."""
    poll_s: float = 0.05
    """Seconds between two supervision passes in ``serve``."""
    hearing_timeout_s: float = 1.0
    """``serve`` hears its own echo through the bus; silent this long, it counts itself deaf (a frozen
    or lost broker, a stalled loop), so children's silence meanwhile is no hang."""

    def __post_init__(self) -> None:
        for name in ("start_s", "backoff_s", "backoff_max_s", "restart_period_s", "stop_timeout_s",
                     "kill_grace_s", "stall_s", "hearing_timeout_s", "heartbeat_timeout_s",
                     "first_heartbeat_timeout_s", "poll_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"supervisor.{name}={getattr(self, name)!r}: must be >= 0")
        for name in ("start_retries", "max_restarts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"supervisor.{name}={getattr(self, name)!r}: must be an integer >= 0")


@dataclass
class ChildSpec:
    """What to run for one child: its name (= cgroup), NPC id, serialised config, limits and links."""

    name: str
    npc: int = -1
    """NPC id, or -1 for a service that is not an NPC."""
    config: dict[str, Any] = field(default_factory=dict)
    """Serialised config handed to the child (an NPC's NpcConfig)."""
    cpu_quota: float = 100.0
    """CPU quota in percent of one core."""
    cpu_weight: int = 100
    """CPU weight of its group: its share of contended CPU against the other children (100: the default)."""
    memory_max: int | None = None
    """Memory max of its group in bytes (None: unlimited)."""
    depends_on: str = ""
    """Name of the child this one needs (rest_for_one): taken down with it, restarted after it."""
    argv: list[str] = field(default_factory=list)
    """Command line for factories that spawn (empty: the factory's default for NPCs)."""
    target: str = ""
    """``module:function(config)`` for factories that fork ('': the factory's default for NPCs)."""
    factory: ProcessFactory | None = None
    """Its own process factory (None: the supervisor's)."""
    heartbeat_subject: str = ""
    """Bus subject of its heartbeats ('': an NPC's own, or heartbeats reported in-process)."""
    hang_check: bool = True
    """Silence for heartbeat_timeout_s counts as a hang (False for children that do not heartbeat)."""
    essential: bool = False
    """The run cannot go on without it: its FATAL is reported in ``Supervisor.failed``."""
    env: dict[str, str] = field(default_factory=dict, repr=False)
    """Environment variables set in the child (its bus login: never on a command line)."""
    user: str = ""
    """Unix user the child runs as, dropped to after fork and before its target runs ('': unchanged)."""


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
    term_sent: bool = False
    killed_for: str = ""
    taken_down: bool = False
    sigkill_sent: bool = False
    sigkill_at: float = 0.0
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
        #: Essential children that went FATAL: their owner should stop the run.
        self.failed: list[str] = []
        self._last_poll = 0.0
        #: (time, child, from state, to state, reason) of every transition.
        self.events: list[tuple[float, str, State, State, str]] = []
        #: The last valid allocation applied to each NPC, by NPC id.
        self.allocations: dict[int, Allocation] = {}
        #: Allocations refused (unknown NPC, or refused by serve's check) since the start.
        self.bad_allocations = 0

    # -- commands ---------------------------------------------------------------------------------

    def add(self, spec: ChildSpec) -> Child:
        """Register a child and create its cgroup with its limits (not started yet)."""
        if spec.name in self.children:
            raise ValueError(f"child {spec.name!r} is already supervised")
        if spec.depends_on and spec.depends_on not in self.children:
            raise ValueError(f"child {spec.name!r} depends on {spec.depends_on!r}, which is not supervised "
                             "(add it first)")
        check_quota(spec.cpu_quota)
        check_weight(spec.cpu_weight)
        self.cgroups.create(spec.name, cpu_quota=spec.cpu_quota, memory_max=spec.memory_max)
        if spec.cpu_weight != DEFAULT_WEIGHT:
            self.cgroups.set_cpu_weight(spec.name, spec.cpu_weight)
        child = self.children[spec.name] = Child(spec)
        if spec.npc >= 0:
            self.by_npc[spec.npc] = spec.name
        return child

    def start(self, name: str) -> None:
        """Start a STOPPED (or FATAL) child."""
        child = self.children[name]
        if child.state in (State.STOPPED, State.FATAL) and not self.stopping:
            child.failed_starts = 0
            self._spawn(child, "start")

    def start_all(self) -> None:
        """Start every stopped child (not the FATAL ones: they need an explicit ``start``)."""
        for name, child in self.children.items():
            if child.state == State.STOPPED:
                self.start(name)

    def heartbeat(self, name: str) -> None:
        """Note a heartbeat of a child."""
        child = self.children.get(name)
        if child is not None:
            child.last_heartbeat = self.clock()
            child.heartbeats += 1
            if not child.heard_since_start:
                child.heard_since_start = True
                child.failed_starts = 0

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
            self._kill_group(child)

    def _kill_group(self, child: Child) -> None:
        """SIGKILL a child's process group and everything left in its cgroup."""
        if child.handle is not None:
            child.handle.signal(signal.SIGKILL)
        with contextlib.suppress(Exception):  # a group that vanished has nothing left to kill
            self.cgroups.kill(child.spec.name)

    def stop_all(self) -> None:
        """Begin stopping: SIGTERM to each live child once its dependents are down; SIGKILL follows
        after stop_timeout_s."""
        self.stopping = True
        for child in self.children.values():
            if child.handle is not None and child.state in (State.STARTING, State.RUNNING):
                child.term_sent = False
                child.stop_deadline = float("inf")
                self._move(child, State.STOPPING, "stop")
            elif child.state in (State.BACKOFF, State.STARTING, State.RUNNING, State.WAITING):
                self._move(child, State.STOPPED, "stop")
        self._terminate_ready(self.clock())

    def force_stop(self) -> None:
        """Stop at once: SIGKILL every live child now (a second SIGINT)."""
        if not self.stopping:
            self.stop_all()
        now = self.clock()
        for child in self.children.values():
            if child.state == State.STOPPING and not child.sigkill_sent:
                self._sigkill(child, now)

    def _live_dependents(self, child: Child) -> list[Child]:
        live = (State.STARTING, State.RUNNING, State.STOPPING)
        return [c for c in self.children.values() if c.spec.depends_on == child.spec.name and c.state in live]

    def _terminate_ready(self, now: float) -> None:
        """SIGTERM (and SIGCONT) each stopping child whose dependents have all stopped."""
        for child in self.children.values():
            if child.state == State.STOPPING and not child.term_sent and not self._live_dependents(child):
                child.term_sent = True
                child.stop_deadline = now + self.config.stop_timeout_s
                if child.spec.cpu_quota < 100.0:  # its last work is its checkpoint: not at 5 % of a core
                    with contextlib.suppress(Exception):
                        self.cgroups.set_cpu_quota(child.spec.name, 100.0)
                if child.handle is not None:
                    child.handle.signal(signal.SIGTERM)
                    child.handle.signal(signal.SIGCONT)

    def _sigkill(self, child: Child, now: float) -> None:
        child.sigkill_sent = True
        child.sigkill_at = now
        child.term_sent = True
        self._kill_group(child)

    @property
    def stopped(self) -> bool:
        """No child is live any more."""
        return all(c.state in (State.STOPPED, State.FATAL) for c in self.children.values())

    def close(self) -> None:
        """Kill whatever is left and remove every cgroup."""
        for child in self.children.values():
            self._kill_group(child)
        self.cgroups.close()

    # -- the state machine ------------------------------------------------------------------------

    def _parent(self, child: Child) -> Child | None:
        return self.children.get(child.spec.depends_on) if child.spec.depends_on else None

    def up(self, name: str) -> bool:
        """A child is live and has been heard since its start (for the fork server: it is ready)."""
        child = self.children[name]
        return child.state in (State.STARTING, State.RUNNING) and child.heard_since_start

    def _credit_stall(self, now: float) -> None:
        """Forgive children the silence of a stall of the supervisor's own."""
        gap = now - self._last_poll if self._last_poll else 0.0
        self._last_poll = now
        if gap > self.config.stall_s:
            log.info("supervisor stalled %.2f s: children's silence in that time does not count", gap)
            for child in self.children.values():
                child.last_heartbeat += gap

    def poll(self) -> None:
        """Advance every child's state machine by what happened since the last call."""
        now = self.clock()
        cfg = self.config
        self._credit_stall(now)
        for child in self.children.values():
            state = child.state
            code = child.handle.poll() if child.handle is not None else None
            parent = self._parent(child)
            if state == State.RUNNING and code is not None and child.spec.hang_check \
                    and not child.heard_since_start:
                state = State.STARTING  # it died before it ever said it was alive: a failed start
            if state == State.STARTING:
                if code is not None:
                    self._exited(child, code, now)
                    self._take_down_dependents(child)
                    if child.taken_down:
                        self._wait_for_parent(child)
                        continue
                    child.failed_starts += 1
                    if child.failed_starts > cfg.start_retries:
                        self._fatal(child, f"{child.failed_starts} failed starts")
                    else:
                        delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (child.failed_starts - 1))
                        child.backoff_until = now + delay
                        self._move(child, State.BACKOFF, f"exit while starting, retry in {delay:.2f} s")
                elif now - child.started_at >= cfg.start_s:
                    if not child.spec.hang_check:  # else its first heartbeat says it came up
                        child.failed_starts = 0
                    self._move(child, State.RUNNING, f"up {cfg.start_s:g} s")
            elif state == State.RUNNING:
                if code is not None:
                    reason = self._exited(child, code, now)
                    self._take_down_dependents(child)
                    if child.taken_down or (parent is not None and not self.up(parent.spec.name)):
                        self._wait_for_parent(child)
                        continue
                    child.restart_times.append(now)
                    while child.restart_times and now - child.restart_times[0] > cfg.restart_period_s:
                        child.restart_times.popleft()
                    if len(child.restart_times) > cfg.max_restarts:
                        n = len(child.restart_times)
                        self._fatal(child, f"{n} restarts in {cfg.restart_period_s:g} s")
                    else:
                        child.restarts += 1
                        self._spawn(child, f"restart after {reason}")
                elif (child.spec.hang_check and not (self.deaf or child.killed_for)
                      and self._silent(child, now)):
                    log.warning("%s: no heartbeat for %.1f s, killing it", child.spec.name,
                                now - child.last_heartbeat)
                    self.kill(child.spec.name, "hang")
            elif state == State.BACKOFF:
                if now >= child.backoff_until:
                    self._spawn(child, "backoff over")
            elif state == State.WAITING:
                if parent is None or self.up(parent.spec.name):
                    child.restarts += 1 if child.pids else 0  # its first start waited too
                    self._spawn(child, f"{child.spec.depends_on} is up")
                elif parent.state == State.FATAL:
                    self._move(child, State.STOPPED, f"{parent.spec.name} is FATAL")
            elif state == State.STOPPING:
                if code is not None:
                    self._exited(child, code, now, "stop")
                    self.cgroups_safe_kill(child.spec.name)
                    self._move(child, State.STOPPED, f"exit {code}")
                elif child.sigkill_sent and now - child.sigkill_at >= cfg.kill_grace_s:
                    log.error("%s: no exit seen %.1f s after SIGKILL (pid %s): given up as lost",
                              child.spec.name, cfg.kill_grace_s, child.handle.pid if child.handle else "?")
                    child.exits.append(Exit(now, "lost", -signal.SIGKILL))
                    child.handle = None
                    self._move(child, State.STOPPED, "lost")
                elif child.term_sent and now >= child.stop_deadline and not child.sigkill_sent:
                    log.warning("%s: no exit %.1f s after SIGTERM, SIGKILL", child.spec.name,
                                cfg.stop_timeout_s)
                    self._sigkill(child, now)
        if self.stopping:
            self._terminate_ready(now)

    def _take_down_dependents(self, child: Child) -> None:
        """rest_for_one: SIGKILL the live children that depend on one that just exited."""
        for dep in self._live_dependents(child):
            if dep.state == State.STOPPING:
                continue
            dep.taken_down = True
            if not dep.killed_for:
                self.kill(dep.spec.name, f"{child.spec.name} exit")

    def _wait_for_parent(self, child: Child) -> None:
        child.taken_down = False
        self._move(child, State.WAITING, f"waiting for {child.spec.depends_on}")

    def _fatal(self, child: Child, reason: str) -> None:
        self._move(child, State.FATAL, reason)
        if child.spec.essential:
            self.failed.append(child.spec.name)
            log.error("%s: FATAL (%s); the run cannot go on without it", child.spec.name, reason)
        else:
            log.error("%s: FATAL (%s); the run carries on without it", child.spec.name, reason)
        for dep in self.children.values():
            if dep.spec.depends_on == child.spec.name and dep.state in (State.WAITING, State.BACKOFF):
                self._move(dep, State.STOPPED, f"{child.spec.name} is FATAL")

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
        parent = self._parent(child)
        if parent is not None and not self.up(parent.spec.name):
            self._move(child, State.WAITING, f"waiting for {parent.spec.name}")
            return
        name = self.cgroups_safe_kill(child.spec.name)
        if child.spec.memory_max is not None or child.restarts or child.exits:
            try:
                self.cgroups.set_memory_max(name, child.spec.memory_max)
            except CgroupError as exc:
                log.warning("%s: %s", name, exc)
        child.oom_at_start = self._ooms(child)
        child.sigkill_sent = child.term_sent = child.taken_down = False
        factory = child.spec.factory or self.factory
        try:
            child.handle = factory(child.spec, self.cgroups.procs_files(name))
        except Exception as exc:  # a failed start counts like an exit while starting
            log.warning("%s: start failed: %s", name, exc)
            child.handle = None
            child.failed_starts += 1
            if child.failed_starts > self.config.start_retries:
                self._fatal(child, f"start failed: {exc}")
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


async def serve(sup: Supervisor, bus: Bus, stop: asyncio.Event, started: asyncio.Event | None = None,
                force: asyncio.Event | None = None,
                check: Callable[[Allocation], None] | None = None,
                elsewhere: Container[int] = ()) -> None:
    """Run the supervisor on the bus until ``stop`` is set, then stop every child (at once when
    ``force`` is set); the stop is bounded by the stop timeouts. ``check`` raises ValueError naming the
    field of an allocation to refuse; allocations for ``elsewhere`` (NPCs other shards supervise) are
    left to their supervisors, neither applied nor refused."""
    subs = []
    commanded: dict[int, int] = {}  # NPC id -> pid its last command went to

    for name, child in sup.children.items():
        def on_heartbeat(msg: Heartbeat, raw: Any, name: str = name) -> None:
            sup.heartbeat(name)

        spec = child.spec
        subject = spec.heartbeat_subject or (
            subjects.heartbeat("npc", str(spec.npc)) if spec.npc >= 0 else "")
        if subject:
            subs.append(await bus.subscribe(subject, Heartbeat, on_heartbeat))

    async def send_command(msg: Allocation) -> None:
        command = Command(npc=msg.npc, tick=msg.tick, tick_rate=msg.tick_rate, gates=msg.gates)
        child = sup.children[sup.by_npc[msg.npc]]
        await bus.publish(subjects.npc_command(msg.npc), command)
        # one not heard yet may not listen yet: it gets the command again once it is heard
        commanded[msg.npc] = child.pids[-1] if child.pids and child.heard_since_start else 0

    async def on_allocate(msg: Allocation, raw: Any) -> None:
        name = sup.by_npc.get(msg.npc)
        if name is None and msg.npc in elsewhere:
            return
        try:
            if name is None:
                raise ValueError(f"allocation.npc={msg.npc}: no such NPC under this supervisor")
            if check is not None:
                check(msg)
        except ValueError as exc:
            sup.bad_allocations += 1
            if sup.bad_allocations <= 10 or sup.bad_allocations % 1000 == 0:
                log.warning("refused allocation on %s: %s (%d refused)", raw.subject, exc,
                            sup.bad_allocations)
            return
        sup.set_quota(name, msg.cpu_quota)
        sup.allocations[msg.npc] = msg
        await send_command(msg)

    async def recommand() -> None:
        """Send its last command again to an NPC that restarted since (once it is heard)."""
        for npc, msg in sup.allocations.items():
            child = sup.children[sup.by_npc[npc]]
            if child.heard_since_start and child.pids and commanded.get(npc) != child.pids[-1]:
                with contextlib.suppress(Exception):  # disconnected: the next pass tries again
                    await send_command(msg)

    subs.append(await bus.subscribe(subjects.governor_allocate(), Allocation, on_allocate))
    echo_subject = subjects.heartbeat("supervisor", bus.config.name)
    heard = {"at": sup.clock(), "seq": 0}

    def on_echo(msg: Heartbeat, raw: Any) -> None:
        heard["at"] = sup.clock()

    subs.append(await bus.subscribe(echo_subject, Heartbeat, on_echo))
    started_at = sup.clock()

    async def echo() -> None:
        with contextlib.suppress(Exception):  # disconnected: the echo is simply not heard
            heard["seq"] += 1
            await bus.publish(echo_subject, Heartbeat(domain="supervisor", service=bus.config.name,
                                                      seq=heard["seq"], uptime_s=sup.clock() - started_at))

    sup.start_all()
    if started is not None:
        started.set()
    try:
        while not stop.is_set():
            await echo()
            await recommand()
            now = sup.clock()
            sup.hearing(bus.connected.is_set() and now - heard["at"] < sup.config.hearing_timeout_s)
            sup.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), sup.config.poll_s)
    finally:
        sup.stop_all()
        while not sup.stopped:
            if force is not None and force.is_set():
                sup.force_stop()
            sup.poll()
            await asyncio.sleep(sup.config.poll_s)
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
