"""Cgroup control: one group per NPC under one parent per run, CPU quota and memory max, OOM kills.

Backends (``detect`` picks one at start and reports it once):

- ``v2``: cgroup v2 files ``cpu.max`` ("quota period"), ``memory.max``, ``memory.events`` (``oom_kill``),
  ``cpu.stat`` (``usage_usec``), ``cgroup.procs``, ``cgroup.kill``; controllers enabled through
  ``cgroup.subtree_control``. Groups live under the v2 root when it is writable (root is exempt from
  the no-internal-processes rule), else under this process's own (delegated) group.
- ``v1``: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, ``cpuacct.usage``, ``memory.limit_in_bytes``,
  ``memory.oom_control`` (``oom_kill``), one directory per mounted controller, each created under
  this process's own group of that controller (so a container's accounting still holds).
- ``systemd``: ``systemd-run --user --scope`` wraps the NPC command in a transient scope whose
  ``CPUQuota=`` / ``MemoryMax=`` are changed live with ``systemctl --user set-property``.
- ``none``: no permission; NPCs run uncapped, said clearly once.

Layout: ``<base>/nimmerverse/<run>-p<pid>/<group>``. The owner pid in the run's name lets the next
start sweep the groups of a run whose owner died (killing what is left in them). Quotas are percent
of one core (5-100); memory max is bytes (None: unlimited).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BACKENDS = ("auto", "v2", "v1", "systemd", "none")
_OWNER = re.compile(r"-p(\d+)$")
_reported: set[str] = set()


@dataclass
class CgroupConfig:
    """Which cgroup backend to use and where its groups live."""

    backend: str = "auto"
    """auto (detect), v2, v1, systemd or none."""
    root: str = "/sys/fs/cgroup"
    """Where the cgroup filesystems are mounted (v2 tests point this at a temporary tree)."""
    base: str = "nimmerverse"
    """Name of the directory that holds every run's groups."""
    cpu_period_us: int = 100_000
    """CFS period for quotas, in microseconds."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"cgroups.backend={self.backend!r}: must be one of {', '.join(BACKENDS)}")
        if not 1000 <= self.cpu_period_us <= 1_000_000:
            raise ValueError(f"cgroups.cpu_period_us={self.cpu_period_us!r}: must be in 1000..1000000")


class CgroupError(RuntimeError):
    """A cgroup operation failed; the message names the group and file."""


def check_quota(percent: float) -> float:
    """The quota percent if in 5..100, else ValueError naming it."""
    if not 5.0 <= float(percent) <= 100.0:
        raise ValueError(f"cpu_quota={percent!r}: must be in 5..100 (percent of one core)")
    return float(percent)


#: A group's CPU weight when none is set (cgroup v2's default ``cpu.weight``; v1's 1024 ``cpu.shares``).
DEFAULT_WEIGHT = 100


def check_weight(weight: int) -> int:
    """The CPU weight if an integer in 1..10000 (cgroup v2's range), else ValueError naming it."""
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 10_000:
        raise ValueError(f"cpu_weight={weight!r}: must be an integer in 1..10000 (100: the default share)")
    return weight


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_cgroups(proc_file: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's group path per v1 controller, and under "" its v2 path."""
    out: dict[str, str] = {}
    for line in Path(proc_file).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name.removeprefix("name=")] = path
    return out


def v1_mounts(mounts_file: str = "/proc/self/mounts") -> dict[str, Path]:
    """Mount point of each mounted cgroup v1 controller."""
    out: dict[str, Path] = {}
    for line in Path(mounts_file).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup":
            for opt in parts[3].split(","):
                if opt in ("cpu", "cpuacct", "memory", "pids"):
                    out[opt] = Path(parts[1])
    return out


def v2_mount(mounts_file: str = "/proc/self/mounts") -> Path | None:
    """Mount point of the cgroup2 filesystem, if any."""
    for line in Path(mounts_file).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return Path(parts[1])
    return None


class Cgroups(ABC):
    """Groups of one run: create, cap, measure, kill and remove; the run parent is swept and removed."""

    name = "abstract"
    capped = True

    def __init__(self, run: str, config: CgroupConfig | None = None) -> None:
        self.config = config or CgroupConfig()
        self.run = f"{run}-p{os.getpid()}"
        self.groups: list[str] = []

    def describe(self) -> str:
        """One line saying what this backend does."""
        return f"cgroups: {self.name}"

    @abstractmethod
    def setup(self) -> None:
        """Sweep stale runs and create this run's parent group."""

    @abstractmethod
    def create(self, group: str, cpu_quota: float | None = None, memory_max: int | None = None) -> None:
        """Create one group with its limits."""

    def procs_files(self, group: str) -> list[str]:
        """Files a child writes its own pid into to join the group (empty when joining is by command)."""
        return []

    def wrap_command(self, group: str, argv: list[str]) -> list[str]:
        """The command that starts argv inside the group (systemd scopes); others return argv."""
        return argv

    def cpu_usage_file(self, group: str) -> str:
        """The file a member reads its group's CPU usage from ('' when there is none)."""
        return ""

    @abstractmethod
    def attach(self, group: str, pid: int) -> None:
        """Move a process into the group."""

    @abstractmethod
    def set_cpu_quota(self, group: str, percent: float) -> None:
        """Set the group's CPU quota in percent of one core (5-100), live."""

    @abstractmethod
    def set_memory_max(self, group: str, max_bytes: int | None) -> None:
        """Set the group's memory max in bytes (None: unlimited), live."""

    def set_cpu_weight(self, group: str, weight: int) -> None:
        """Set the group's CPU weight: its share of contended CPU against its sibling groups (100: the
        default), not a cap nor a reservation. A backend without one checks the value and ignores it."""
        check_weight(weight)

    @abstractmethod
    def cpu_seconds(self, group: str) -> float:
        """CPU seconds used by the group so far."""

    @abstractmethod
    def oom_kills(self, group: str) -> int:
        """OOM kills counted in the group so far."""

    @abstractmethod
    def pids(self, group: str) -> list[int]:
        """Processes in the group."""

    @abstractmethod
    def kill(self, group: str) -> None:
        """SIGKILL every process in the group."""

    @abstractmethod
    def remove(self, group: str) -> None:
        """Kill what is left in the group and remove it."""

    def close(self) -> None:
        """Remove every group of this run and the run parent."""
        for group in list(self.groups):
            self.remove(group)


class NoCgroups(Cgroups):
    """No permission: NPCs run uncapped; quotas are remembered, not enforced."""

    name = "none"
    capped = False

    def __init__(self, run: str, config: CgroupConfig | None = None, reason: str = "") -> None:
        super().__init__(run, config)
        self.reason = reason
        self.quota: dict[str, float] = {}
        self.members: dict[str, set[int]] = {}

    def describe(self) -> str:
        return f"cgroups: none ({self.reason or 'disabled'}); NPCs run UNCAPPED, CPU quotas are not enforced"

    def setup(self) -> None:
        return None

    def create(self, group: str, cpu_quota: float | None = None, memory_max: int | None = None) -> None:
        if group not in self.groups:
            self.groups.append(group)
        self.members[group] = set()
        if cpu_quota is not None:
            self.set_cpu_quota(group, cpu_quota)

    def attach(self, group: str, pid: int) -> None:
        self.members.setdefault(group, set()).add(pid)

    def set_cpu_quota(self, group: str, percent: float) -> None:
        self.quota[group] = check_quota(percent)

    def set_memory_max(self, group: str, max_bytes: int | None) -> None:
        return None

    def cpu_seconds(self, group: str) -> float:
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids(group):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def oom_kills(self, group: str) -> int:
        return 0

    def pids(self, group: str) -> list[int]:
        return [p for p in self.members.get(group, ()) if _pid_alive(p)]

    def kill(self, group: str) -> None:
        for pid in self.pids(group):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, group: str) -> None:
        self.kill(group)
        self.members.pop(group, None)
        if group in self.groups:
            self.groups.remove(group)


