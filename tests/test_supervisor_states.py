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
    overrides.setdefault("stall_s", float("inf"))  # the fake clock jumps: no pass counts as a stall here
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
        sup.heartbeat("npc-0")
        sup.poll()
        assert state(sup) == State.RUNNING
        factory.started[-1].code = -9
        sup.poll()
        assert state(sup) == State.STARTING and len(factory.started) == n + 2
    clock.now += 1.5
    sup.heartbeat("npc-0")
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
    sup.heartbeat("npc-0")
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
    # SIGCONT after SIGTERM: a stopped (SIGSTOP) child can still act on it and checkpoint
    assert state(sup) == State.STOPPING and factory.started[0].signals == [signal.SIGTERM, signal.SIGCONT]
    clock.now += 1.9
    sup.poll()
    assert state(sup) == State.STOPPING and not sup.stopped
    clock.now += 0.2
    sup.poll()
    assert factory.started[0].signals == [signal.SIGTERM, signal.SIGCONT, signal.SIGKILL]
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


def test_a_throttled_child_gets_a_full_core_to_stop_in() -> None:
    sup, clock, factory, groups = make()
    sup.set_quota("npc-0", 5)
    sup.start_all()
    clock.now += 1.5
    sup.poll()
    factory.started[0].ignore_term = True
    sup.stop_all()
    assert factory.started[0].signals[0] == signal.SIGTERM
    assert groups.quota["npc-0"] == 100.0 and sup.children["npc-0"].spec.cpu_quota == 5.0


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
    # it never came up: a failed start, retried after the backoff
    assert sup.children["npc-0"].exits[-1].reason == "hang" and state(sup) == State.BACKOFF
    clock.now += 0.6
    sup.poll()
    assert len(factory.started) == 2
    clock.now += 0.5
    sup.heartbeat("npc-0")  # the successor speaks: from now on the short timeout holds
    clock.now += sup.config.heartbeat_timeout_s + 0.1
    sup.poll()  # STARTING -> RUNNING
    sup.poll()
    assert factory.started[1].signals == [signal.SIGKILL]


# -- rest_for_one, stalls, lost children, forced stops, FATAL (issue 10) ---------------------------


class Undying(FakeProcess):
    """A process whose end is never seen (a zombie nobody reports)."""

    def signal(self, sig: int) -> None:
        self.signals.append(sig)


def make_tree(n: int = 2, **overrides: float) -> tuple[Supervisor, Clock, Factory, Factory]:
    """A fork server and n NPCs that depend on it, each kind from its own factory."""
    clock, npcs, server, groups = Clock(), Factory(), Factory(), OomGroups()
    overrides.setdefault("stall_s", float("inf"))
    config = SupervisorConfig(start_s=1.0, start_retries=2, backoff_s=0.5, max_restarts=3,
                              restart_period_s=10.0, stop_timeout_s=2.0, heartbeat_timeout_s=3.0,
                              **overrides)  # type: ignore[arg-type]
    sup = Supervisor(config, npcs, groups, clock)
    sup.add(ChildSpec(name="forkserver", factory=server, essential=True))
    for i in range(n):
        sup.add(ChildSpec(name=f"npc-{i}", npc=i, depends_on="forkserver"))
    return sup, clock, npcs, server


def bring_up(sup: Supervisor, clock: Clock) -> None:
    sup.start_all()
    sup.heartbeat("forkserver")  # ready
    sup.poll()
    for name in sup.children:
        sup.heartbeat(name)
    clock.now += 1.1
    sup.poll()


def test_dependents_wait_for_their_server_and_start_once_it_is_heard() -> None:
    sup, clock, npcs, server = make_tree()
    sup.start_all()
    assert len(server.started) == 1 and npcs.started == []
    assert sup.children["npc-0"].state == State.WAITING
    clock.now += 2.0
    sup.poll()  # running, but never heard: not ready yet
    assert npcs.started == []
    sup.heartbeat("forkserver")
    sup.poll()
    assert len(npcs.started) == 2 and sup.children["npc-1"].state == State.STARTING


def test_server_death_takes_its_dependents_down_and_restarts_them_after_it() -> None:
    sup, clock, npcs, server = make_tree()
    bring_up(sup, clock)
    assert all(c.state == State.RUNNING for c in sup.children.values())
    server.started[0].code = -9  # kill -9 of the fork server
    sup.poll()
    assert all(p.signals == [signal.SIGKILL] for p in npcs.started)  # rest_for_one
    assert sup.children["forkserver"].state == State.STARTING and len(server.started) == 2
    sup.poll()  # the NPCs' ends are seen: they wait for the new server
    assert [sup.children[f"npc-{i}"].state for i in range(2)] == [State.WAITING] * 2
    assert [sup.children[f"npc-{i}"].exits[-1].reason for i in range(2)] == ["forkserver exit"] * 2
    sup.poll()
    assert len(npcs.started) == 2  # not before the new server is ready
    sup.heartbeat("forkserver")
    sup.poll()
    assert len(npcs.started) == 4
    # counted as restarts, but not against their own restart intensity
    assert all(sup.children[f"npc-{i}"].restarts == 1 for i in range(2))
    assert all(not sup.children[f"npc-{i}"].restart_times for i in range(2))
    assert sup.children["forkserver"].restarts == 1


