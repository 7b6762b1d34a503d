"""Cgroup control: v1 for real (where writable), v2 file formats over a temporary tree, detection."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.cgroups import (
    CgroupConfig,
    CgroupV1,
    CgroupV2,
    NoCgroups,
    check_quota,
    detect,
    parse_flat_keyed,
    v1_mounts,
)


def _v1_writable() -> str:
    mounts = v1_mounts()
    if "cpu" not in mounts or "memory" not in mounts:
        return "cgroup v1 cpu/memory controllers are not mounted"
    if os.geteuid() != 0 and not os.access(mounts["cpu"], os.W_OK):
        return "cgroup v1 hierarchy is not writable by this user"
    return ""


V1_REASON = _v1_writable()
needs_v1 = pytest.mark.skipif(bool(V1_REASON), reason=V1_REASON or "v1 available")


@pytest.fixture
def v1() -> Iterator[CgroupV1]:
    groups = CgroupV1("test-cgroups")
    groups.setup()
    try:
        yield groups
    finally:
        groups.close()


def _spin(seconds: float) -> subprocess.Popen[bytes]:
    code = f"import time\nt = time.time() + {seconds}\nwhile time.time() < t: pass"
    return subprocess.Popen([sys.executable, "-c", code])


@needs_v1
def test_v1_quota_is_enforced_and_measured(v1: CgroupV1) -> None:
    v1.create("npc-0", cpu_quota=25.0, memory_max=256 << 20)
    assert v1.cpu_quota("npc-0") == pytest.approx(25.0)
    proc = _spin(10)
    try:
        v1.attach("npc-0", proc.pid)
        assert v1.pids("npc-0") == [proc.pid]
        time.sleep(0.3)
        start, t0 = v1.cpu_seconds("npc-0"), time.monotonic()
        time.sleep(1.5)
        used = (v1.cpu_seconds("npc-0") - start) / (time.monotonic() - t0)
        assert used == pytest.approx(0.25, rel=0.15)
        v1.set_cpu_quota("npc-0", 50.0)  # changed live
        assert v1.cpu_quota("npc-0") == pytest.approx(50.0)
        assert (v1._dir("cpu", "npc-0") / "cpu.shares").read_text().strip() == "1024"  # the default weight
        v1.set_cpu_weight("npc-0", 6400)
        assert (v1._dir("cpu", "npc-0") / "cpu.shares").read_text().strip() == "65536"
    finally:
        proc.kill()
        proc.wait()


@needs_v1
def test_v1_close_kills_members_and_removes_every_group(v1: CgroupV1) -> None:
    v1.create("npc-1", cpu_quota=50.0)
    proc = _spin(30)
    v1.attach("npc-1", proc.pid)
    run_dirs = v1.run_dirs()
    assert all(d.is_dir() for d in run_dirs)
    v1.close()
    assert proc.wait(5) == -signal.SIGKILL
    assert not any(d.exists() for d in run_dirs)


@needs_v1
def test_v1_sweeps_groups_of_a_dead_run() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = CgroupV1("stale")
    stale.run = f"stale-p{dead.pid}"
    stale.setup()
    stale.create("npc-3", cpu_quota=10.0)
    orphan = _spin(30)
    stale.attach("npc-3", orphan.pid)
    fresh = CgroupV1("fresh")
    try:
        fresh.setup()
        assert orphan.wait(5) == -signal.SIGKILL
        assert not any(d.exists() for d in stale.run_dirs())
    finally:
        fresh.close()
        stale.close()


@needs_v1
def test_v1_oom_kill_is_counted(v1: CgroupV1) -> None:
    v1.create("npc-2", cpu_quota=100.0, memory_max=32 << 20)
    code = "import os,sys\nsys.stdin.read(1)\nx=bytearray(256<<20)\nx[::4096]=b'1'*len(x[::4096])"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        v1.attach("npc-2", proc.pid)
        proc.stdin.write(b"x")  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        assert proc.wait(10) == -signal.SIGKILL
        assert v1.oom_kills("npc-2") >= 1
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("weight", [0, 10_001, 2.5, True])
def test_a_cpu_weight_outside_1_to_10000_is_named(weight: object) -> None:
    with pytest.raises(ValueError, match=r"cpu_weight=.*: must be an integer in 1\.\.10000"):
        NoCgroups("test").set_cpu_weight("npc-0", weight)  # type: ignore[arg-type]


def test_quota_range_is_checked() -> None:
    assert check_quota(5) == 5.0
    for bad in (4.9, 101, -1):
        with pytest.raises(ValueError, match="cpu_quota"):
            check_quota(bad)
    with pytest.raises(ValueError, match="cgroups.backend"):
        CgroupConfig(backend="cgroupv3")


class _TreeV2(CgroupV2):
    """v2 over a plain directory tree: interface files are plain files, so directories are removed whole."""

    def _rmdir(self, path: Path) -> None:
        shutil.rmtree(path)


def test_v2_writes_the_kernel_formats(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    groups = _TreeV2("test", CgroupConfig(root=str(tmp_path)), mount=tmp_path, own="/")
    groups.setup()
    run = tmp_path / "nimmerverse" / groups.run
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (run / "cgroup.subtree_control").read_text() == "+cpu +memory"
    groups.create("npc-7", cpu_quota=25.0, memory_max=512 << 20)
    npc = run / "npc-7"
    assert (npc / "cpu.max").read_text() == "25000 100000"
    assert (npc / "memory.max").read_text() == str(512 << 20)
    assert groups.cpu_quota("npc-7") == pytest.approx(25.0)
    groups.set_cpu_quota("npc-7", 5)
    assert (npc / "cpu.max").read_text() == "5000 100000"
    groups.set_memory_max("npc-7", None)
    assert (npc / "memory.max").read_text() == "max"
    groups.set_cpu_weight("npc-7", 6400)
    assert (npc / "cpu.weight").read_text() == "6400"
    groups.attach("npc-7", 4242)
    assert (npc / "cgroup.procs").read_text() == "4242"
    assert groups.procs_files("npc-7") == [str(npc / "cgroup.procs")]
    (npc / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (npc / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert groups.cpu_seconds("npc-7") == pytest.approx(2.5)
    assert groups.oom_kills("npc-7") == 1
    (npc / "cgroup.procs").write_text("")
    groups.close()
    assert not run.exists()


def test_v2_sweeps_dead_runs_in_a_tree(tmp_path: Path) -> None:
    (tmp_path / "nimmerverse" / "old-p999999999" / "npc-0").mkdir(parents=True)
    (tmp_path / "nimmerverse" / f"live-p{os.getpid()}").mkdir(parents=True)
    groups = _TreeV2("test", CgroupConfig(root=str(tmp_path)), mount=tmp_path, own="/")
    assert groups.sweep_stale() == ["old-p999999999"]
    assert (tmp_path / "nimmerverse" / f"live-p{os.getpid()}").exists()


def test_flat_keyed_parser() -> None:
    text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
    assert parse_flat_keyed(text) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 3}


def test_none_backend_says_uncapped_and_still_kills(caplog: pytest.LogCaptureFixture) -> None:
    groups = detect("test-none", CgroupConfig(backend="none"))
    assert isinstance(groups, NoCgroups) and not groups.capped
    assert "UNCAPPED" in groups.describe()
    groups.create("npc-0", cpu_quota=30)
    proc = _spin(30)
    groups.attach("npc-0", proc.pid)
    groups.close()
    assert proc.wait(5) == -signal.SIGKILL


@needs_v1
def test_detect_picks_v1_here() -> None:
    groups = detect("test-detect")
    try:
        assert groups.name in ("v1", "v2")
    finally:
        groups.close()