class _FsCgroups(Cgroups):
    """Shared code of the filesystem backends: a list of controller directories per group."""

    kill_timeout_s = 5.0

    @abstractmethod
    def bases(self) -> list[Path]:
        """The ``<...>/nimmerverse`` directories of every controller hierarchy used."""

    def run_dirs(self) -> list[Path]:
        """This run's parent directory in every hierarchy."""
        return [b / self.run for b in self.bases()]

    def dirs(self, group: str) -> list[Path]:
        """The group's directory in every hierarchy."""
        return [d / group for d in self.run_dirs()]

    def _write(self, path: Path, value: str) -> None:
        try:
            path.write_text(value)
        except OSError as exc:
            raise CgroupError(f"cgroup write {value!r} to {path}: {exc.strerror or exc}") from None

    def _read(self, path: Path) -> str:
        try:
            return path.read_text()
        except OSError as exc:
            raise CgroupError(f"cgroup read {path}: {exc.strerror or exc}") from None

    def _rmdir(self, path: Path) -> None:
        """Remove one (empty) group directory; retried while the kernel still counts exiting tasks."""
        deadline = time.monotonic() + self.kill_timeout_s
        while True:
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise CgroupError(f"cgroup remove {path}: {exc.strerror or exc}") from None
                self._kill_dir(path)
                time.sleep(0.01)

    def _dir_pids(self, path: Path) -> list[int]:
        try:
            return [int(x) for x in (path / "cgroup.procs").read_text().split()]
        except (FileNotFoundError, ValueError):
            return []

    def _kill_dir(self, path: Path) -> None:
        for child in [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []:
            self._kill_dir(child)
        for pid in self._dir_pids(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _remove_tree(self, path: Path) -> None:
        if not path.is_dir():
            return
        self._kill_dir(path)
        for child in [p for p in path.iterdir() if p.is_dir()]:
            self._remove_tree(child)
        self._rmdir(path)

    def sweep_stale(self) -> list[str]:
        """Remove the run groups whose owner process is gone; the names swept."""
        swept: list[str] = []
        for base in self.bases():
            if not base.is_dir():
                continue
            for run_dir in [p for p in base.iterdir() if p.is_dir()]:
                match = _OWNER.search(run_dir.name)
                if match and not _pid_alive(int(match.group(1))):
                    self._remove_tree(run_dir)
                    swept.append(run_dir.name)
        if swept:
            names = ", ".join(sorted(set(swept)))
            log.warning("cgroups: swept %d stale group(s) of dead runs: %s", len(set(swept)), names)
        return sorted(set(swept))

    def pids(self, group: str) -> list[int]:
        return sorted({pid for d in self.dirs(group) for pid in self._dir_pids(d)})

    def procs_files(self, group: str) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs(group)]

    def attach(self, group: str, pid: int) -> None:
        for d in self.dirs(group):
            self._write(d / "cgroup.procs", str(pid))

    def kill(self, group: str) -> None:
        for d in self.dirs(group):
            self._kill_dir(d)

    def remove(self, group: str) -> None:
        for d in self.dirs(group):
            self._remove_tree(d)
        if group in self.groups:
            self.groups.remove(group)

    def close(self) -> None:
        super().close()
        for d in self.run_dirs():
            self._remove_tree(d)
        for base in self.bases():
            with contextlib.suppress(OSError):  # another run may still use it
                base.rmdir()


class CgroupV1(_FsCgroups):
    """cgroup v1: cpu (cfs quota), cpuacct (usage) and memory hierarchies."""

    name = "v1"

    def __init__(self, run: str, config: CgroupConfig | None = None,
                 mounts: dict[str, Path] | None = None, own: dict[str, str] | None = None) -> None:
        super().__init__(run, config)
        self.mounts = mounts if mounts is not None else v1_mounts()
        own = own if own is not None else own_cgroups()
        for needed in ("cpu", "memory"):
            if needed not in self.mounts:
                raise CgroupError(f"cgroup v1 controller {needed} is not mounted")
        self.controllers = {c: self._base(c, own.get(c, "/")) for c in ("cpu", "cpuacct", "memory")
                            if c in self.mounts}

    def _base(self, controller: str, own_path: str) -> Path:
        mount = self.mounts[controller]
        here = mount / own_path.lstrip("/")
        return (here if here.is_dir() else mount) / self.config.base

    def describe(self) -> str:
        return "cgroups: v1 (" + ", ".join(f"{c} {p}" for c, p in self.controllers.items()) + ")"

    def bases(self) -> list[Path]:
        return list(dict.fromkeys(self.controllers.values()))

    def _dir(self, controller: str, group: str) -> Path:
        return self.controllers[controller] / self.run / group

    def setup(self) -> None:
        self.sweep_stale()
        for d in self.run_dirs():
            d.mkdir(parents=True, exist_ok=True)

    def create(self, group: str, cpu_quota: float | None = None, memory_max: int | None = None) -> None:
        for d in self.dirs(group):
            d.mkdir(parents=True, exist_ok=True)
        if group not in self.groups:
            self.groups.append(group)
        self._write(self._dir("cpu", group) / "cpu.cfs_period_us", str(self.config.cpu_period_us))
        if cpu_quota is not None:
            self.set_cpu_quota(group, cpu_quota)
        if memory_max is not None:
            self.set_memory_max(group, memory_max)

    def set_cpu_quota(self, group: str, percent: float) -> None:
        quota = round(check_quota(percent) / 100.0 * self.config.cpu_period_us)
        self._write(self._dir("cpu", group) / "cpu.cfs_quota_us", str(quota))

    def set_cpu_weight(self, group: str, weight: int) -> None:
        shares = max(2, round(check_weight(weight) * 1024 / DEFAULT_WEIGHT))  # v1: 1024 is the default
        self._write(self._dir("cpu", group) / "cpu.shares", str(shares))

    def cpu_quota(self, group: str) -> float | None:
        """The group's quota in percent of one core (None: unlimited)."""
        quota = int(self._read(self._dir("cpu", group) / "cpu.cfs_quota_us"))
        period = int(self._read(self._dir("cpu", group) / "cpu.cfs_period_us"))
        return None if quota < 0 else 100.0 * quota / period

    def set_memory_max(self, group: str, max_bytes: int | None) -> None:
        value = "-1" if max_bytes is None else str(max_bytes)
        d = self._dir("memory", group)
        try:
            (d / "memory.limit_in_bytes").write_text(value)
        except OSError as exc:
            if exc.errno != errno.EBUSY or self._dir_pids(d):
                raise CgroupError(f"cgroup write {value!r} to {d / 'memory.limit_in_bytes'}: "
                                  f"{exc.strerror} (v1 cannot shrink below the group's usage)") from None
            self._write(d / "memory.force_empty", "0")  # an empty group: drop its stale charges first
            self._write(d / "memory.limit_in_bytes", value)

    def cpu_usage_file(self, group: str) -> str:
        return str(self._dir("cpuacct", group) / "cpuacct.usage") if "cpuacct" in self.controllers else ""

    def cpu_seconds(self, group: str) -> float:
        if "cpuacct" in self.controllers:
            return int(self._read(self._dir("cpuacct", group) / "cpuacct.usage")) / 1e9
        return 0.0

    def oom_kills(self, group: str) -> int:
        text = self._read(self._dir("memory", group) / "memory.oom_control")
        return parse_flat_keyed(text).get("oom_kill", 0)


class CgroupV2(_FsCgroups):
    """cgroup v2: one unified hierarchy with cpu and memory controllers enabled down to the NPC groups."""

    name = "v2"

    def __init__(self, run: str, config: CgroupConfig | None = None, mount: Path | None = None,
                 own: str | None = None) -> None:
        super().__init__(run, config)
        self.mount = mount if mount is not None else (v2_mount() or Path(self.config.root))
        root_writable = os.access(self.mount, os.W_OK)
        own_path = own if own is not None else own_cgroups().get("", "/")
        parent = self.mount if root_writable else self.mount / own_path.lstrip("/")
        self.parent = parent
        self.base = parent / self.config.base

    def describe(self) -> str:
        return f"cgroups: v2 ({self.base})"

    def bases(self) -> list[Path]:
        return [self.base]

    def _enable(self, directory: Path) -> None:
        """Enable the cpu and memory controllers for the children of a directory."""
        self._write(directory / "cgroup.subtree_control", "+cpu +memory")

    def setup(self) -> None:
        self.sweep_stale()
        self._enable(self.parent)
        self.base.mkdir(exist_ok=True)
        self._enable(self.base)
        run_dir = self.base / self.run
        run_dir.mkdir(exist_ok=True)
        self._enable(run_dir)

    def create(self, group: str, cpu_quota: float | None = None, memory_max: int | None = None) -> None:
        self.dirs(group)[0].mkdir(parents=True, exist_ok=True)
        if group not in self.groups:
            self.groups.append(group)
        if cpu_quota is not None:
            self.set_cpu_quota(group, cpu_quota)
        if memory_max is not None:
            self.set_memory_max(group, memory_max)

    def _group(self, group: str) -> Path:
        return self.base / self.run / group

    def set_cpu_quota(self, group: str, percent: float) -> None:
        quota = round(check_quota(percent) / 100.0 * self.config.cpu_period_us)
        self._write(self._group(group) / "cpu.max", f"{quota} {self.config.cpu_period_us}")

    def set_cpu_weight(self, group: str, weight: int) -> None:
        self._write(self._group(group) / "cpu.weight", str(check_weight(weight)))

    def cpu_quota(self, group: str) -> float | None:
        """The group's quota in percent of one core (None: unlimited)."""
        quota, period = self._read(self._group(group) / "cpu.max").split()
        return None if quota == "max" else 100.0 * int(quota) / int(period)

    def set_memory_max(self, group: str, max_bytes: int | None) -> None:
        self._write(self._group(group) / "memory.max", "max" if max_bytes is None else str(max_bytes))

    def cpu_usage_file(self, group: str) -> str:
        return str(self._group(group) / "cpu.stat")

    def cpu_seconds(self, group: str) -> float:
        return parse_flat_keyed(self._read(self._group(group) / "cpu.stat")).get("usage_usec", 0) / 1e6

    def oom_kills(self, group: str) -> int:
        return parse_flat_keyed(self._read(self._group(group) / "memory.events")).get("oom_kill", 0)

    def _kill_dir(self, path: Path) -> None:
        kill_file = path / "cgroup.kill"
        if kill_file.exists() and self._dir_pids(path):
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        super()._kill_dir(path)


class SystemdScope(Cgroups):
    """``systemd-run --user --scope`` units per NPC; limits changed with ``systemctl --user set-property``."""

    name = "systemd"

    def __init__(self, run: str, config: CgroupConfig | None = None) -> None:
        super().__init__(run, config)
        self.limits: dict[str, dict[str, str]] = {}

    def unit(self, group: str) -> str:
        """The scope unit name of a group."""
        return f"{self.config.base}-{self.run}-{group}.scope"

    def _systemctl(self, *args: str) -> str:
        proc = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise CgroupError(f"systemctl --user {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
        return proc.stdout

    def setup(self) -> None:
        out = self._systemctl("list-units", f"{self.config.base}-*", "--plain", "--no-legend", "--all")
        for line in out.splitlines():
            unit = line.split()[0] if line.split() else ""
            match = re.search(r"-p(\d+)-", unit)
            if match and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(CgroupError):
                    self._systemctl("stop", unit)

    def create(self, group: str, cpu_quota: float | None = None, memory_max: int | None = None) -> None:
        if group not in self.groups:
            self.groups.append(group)
        limits = self.limits.setdefault(group, {})
        if cpu_quota is not None:
            limits["CPUQuota"] = f"{check_quota(cpu_quota):g}%"
        if memory_max is not None:
            limits["MemoryMax"] = str(memory_max)

    def wrap_command(self, group: str, argv: list[str]) -> list[str]:
        props = [a for k, v in self.limits.get(group, {}).items() for a in ("-p", f"{k}={v}")]
        unit = f"--unit={self.unit(group)}"
        return ["systemd-run", "--user", "--scope", "--quiet", unit, *props, "--", *argv]

    def attach(self, group: str, pid: int) -> None:
        return None  # joined by wrap_command

    def _set(self, group: str, key: str, value: str) -> None:
        self.limits.setdefault(group, {})[key] = value
        with contextlib.suppress(CgroupError):  # the scope may not be running yet
            self._systemctl("set-property", "--runtime", self.unit(group), f"{key}={value}")

    def set_cpu_quota(self, group: str, percent: float) -> None:
        self._set(group, "CPUQuota", f"{check_quota(percent):g}%")

    def set_memory_max(self, group: str, max_bytes: int | None) -> None:
        self._set(group, "MemoryMax", "infinity" if max_bytes is None else str(max_bytes))

    def set_cpu_weight(self, group: str, weight: int) -> None:
        self._set(group, "CPUWeight", str(check_weight(weight)))

    def _show(self, group: str, prop: str) -> str:
        try:
            return self._systemctl("show", "-p", prop, "--value", self.unit(group)).strip()
        except CgroupError:
            return ""

    def cpu_seconds(self, group: str) -> float:
        value = self._show(group, "CPUUsageNSec")
        return int(value) / 1e9 if value.isdigit() else 0.0

    def oom_kills(self, group: str) -> int:
        return int(self._show(group, "Result") == "oom-kill")

    def pids(self, group: str) -> list[int]:
        value = self._show(group, "MainPID")
        return [int(value)] if value.isdigit() and int(value) > 0 else []

    def kill(self, group: str) -> None:
        with contextlib.suppress(CgroupError):
            self._systemctl("kill", "--signal=SIGKILL", self.unit(group))

    def remove(self, group: str) -> None:
        with contextlib.suppress(CgroupError):
            self._systemctl("stop", self.unit(group))
        if group in self.groups:
            self.groups.remove(group)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A cgroup flat-keyed file ("key value" per line) as a dict of ints."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _try_v2(run: str, config: CgroupConfig) -> Cgroups:
    mount = v2_mount()
    if mount is None:
        raise CgroupError("no cgroup2 filesystem mounted")
    controllers = (mount / "cgroup.controllers").read_text().split()
    if not {"cpu", "memory"} <= set(controllers):
        raise CgroupError(f"cgroup2 at {mount} offers {controllers or 'no controllers'}, not cpu and memory")
    groups = CgroupV2(run, config, mount)
    groups.setup()
    return groups


def _try_v1(run: str, config: CgroupConfig) -> Cgroups:
    groups = CgroupV1(run, config)
    groups.setup()
    return groups


def _try_systemd(run: str, config: CgroupConfig) -> Cgroups:
    if shutil.which("systemd-run") is None:
        raise CgroupError("systemd-run not found")
    groups = SystemdScope(run, config)
    groups._systemctl("is-system-running")
    groups.setup()
    return groups


def detect(run: str, config: CgroupConfig | None = None) -> Cgroups:
    """The first backend that works (v2, v1, systemd, none), set up for this run and reported once."""
    config = config or CgroupConfig()
    tries = {"v2": _try_v2, "v1": _try_v1, "systemd": _try_systemd}
    order = list(tries) if config.backend == "auto" else [b for b in (config.backend,) if b in tries]
    reasons: list[str] = []
    groups: Cgroups | None = None
    for name in order:
        try:
            groups = tries[name](run, config)
            break
        except (CgroupError, OSError, subprocess.SubprocessError) as exc:
            reasons.append(f"{name}: {exc}")
    if groups is None:
        if config.backend not in ("auto", "none"):
            raise CgroupError(f"cgroups.backend={config.backend}: {'; '.join(reasons)}")
        groups = NoCgroups(run, config, "; ".join(reasons) or "cgroups.backend=none")
    text = groups.describe()
    if text not in _reported:
        _reported.add(text)
        (log.warning if not groups.capped else log.info)("%s", text)
    return groups
