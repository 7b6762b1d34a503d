"""The supervisor's state machine with a fake clock and fake processes: no sleeping, no real children."""

from __future__ import annotations

import signal

import pytest

from agents.cgroups import CgroupConfig, NoCgroups
from agents.supervisor import ChildSpec, State, Supervisor, SupervisorConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signals: list[int] = []
        self.ignore_term = False

    def poll(self) -> int | None:
        return self.code

    def signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and not self.ignore_term):
            self.code = -sig


class Factory:
    def __init__(self) -> None:
        self.started: list[FakeProcess] = []
        self.fail = False

    def __call__(self, spec: ChildSpec, procs_files: list[str]) -> FakeProcess:
        if self.fail:
            raise OSError("fork failed")
        proc = FakeProcess(1000 + len(self.started))
        self.started.append(proc)
        return proc


class OomGroups(NoCgroups):
    def __init__(self) -> None:
        super().__init__("t", CgroupConfig(backend="none"))
        self.ooms = 0

    def oom_kills(self, group: str) -> int:
        return self.ooms


def make(**overrides: float) -> tuple[Supervisor, Clock, Factory, OomGroups]:
    clock, factory, groups = Clock(), Factory(), OomGroups()
    config = SupervisorConfig(start_s=1.0, start_retries=2, backoff_s=0.5, max_restarts=3,
                              restart_period_s=10.0, stop_timeout_s=2.0, heartbeat_timeout_s=3.0, **overrides)  # type: ignore[arg-type]
    sup = Supervisor(config, factory, groups, clock)
    sup.add(ChildSpec(name="npc-0", npc=0, cpu_quota=50.0))
    return sup, clock, factory, groups


def state(sup: Supervisor) -> State:
    return sup.children["npc-0"].state


def test_starting_becomes_running_after_start_seconds() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    assert state(sup) == State.STARTING and len(factory.started) == 1
    clock.now += 0.5
    sup.poll()
    assert state(sup) == State.STARTING
    clock.now += 0.6
    sup.poll()
    assert state(sup) == State.RUNNING


def test_exit_while_starting_backs_off_doubling_then_fatal() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    delays = []
    for _ in range(2):
        factory.started[-1].code = 1
        sup.poll()
        assert state(sup) == State.BACKOFF
        delays.append(sup.children["npc-0"].backoff_until - clock.now)
        clock.now += delays[-1] - 0.01
        sup.poll()
        assert state(sup) == State.BACKOFF
        clock.now += 0.02
        sup.poll()
        assert state(sup) == State.STARTING
    assert delays == pytest.approx([0.5, 1.0])
    factory.started[-1].code = 1
    sup.poll()
    assert state(sup) == State.FATAL
    assert len(factory.started) == 3


def test_crash_while_running_restarts_at_once_until_the_intensity_is_passed() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    for n in range(3):
        clock.now += 1.5
        sup.poll()
        assert state(sup) == State.RUNNING
        factory.started[-1].code = -9
        sup.poll()
        assert state(sup) == State.STARTING and len(factory.started) == n + 2
        sup.heartbeat("npc-0")
    clock.now += 1.5
    sup.poll()
    factory.started[-1].code = -11
    sup.poll()
    assert state(sup) == State.FATAL
    child = sup.children["npc-0"]
    assert child.restarts == 3 and [e.reason for e in child.exits] == ["crash"] * 4


def test_restarts_outside_the_period_do_not_count() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    for _ in range(6):
        clock.now += 5.0
        sup.heartbeat("npc-0")
        sup.poll()
        assert state(sup) == State.RUNNING
        factory.started[-1].code = 1
        sup.poll()
        clock.now += 1.1
        sup.heartbeat("npc-0")
        sup.poll()
    assert state(sup) == State.RUNNING and sup.children["npc-0"].restarts == 6


def test_silent_child_is_killed_as_hung_and_restarted() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    clock.now += 1.5
    sup.poll()
    sup.heartbeat("npc-0")
    clock.now += 2.9
    sup.poll()
    assert factory.started[0].signals == []
    clock.now += 0.2
    sup.poll()
    assert factory.started[0].signals == [signal.SIGKILL]
    sup.poll()
    assert state(sup) == State.STARTING and len(factory.started) == 2
    assert sup.children["npc-0"].exits[-1].reason == "hang"


def test_oom_kill_is_told_apart_from_a_crash() -> None:
    sup, clock, factory, groups = make()
    sup.start_all()
    clock.now += 1.5
    sup.poll()
    groups.ooms += 1
    factory.started[-1].code = -9
    sup.poll()
    assert sup.children["npc-0"].exits[-1].reason == "oom"
    assert state(sup) == State.STARTING


def test_stop_sends_sigterm_then_sigkill_after_the_timeout() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    clock.now += 1.5
    sup.poll()
    factory.started[0].ignore_term = True
    sup.stop_all()
    assert state(sup) == State.STOPPING and factory.started[0].signals == [signal.SIGTERM]
    clock.now += 1.9
    sup.poll()
    assert state(sup) == State.STOPPING and not sup.stopped
    clock.now += 0.2
    sup.poll()
    assert factory.started[0].signals == [signal.SIGTERM, signal.SIGKILL]
    sup.poll()
    assert state(sup) == State.STOPPED and sup.stopped
    assert len(factory.started) == 1  # no restart while stopping


def test_failed_fork_backs_off() -> None:
    sup, clock, factory, _ = make()
    factory.fail = True
    sup.start_all()
    assert state(sup) == State.BACKOFF
    factory.fail = False
    clock.now += 0.6
    sup.poll()
    assert state(sup) == State.STARTING


def test_quota_changes_are_checked_and_kept() -> None:
    sup, _, _, groups = make()
    sup.set_quota("npc-0", 25)
    assert groups.quota["npc-0"] == 25.0 and sup.children["npc-0"].spec.cpu_quota == 25.0
    with pytest.raises(ValueError, match="cpu_quota"):
        sup.set_quota("npc-0", 150)
    with pytest.raises(ValueError, match="supervisor.start_retries"):
        SupervisorConfig(start_retries=-1)


def test_silence_while_the_supervisor_is_deaf_is_not_a_hang() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    clock.now += 1.5
    sup.poll()
    sup.heartbeat("npc-0")
    sup.hearing(False)  # the broker went away: no heartbeat can arrive
    clock.now += 10.0
    sup.poll()
    assert factory.started[0].signals == [] and state(sup) == State.RUNNING
    sup.hearing(True)  # back: a fresh timeout to be heard again
    clock.now += 2.9
    sup.poll()
    assert factory.started[0].signals == []
    clock.now += 0.2
    sup.poll()
    assert factory.started[0].signals == [signal.SIGKILL]  # still silent after the grace: a hang


def test_a_child_gets_longer_for_its_first_heartbeat_than_between_heartbeats() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    clock.now += 10.0  # RUNNING since 1 s, silent since its start: still importing
    sup.poll()
    assert state(sup) == State.RUNNING and factory.started[0].signals == []
    clock.now += sup.config.first_heartbeat_timeout_s - 10.0 + 0.1
    sup.poll()
    assert factory.started[0].signals == [signal.SIGKILL]  # never heard from at all: hung
    sup.poll()
    assert sup.children["npc-0"].exits[-1].reason == "hang" and len(factory.started) == 2
    clock.now += 0.5
    sup.heartbeat("npc-0")  # the successor speaks: from now on the short timeout holds
    clock.now += sup.config.heartbeat_timeout_s + 0.1
    sup.poll()  # STARTING -> RUNNING
    sup.poll()
    assert factory.started[1].signals == [signal.SIGKILL]
