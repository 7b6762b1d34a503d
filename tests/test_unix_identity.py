"""Unix identities: with runtime.organism.user the NPC processes run as that unprivileged user.

These tests create a real user with useradd (root on these machines) and remove it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents import organism
from agents.forkserver import ForkServer, SpawnFactory, process_alive
from agents.organism import Organism
from agents.supervisor import ChildSpec
from tests.live import organism_config, until

SECRET = "the cortex's weights"


@pytest.fixture(scope="module")
def npc_user() -> Iterator[str]:
    """A fresh unprivileged user (and its group), deleted at the end."""
    name = f"nvnpc{os.getpid() % 100000}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    try:
        yield name
    finally:  # userdel refuses while a process of the user lives: end the tests' leftovers first
        uid = pwd.getpwnam(name).pw_uid
        for pid in pids_of(uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _ in range(50):  # a killed process leaves the table once reaped
            if subprocess.run(["userdel", name], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["userdel", name], check=True, capture_output=True)


def pids_of(uid: int) -> list[int]:
    """Processes whose real uid is uid."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            line = next(x for x in status.read_text().splitlines() if x.startswith("Uid:"))
            if int(line.split()[1]) == uid:
                found.append(int(status.parent.name))
    return found


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user may enter (pytest's tmp_path lies under a root-only one), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="nimmerverse-identity-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def secret(open_dir: Path) -> Path:
    """A file of another identity (root) with mode 0600, in a folder anyone may enter."""
    path = open_dir / "secret"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


def read_as_child(spec: ChildSpec, factory: ForkServer | SpawnFactory, out: Path, timeout: float = 60.0,
                  ) -> dict:
    """Start the probe for spec and return what it found out."""
    handle = factory(spec, [])
    deadline = time.monotonic() + timeout
    while handle.poll() is None:
        assert time.monotonic() < deadline, "the probe did not finish"
        time.sleep(0.02)
    assert handle.poll() == 0
    return json.loads(out.read_text())


def until_true(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait (polling) until check() holds; fail naming what after timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def probe_spec(tmp_path: Path, secret: Path, user: str) -> tuple[ChildSpec, Path]:
    outbox = tmp_path / "out"
    outbox.mkdir(mode=0o777)
    outbox.chmod(0o777)
    out = outbox / "probe.json"
    config = {"path": str(secret), "out": str(out)}
    argv = [sys.executable, "-m", "tests.unix_probe", json.dumps(config)]
    return ChildSpec(name="npc-0", npc=0, config=config, argv=argv, target="tests.unix_probe:child_main",
                     user=user), out


@pytest.mark.slow
def test_a_forked_npc_runs_as_its_user_and_cannot_read_another_identitys_file(
        open_dir: Path, secret: Path, npc_user: str) -> None:
    spec, out = probe_spec(open_dir, secret, npc_user)
    with ForkServer(preload=(), log_dir=open_dir) as fork:
        found = read_as_child(spec, fork, out)
        unchanged = read_as_child(ChildSpec(**{**spec.__dict__, "user": ""}), fork, out)
    entry = pwd.getpwnam(npc_user)
    assert found == {"uid": entry.pw_uid, "gid": entry.pw_gid, "groups": [], "read": "PermissionError"}
    assert unchanged["uid"] == 0 and unchanged["read"] == SECRET  # the same probe as root reads it


@pytest.mark.slow
def test_a_child_that_dropped_its_user_still_dies_with_its_fork_server(open_dir: Path, npc_user: str) -> None:
    spec = ChildSpec(name="npc-0", npc=0, config={"seconds": 60}, target="tests.unix_probe:sleep_main",
                     user=npc_user)
    with ForkServer(preload=(), log_dir=open_dir) as fork:
        child = fork(spec, [])
        assert fork.process is not None
        uid = str(pwd.getpwnam(npc_user).pw_uid)
        status = Path(f"/proc/{child.pid}/status")
        until_true(lambda: f"Uid:\t{uid}" in status.read_text(), "the child running as its user")
        fork.process.kill()  # setuid cleared its parent-death signal; the child asked again after it
        deadline = time.monotonic() + 10
        while process_alive(child.pid):
            assert time.monotonic() < deadline, "the child outlived its fork server"
            time.sleep(0.02)


def test_a_spawned_child_drops_before_exec(open_dir: Path, secret: Path, npc_user: str) -> None:
    spec, out = probe_spec(open_dir, secret, npc_user)
    try:
        found = read_as_child(spec, SpawnFactory(log_dir=open_dir), out)
    except PermissionError as exc:  # an interpreter under /root (pyenv): out of the user's reach, not root's
        assert exc.filename == sys.executable
        return
    assert found["uid"] == pwd.getpwnam(npc_user).pw_uid and found["read"] == "PermissionError"


@pytest.mark.slow
async def test_the_organism_runs_its_npcs_as_the_user(open_dir: Path, npc_user: str) -> None:
    config = organism_config(open_dir, 2)  # its run folder must be open to the NPCs' user
    config.user = npc_user
    entry = pwd.getpwnam(npc_user)
    async with Organism(config) as org:
        sup, world = org.supervisor, org.world
        assert sup is not None and world is not None
        running = asyncio.create_task(org.run(0))
        try:
            await until(lambda: world.acted.min() > 5, 60, "every NPC acting as its user")
            for i in range(2):
                pid = sup.children[f"npc-{i}"].handle.pid  # type: ignore[union-attr]
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
                gids = next(line for line in status if line.startswith("Gid:")).split()[1:]
                assert set(uids) == {str(entry.pw_uid)} and set(gids) == {str(entry.pw_gid)}
            credentials = Path(config.run_dir) / "nats" / "credentials.json"
            assert credentials.stat().st_uid == 0 and credentials.stat().st_mode & 0o077 == 0
        finally:
            org.stop.set()
            summary = await asyncio.wait_for(running, 30)
    assert all(n["state"] == "STOPPED" and n["restarts"] == 0 for n in summary["npcs"].values())
    checkpoint = Path(config.run_dir) / "npcs" / "npc-0.pt"
    assert checkpoint.stat().st_uid == entry.pw_uid  # it saved its brain as itself


def test_a_user_that_does_not_exist_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        organism.main(["--user", "no-such-npc-user", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert err == ["error: runtime.organism.user='no-such-npc-user': no such Unix user"]
    assert not (tmp_path / "run").exists()