def test_a_dependent_that_dies_of_its_servers_death_first_still_waits() -> None:
    sup, clock, npcs, server = make_tree(1)
    bring_up(sup, clock)
    npcs.started[0].code = -9  # pdeathsig got there before the server's exit was seen
    server.started[0].code = -9
    sup.poll()
    assert sup.children["npc-0"].state == State.WAITING and not sup.children["npc-0"].restart_times


def test_a_fatal_essential_server_fails_the_run_and_stops_its_dependents() -> None:
    sup, clock, npcs, server = make_tree()
    sup.start_all()
    for _ in range(3):  # dies at start every time: start_retries=2, so the third failure is FATAL
        server.started[-1].code = 1
        sup.poll()
        clock.now += 10.0
        sup.poll()
    assert sup.children["forkserver"].state == State.FATAL
    assert sup.failed == ["forkserver"]
    assert all(sup.children[f"npc-{i}"].state == State.STOPPED for i in range(2)) and npcs.started == []


def test_a_fatal_npc_is_left_out_and_the_rest_carries_on() -> None:
    sup, clock, npcs, server = make_tree()
    bring_up(sup, clock)
    for _ in range(4):  # max_restarts=3 inside 10 s, each crash after it was RUNNING
        sup.children["npc-0"].handle.code = 1  # type: ignore[union-attr]
        sup.poll()
        clock.now += 1.1
        for name in ("forkserver", "npc-0", "npc-1"):
            sup.heartbeat(name)
        sup.poll()
    assert sup.children["npc-0"].state == State.FATAL and sup.failed == []
    assert sup.children["npc-1"].state == State.RUNNING and sup.children["forkserver"].state == State.RUNNING


def test_stop_goes_in_reverse_dependency_order() -> None:
    sup, clock, npcs, server = make_tree()
    bring_up(sup, clock)
    npcs.started[0].ignore_term = True
    sup.stop_all()
    assert server.started[0].signals == []  # its NPCs are not down yet
    assert npcs.started[1].signals[0] == signal.SIGTERM
    sup.poll()
    assert server.started[0].signals == []
    clock.now += 2.1
    sup.poll()  # npc-0 SIGKILLed after the stop timeout
    sup.poll()
    assert server.started[0].signals[0] == signal.SIGTERM
    sup.poll()
    assert sup.stopped


def test_a_child_whose_end_is_never_seen_is_given_up_after_the_kill_grace() -> None:
    sup, clock, factory, _ = make(kill_grace_s=1.0)
    factory.started.append(Undying(999))
    sup.children["npc-0"].handle = factory.started[0]
    sup.children["npc-0"].state = State.RUNNING
    sup.stop_all()
    clock.now += 2.1
    sup.poll()  # SIGKILL
    assert not sup.stopped
    clock.now += 1.1
    sup.poll()
    assert sup.stopped and sup.children["npc-0"].exits[-1].reason == "lost"


def test_force_stop_kills_at_once() -> None:
    sup, clock, npcs, server = make_tree()
    bring_up(sup, clock)
    for p in npcs.started:
        p.ignore_term = True
    sup.stop_all()
    sup.force_stop()
    assert all(signal.SIGKILL in p.signals for p in npcs.started)
    sup.poll()
    sup.poll()
    assert sup.stopped


def test_a_stall_of_the_supervisor_is_not_a_hang() -> None:
    sup, clock, factory, _ = make(stall_s=0.5)
    sup.start_all()
    for _ in range(3):
        clock.now += 0.5
        sup.poll()
    sup.heartbeat("npc-0")
    clock.now += 10.0  # the supervisor itself did not run for 10 s (a loaded machine)
    sup.poll()
    assert factory.started[0].signals == [] and state(sup) == State.RUNNING
    for _ in range(7):  # passes on time again: silence now counts
        clock.now += 0.45
        sup.poll()
    assert factory.started[0].signals == [signal.SIGKILL]


def test_a_dependency_must_be_added_first() -> None:
    sup, _, _, _ = make()
    with pytest.raises(ValueError, match="depends on 'nowhere'"):
        sup.add(ChildSpec(name="npc-9", npc=9, depends_on="nowhere"))


def test_a_child_that_dies_before_its_first_heartbeat_failed_to_start() -> None:
    sup, clock, factory, _ = make()
    sup.start_all()
    for _ in range(3):  # RUNNING after start_s, but never heard: each death is a failed start
        clock.now += 1.5
        sup.poll()
        assert state(sup) == State.RUNNING
        factory.started[-1].code = 1
        sup.poll()
        if state(sup) == State.FATAL:
            break
        assert state(sup) == State.BACKOFF
        clock.now += 5.0
        sup.poll()
    assert state(sup) == State.FATAL and sup.children["npc-0"].restarts == 0
