"""The live organism (``runtime=processes``): world server, supervisor and one OS process per NPC.

``run(OrganismConfig(...)) -> summary`` (``python -m agents.organism --npcs 16 --duration 60``):

1. starts one embedded nats-server (fixed port, so a restarted broker keeps its address) unless a
   bus url is given, and passes its url to every process; with ``bus_auth=roles`` (the default) the
   server knows one user per identity (``nervous.auth``), and each process gets its own login in
   its environment; with ``user`` the NPCs run as that Unix user (``agents.identity``);
2. detects the cgroup backend (reported once) and sweeps stale groups of dead runs;
3. starts the supervisor; its first child is the fork server (torch and the project preloaded), and
   once that is ready it forks N NPC processes, each in its own cgroup with its CPU quota and memory
   max, the cell services asked for (``cell_services``), when ``governor`` names one, the governor
   process (``python -m governor``, ``governor.service``) and, with ``trails``, the decision-trail
   writer (``python -m organs.trails serve``, its store ``trails.sqlite`` in the run folder unless the
   serialised TrailsConfig passed in says otherwise; the governor then publishes its gate decisions
   and the world server its escalations and all outcomes, ``organs.trails.bus_sink``);
4. runs the world server on the real-time 20 Hz clock (or lockstep) in this process: it runs every
   NPC's cells and nerves batched each tick and wakes an NPC process only when its brain is due;
5. after ``duration_s`` (or SIGTERM/SIGINT) stops the world, lets the trail writer drain the trails
   stream (at most 10 s), stops the NPCs (SIGTERM: they checkpoint; SIGKILL
   after the stop timeout), then the fork server, removes every group and returns the per-NPC
   summary (ticks, missed ticks, late actions, CPU seconds, lifeforce, restarts) and the restarts of
   every other part, also written to ``<run_dir>/summary.json``.

The governor (``governor``: a kind name or a ``GovernorConfig``; None, the default, runs none and the
NPCs keep ``tick_rate`` and ``cpu_quota``; its cgroup weighs as much as all the NPCs' together, so a
crowd of busy NPCs cannot starve it) hears the NPCs' states and the world's wave batches and publishes
allocations;
the supervisor applies each valid one (``governor.decisions.check_allocation``: a known NPC, one of
the governor's tick rates) as the NPC's cgroup quota and a command, and counts the refused ones
(``bad_allocations`` in the summary, with those that did not even decode). A governor that dies
leaves the NPCs on their last settings and is restarted like any part. What the supervisor applied
(quota, gates, LLM priority) and the gates that opened in the last second join each frame handed to
``on_frame`` (``cpu_quota``, ``gates``, ``llm_priority``, ``gate_flash``; see ``governed``).

With ``organs`` (e.g. [vision]) a supervised organ host serves them on the bus, its default gate
``organ_gate`` (``governed``: only NPCs whose ``OrganGate`` the governor opened), each served call
charged ``lifeforce.per_organ_call``. An escalator with ``connect_organs`` (the live cortex link,
``organs.link.make_link(live=True)``) is connected to the bus as the ``cortex`` identity before the world
server starts: its looks go to that organ host.

Every long-lived part is supervised with one restart policy (``supervisor``): killing the fork
server takes down the NPCs forked from it, and all come back from their last checkpoints once a new
server is ready (rest_for_one). This process adopts orphans (a child subreaper), so nothing of a
dead server lingers. A second SIGINT stops at once (SIGKILL); no stop waits without a deadline. An
essential part that goes FATAL (the fork server) stops the run with one error line (``failed`` in
the summary, exit status 1 from the command line); an NPC or cell service that goes FATAL is left
out and the run carries on, saying so.

Shards (``shard="k/n"``, ``--shard k/n``; ``agents.shard``): n supervisors, one per host, share one
organism on one bus (``bus_url``: a server, or a cluster's servers comma-separated, ``nervous.cluster``).
Shard k supervises the NPCs i with i mod n == k; shard 0 alone runs the world server (stepping all
``npcs``), the governor, the cell services, the organ host and the trail writer, and its summary has
every NPC's world columns. The other shards run their NPCs only (their summaries: process columns,
``world_ticks`` None). The default ``0/1`` is the whole organism on one host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.cgroups import BACKENDS, DEFAULT_WEIGHT, CgroupConfig, Cgroups, check_quota, detect
from agents.forkserver import ForkServer, SpawnFactory, make_subreaper
from agents.identity import check_can_switch, grant
from agents.npc import NpcConfig
from agents.shard import parse_shard
from agents.supervisor import ChildSpec, State, Supervisor, SupervisorConfig, serve
from agents.world_server import CLOCKS, WorldServer, WorldServerConfig
from governor.baselines import make_governor
from governor.config import GovernorConfig
from governor.decisions import check_allocation
from governor.runtime import Escalator
from governor.service import assign, governor_config
from nervous import subjects
from nervous.auth import CREDENTIALS_VAR, MODES, Credentials, server_config
from nervous.bus import Bus, BusConfig
from nervous.cells.bank import CELLS
from nervous.lifeforce import LifeforceConfig
from nervous.messages import REGIONS, Allocation, GateEvent
from nervous.server import EmbeddedServer
from nervous.trail_stream import stream_name
from organs.trails.bus_sink import BusTrailSink
from organs.trails.recorder import TrailRecorder

log = logging.getLogger(__name__)

#: Seconds a gate opening stays marked in the frames (``gate_flash``).
GATE_FLASH_S = 1.0


@dataclass
class OrganismConfig:
    """The process runtime: how many NPC processes, for how long, with which limits."""

    npcs: int = 16
    """NPC processes (and world slots)."""
    duration_s: float = 60.0
    """Seconds to live; 0 runs until SIGTERM/SIGINT."""
    stage: int = 3
    """Curriculum stage preset of the world."""
    tick_rate: int = 20
    """Initial NPC tick rate in Hz (1-20); the governor changes it through commands."""
    hz: float = 20.0
    """World ticks per second."""
    clock: str = "realtime"
    """realtime (20 Hz wall clock) or lockstep (each tick waits for the due NPCs)."""
    obs_spread: float = 0.5
    """Realtime clock: share of a tick over which observations go out NPC after NPC (0: all at once)."""
    cpu_quota: float = 100.0
    """Initial CPU quota per NPC in percent of one core (5-100); changed live by allocations."""
    memory_max_mib: int = 512
    """Memory max per NPC group in MiB (0: unlimited)."""
    learn: bool = False
    """NPCs learn online with their own PPO learners."""
    hidden: int = 64
    """NPC brain hidden width."""
    view_size: int = 7
    """NPC brain view grid side (a trainer checkpoint's brains need its own: 9 by default)."""
    brain_memory: str = "none"
    """NPC brain memory (``agents.brain.BrainConfig.memory``: none or gru; a checkpoint's brains need
    theirs)."""
    checkpoint_dir: str = ""
    """Folder of per-NPC weights (npc-<id>.pt) to start from and to write ('' : run_dir/npcs)."""
    run: str = "organism"
    """Run name (cgroup parent, frames subject)."""
    run_dir: str = "runs/organism"
    """Folder for checkpoints, logs, the broker's store and summary.json."""
    bus_url: str | None = None
    """nats://host:port of an existing bus; None starts one embedded nats-server for all processes."""
    shard: str = "0/1"
    """k/n: supervise the NPCs i with i mod n == k (agents.shard); only shard 0 runs the world server,
    governor and services; n > 1 needs bus_url, the bus all shards share."""
    cgroups: str = "auto"
    """Cgroup backend: auto, v2, v1, systemd or none."""
    fork: bool = True
    """Fork NPCs from the preloaded fork server (False: spawn python -m agents.npc each)."""
    fork_standby: bool = True
    """Keep a preloaded spare fork server, so the NPCs of a dead one are back in well under 2 s."""
    seed: int = 0
    """Seed of the world and of fresh brains."""
    cell_services: list[str] = field(default_factory=list)
    """Cells to run as supervised standalone services on the bus (e.g. [math]); the world server keeps
    running the NPCs' own bank."""
    organs: list[str] = field(default_factory=list)
    """Organs for a supervised organ host to serve on the bus (e.g. [vision]); [] runs no organ host."""
    organ_gate: str = "open"
    """The organ host's default gate: open (every NPC served) or governed (only NPCs whose OrganGate the
    governor opened); python -m train sets it from cortex.vision_gate."""
    trails: bool = False
    """Run the decision-trail writer (organs.trails) as a supervised service; its store and batching
    come from the top-level trails config (default: trails.sqlite in run_dir)."""
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    """Restart policy and timeouts."""
    governor: GovernorConfig | None = None
    """The governor process: a GovernorConfig (or a kind name); None runs none (NPCs keep their start
    tick rate and quota)."""
    bus_auth: str = "roles"
    """roles: every process connects with its own identity and permissions (nervous.auth; an external
    bus with the passwords in the file NIMMERVERSE_BUS_CREDENTIALS names); none: a bare bus. Set by
    python -m train from bus.auth."""
    user: str = ""
    """Unix user the NPC processes run as (dropped to after fork, before the brain loads; needs root);
    '': the supervisor's own."""

    def __post_init__(self) -> None:
        if isinstance(self.supervisor, dict):
            self.supervisor = SupervisorConfig(**self.supervisor)
        if isinstance(self.governor, str):
            self.governor = GovernorConfig(kind=self.governor)
        elif isinstance(self.governor, dict):
            self.governor = GovernorConfig(**self.governor)
        if not isinstance(self.npcs, int) or self.npcs < 1:
            raise ValueError(f"runtime.organism.npcs={self.npcs!r}: must be an integer >= 1")
        shard = parse_shard(self.shard, self.bus_url)
        if not shard.npcs(self.npcs):
            raise ValueError(f"runtime.organism.shard={self.shard!r}: no NPC of {self.npcs} falls to it "
                             f"(needs npcs > {shard.index})")
        if self.duration_s < 0:
            raise ValueError(f"runtime.organism.duration_s={self.duration_s!r}: must be >= 0")
        if not isinstance(self.tick_rate, int) or not 1 <= self.tick_rate <= 20:
            raise ValueError(f"runtime.organism.tick_rate={self.tick_rate!r}: must be an integer in 1..20")
        if self.clock not in CLOCKS:
            raise ValueError(f"runtime.organism.clock={self.clock!r}: must be one of {', '.join(CLOCKS)}")
        if self.cgroups not in BACKENDS:
            raise ValueError(f"runtime.organism.cgroups={self.cgroups!r}: must be one of "
                             f"{', '.join(BACKENDS)}")
        if self.memory_max_mib < 0:
            raise ValueError(f"runtime.organism.memory_max_mib={self.memory_max_mib!r}: must be >= 0")
        if not 0.0 <= self.obs_spread <= 0.9:
            raise ValueError(f"runtime.organism.obs_spread={self.obs_spread!r}: must be in 0..0.9 of a tick")
        if not isinstance(self.view_size, int) or self.view_size < 1 or self.view_size % 2 == 0:
            raise ValueError(f"runtime.organism.view_size={self.view_size!r}: must be an odd integer >= 1")
        for organ in self.organs:
            try:
                subjects.token(str(organ).partition(":")[0], "organ")
            except ValueError as exc:
                raise ValueError(f"runtime.organism.organs: {exc}") from None
        if self.organ_gate not in ("open", "governed"):  # organs.host.config.GATES
            raise ValueError(f"runtime.organism.organ_gate={self.organ_gate!r}: must be open or governed")
        for cell in self.cell_services:
            if cell not in CELLS:
                raise ValueError(f"runtime.organism.cell_services: {cell!r} is not one of {', '.join(CELLS)}")
        try:
            check_quota(self.cpu_quota)
        except ValueError:
            raise ValueError(f"runtime.organism.cpu_quota={self.cpu_quota!r}: must be in 5..100") from None
        if self.bus_auth not in MODES:
            raise ValueError(f"runtime.organism.bus_auth={self.bus_auth!r}: must be one of "
                             f"{', '.join(MODES)}")
        if self.trails and not (1 <= len(self.run) <= 64 and "\x00" not in self.run):
            raise ValueError(f"runtime.organism.run={self.run!r}: with trails, must be 1-64 characters (the "
                             "run column of every trail event)")
        if self.user:
            check_can_switch(self.user)
        if self.governor is not None:
            self.governor.check_npcs(self.npcs)
            try:
                make_governor(self.governor)  # a governor that cannot be built fails here, not in its process
            except NotImplementedError as exc:
                raise ValueError(str(exc)) from None


class Organism:
    """World server + supervisor + NPC processes on one bus; ``async with``, then ``run()``."""

    def __init__(
        self,
        config: OrganismConfig,
        on_frame: Callable[..., Any] | None = None,
        npc_overrides: dict[int, dict[str, Any]] | None = None,
        lifeforce: LifeforceConfig | None = None,
        trails: dict[str, Any] | None = None,
        escalator: Escalator | None = None,
    ) -> None:
        self.config = config
        self.escalator = escalator
        """The world server's cortex link (``organs.link.CortexLink``), or None: no escalations."""
        self.trails = trails or {}
        """The trail writer's serialised TrailsConfig (with ``config.trails``; empty: its defaults)."""
        self.trail_sink: BusTrailSink | None = None
        """With ``config.trails``: where the world server's trail messages go on the bus."""
        self.trail_stats: dict[str, int] | None = None
        """The world server's trail messages at the end: queued, published, failed, dropped."""
        self.lifeforce = lifeforce or LifeforceConfig()
        self.on_frame = on_frame
        self.npc_overrides = npc_overrides or {}
        self.run_dir = Path(config.run_dir)
        self.shard = parse_shard(config.shard, config.bus_url)
        self.npc_ids = self.shard.npcs(config.npcs)
        """The NPCs this shard supervises (all of them with one shard)."""
        self.config = self._for_shard(config)
        self.server: EmbeddedServer | None = None
        self.credentials: Credentials | None = None
        """Bus passwords of every identity (bus_auth=roles), also in ``<run_dir>/nats/credentials.json``."""
        self.bus: Bus | None = None
        self.cgroups: Cgroups | None = None
        self.factory: ForkServer | SpawnFactory | None = None
        self.supervisor: Supervisor | None = None
        self.world: WorldServer | None = None
        self.stop = asyncio.Event()
        #: Set by a second SIGINT: stop at once.
        self.force = asyncio.Event()
        self.spawn_all_s = float("nan")
        self.started_at = 0.0
        self.supervising = asyncio.Event()
        self.gate_opened_at = np.full(config.npcs, -np.inf)
        """Monotonic time of each NPC's last gate opening heard (GateEvent)."""
        self._stack = contextlib.AsyncExitStack()

    def _for_shard(self, config: OrganismConfig) -> OrganismConfig:
        """This shard's copy of config: the bus url's servers rotated to start on its own node and, on a
        shard other than 0, a run name of its own (its cgroups are not another shard's on the same host)."""
        if self.shard.count == 1:
            return config
        mine = copy.copy(config)
        mine.bus_url = self.shard.bus_url_for(config.bus_url or "")
        if not self.shard.head:
            mine.run = f"{config.run}-shard{self.shard.index}"
        return mine

    @property
    def checkpoint_dir(self) -> Path:
        """Where the NPCs' weights live."""
        return Path(self.config.checkpoint_dir) if self.config.checkpoint_dir else self.run_dir / "npcs"

    def npc_config(self, i: int) -> NpcConfig:
        """The NPC config of slot i."""
        c = self.config
        assert self.bus is not None and self.cgroups is not None
        data: dict[str, Any] = {
            "npc": i,
            "tick_rate": c.tick_rate,
            "bus_url": self.bus.url,
            "run_dir": str(self.checkpoint_dir),
            "learn": c.learn,
            "hidden": c.hidden,
            "view_size": c.view_size,
            "brain_memory": c.brain_memory,
            "seed": c.seed,
            "cpu_usage_file": self.cgroups.cpu_usage_file(f"npc-{i}"),
        }
        data.update(self.npc_overrides.get(i, {}))
        return NpcConfig.from_dict(data)

    async def __aenter__(self) -> Organism:
        c = self.config
        stack = self._stack
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "logs").mkdir(exist_ok=True)
            url = c.bus_url
            self.credentials = self._credentials()
            if url is None:
                accounts = server_config(self.credentials, c.npcs) if self.credentials is not None else ""
                self.server = EmbeddedServer(self.run_dir / "nats", accounts=accounts)
                await asyncio.to_thread(self.server.start)
                stack.callback(self.server.close)
                url = self.server.url
            self.bus = await stack.enter_async_context(Bus(self.bus_config("organism", url)))
            if c.user:  # the NPCs write their checkpoints as that user
                self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
                grant(self.checkpoint_dir, c.user)
            self.cgroups = detect(c.run, CgroupConfig(backend=c.cgroups))
            make_subreaper()  # the NPCs of a dead fork server are reaped here
            logs = self.run_dir / "logs"
            wrap = self.cgroups.wrap_command if self.cgroups.name == "systemd" else None
            spawn = SpawnFactory(log_dir=logs, wrap=wrap)
            fork: ForkServer | None = None
            if c.fork and self.cgroups.name != "systemd":
                fork = ForkServer(log_dir=logs, on_alive=lambda: self._heard("forkserver"),
                                  standby=c.fork_standby)
                stack.callback(fork.close)
                self.factory = fork
            else:
                self.factory = spawn
            self.supervisor = Supervisor(c.supervisor, self.factory, self.cgroups)
            stack.callback(self.supervisor.close)  # runs before the fork server closes
            if fork is not None:
                # launched from this thread: the server dies with the thread that started it
                self.supervisor.add(ChildSpec(name="forkserver", factory=fork.launch, essential=True))
            memory = c.memory_max_mib << 20 if c.memory_max_mib else None
            head = self.shard.head  # the world server and the shared services run on shard 0 only
            for i in self.npc_ids:
                self.supervisor.add(
                    ChildSpec(
                        name=f"npc-{i}",
                        npc=i,
                        config=dataclasses.asdict(self.npc_config(i)),
                        cpu_quota=c.cpu_quota,
                        memory_max=memory,
                        depends_on="forkserver" if fork is not None else "",
                        env=self.child_env(f"npc-{i}"),
                        user=c.user,
                    )
                )
            for cell in c.cell_services if head else []:  # forked like NPCs (with a fork server): in ms
                argv = [sys.executable, "-m", "nervous.cells", cell, "--url", self.bus.url]
                self.supervisor.add(ChildSpec(
                    name=f"cell-{cell}", argv=argv, target="nervous.cells.service:child_main",
                    config={"cell": cell, "url": self.bus.url}, factory=None if fork else spawn,
                    depends_on="forkserver" if fork is not None else "", env=self.child_env("cell"),
                    heartbeat_subject=subjects.cell_heartbeat(cell)))
            if c.governor is not None and head:  # forked like a cell service: it needs only the bus
                config = {"url": self.bus.url, "npcs": c.npcs, "governor": dataclasses.asdict(c.governor),
                          "trails": c.trails, "run": c.run, "stage": c.stage}
                argv = [sys.executable, "-m", "governor", "--url", self.bus.url, "--npcs", str(c.npcs),
                        "--config-json", json.dumps(config["governor"]), "--run", c.run,
                        "--stage", str(c.stage), *(["--trails"] if c.trails else [])]
                # under contention the governor is owed as much CPU as all its NPCs together (a share,
                # not a reservation): at the default weight 64 busy NPCs starve it to silence
                self.supervisor.add(ChildSpec(
                    name="governor", argv=argv, target="governor.service:child_main", config=config,
                    factory=None if fork else spawn, depends_on="forkserver" if fork is not None else "",
                    heartbeat_subject=subjects.heartbeat("thalamus", "governor"),
                    env=self.child_env("governor"),
                    cpu_weight=min(10_000, DEFAULT_WEIGHT * max(1, c.npcs))))
            if c.organs and head:  # the organ host: its loaded organs are worker processes of its own
                argv = [sys.executable, "-m", "organs.host", "--url", self.bus.url, "--organs", *c.organs,
                        "--gate", c.organ_gate, "--per-organ-call", str(self.lifeforce.per_organ_call)]
                organ_config = {"organs": list(c.organs), "url": self.bus.url, "gate": c.organ_gate,
                                "lifeforce": dataclasses.asdict(self.lifeforce)}
                self.supervisor.add(ChildSpec(
                    name="organ-host", argv=argv, target="organs.host.service:child_main",
                    config=organ_config, factory=None if fork else spawn,
                    depends_on="forkserver" if fork is not None else "", env=self.child_env("organ"),
                    heartbeat_subject=subjects.organ_host_heartbeat()))
            await self.bus.subscribe(subjects.gate_open(), GateEvent, self._on_gate_open)
            if c.trails and head:
                self.supervisor.add(self._trail_writer_spec(spawn, fork))
            if fork is not None:
                await self._start_fork_server()
            if not head:
                return self
            connect = getattr(self.escalator, "connect_organs", None)  # organs.link.CortexLink, live
            if connect is not None:  # its looks go to the organ host on this bus, as the cortex identity
                stack.callback(await asyncio.to_thread(connect, self.bus_config("cortex")))
            wcfg = WorldServerConfig(
                stage=c.stage, n_npcs=c.npcs, seed=c.seed, hz=c.hz, clock=c.clock, run=c.run,
                obs_spread=c.obs_spread, lifeforce=self.lifeforce, tick_rate=c.tick_rate,
            )
            recorder = None
            if c.trails:  # escalations and outcomes from the world server; gate decisions: the governor
                self.trail_sink = BusTrailSink(self.bus)
                self.trail_sink.start()
                recorder = TrailRecorder(self.trail_sink, run=c.run,
                                         outcome_ticks=int(self.trails.get("outcome_ticks", 40)))
            self.world = WorldServer(wcfg, self.bus, self._on_frame if self.on_frame is not None else None,
                                     escalator=self.escalator, trails=recorder)
            await self.world.start()
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def _credentials(self) -> Credentials | None:
        """Fresh passwords for an embedded bus (saved, mode 0600), an external one's from its file, or
        None (bus_auth=none, or an external bus given no credentials file: a bare bus)."""
        if self.config.bus_auth == "none":
            return None
        if self.config.bus_url is not None:
            path = os.environ.get(CREDENTIALS_VAR, "")
            return Credentials.load(path) if path else None
        credentials = Credentials.generate(self.config.npcs)
        (self.run_dir / "nats").mkdir(parents=True, exist_ok=True)
        credentials.save(self.run_dir / "nats" / "credentials.json")
        return credentials

    def bus_config(self, identity: str, url: str | None = None) -> BusConfig:
        """How to connect to this organism's bus as one identity (``nervous.auth``: npc-3, governor, ...)."""
        user, password = self.credentials.login(identity) if self.credentials is not None else ("", "")
        return BusConfig(url=url or (self.bus.url if self.bus is not None else None), name=identity,
                         user=user, password=password)

    async def connect_as(self, identity: str) -> Bus:
        """A connection to this organism's bus as one identity (a test or tool speaking for a part)."""
        return await self._stack.enter_async_context(Bus(self.bus_config(identity)))

    def child_env(self, identity: str) -> dict[str, str]:
        """The environment that gives a child its own bus login (empty on a bare bus)."""
        return self.credentials.child_env(identity) if self.credentials is not None else {}

    def _on_gate_open(self, msg: GateEvent, raw: Any) -> None:
        if msg.npc < self.config.npcs:
            self.gate_opened_at[msg.npc] = time.monotonic()

    def governed(self) -> dict[str, np.ndarray]:
        """Per NPC what the supervisor applied: ``cpu_quota`` (% of a core), ``llm_priority`` (-1: no
        allocation yet), ``gates`` (bit k set: ``REGIONS[k]`` open) and ``gate_flash`` (a gate opened in
        the last ``GATE_FLASH_S`` seconds)."""
        assert self.supervisor is not None
        n = self.config.npcs
        quota = np.zeros(n, dtype=np.float32)
        priority = np.full(n, -1, dtype=np.int8)
        gates = np.zeros(n, dtype=np.uint8)
        allocations: dict[int, Allocation] = self.supervisor.allocations
        children = self.supervisor.children
        for i in range(n):
            child = children.get(f"npc-{i}")  # None: another shard's NPC
            quota[i] = child.spec.cpu_quota if child is not None else np.nan
            a = allocations.get(i)
            if a is not None:
                priority[i] = a.llm_priority
                gates[i] = sum(1 << k for k, region in enumerate(REGIONS) if a.gates.get(region, False))
        flash = time.monotonic() - self.gate_opened_at < GATE_FLASH_S
        return {"cpu_quota": quota, "llm_priority": priority, "gates": gates, "gate_flash": flash}

    def _on_frame(self, world: Any, **extras: Any) -> Any:
        """The world server's frame hook: hands on the frame with what the supervisor applied."""
        assert self.on_frame is not None
        return self.on_frame(world, **extras, **self.governed())
    def _trail_writer_spec(self, spawn: SpawnFactory, fork: ForkServer | None) -> ChildSpec:
        """The trail writer as a child: forked like the cell services, or spawned as its command."""
        assert self.bus is not None
        location = self.trails.get("dsn") or self.trails.get("store") or str(self.run_dir / "trails.sqlite")
        where = ["--dsn" if location.startswith(("postgresql://", "postgres://")) else "--store", location]
        argv = [sys.executable, "-m", "organs.trails", "serve", "--url", self.bus.url, *where]
        return ChildSpec(
            name="trails", argv=argv, target="organs.trails.service:child_main",
            config={"url": self.bus.url, "location": location, "trails": self.trails},
            factory=None if fork else spawn, depends_on="forkserver" if fork is not None else "",
            heartbeat_subject=subjects.trails_heartbeat(), env=self.child_env("trails"))

    def _heard(self, name: str) -> None:
        if self.supervisor is not None:
            self.supervisor.heartbeat(name)

    async def _start_fork_server(self) -> None:
        """Start the fork server under supervision and wait until it is ready, FATAL or stopped."""
        sup = self.supervisor
        assert sup is not None
        sup.start("forkserver")
        while not (sup.up("forkserver") or sup.failed or self.stop.is_set()):
            sup.poll()
            await asyncio.sleep(sup.config.poll_s)

    def parts(self) -> dict[str, dict[str, Any]]:
        """Supervised parts other than NPCs: state, restarts and exits by reason."""
        assert self.supervisor is not None
        return {name: {"state": s["state"], "restarts": s["restarts"], "exits": s["exits"]}
                for name, s in self.supervisor.summary().items() if s["npc"] < 0}

    async def run(self, duration_s: float | None = None) -> dict[str, Any]:
        """Live for duration_s (config's when None; 0: until stop is set); the summary."""
        assert self.supervisor is not None and self.bus is not None
        duration = self.config.duration_s if duration_s is None else duration_s
        sup_stop = asyncio.Event()
        self.started_at = time.monotonic()
        governor = self.config.governor or GovernorConfig()  # its tick rates, even when none runs
        npc_ids = range(self.config.npcs)
        elsewhere = set(npc_ids) - set(self.npc_ids)

        def check(allocation: Allocation) -> None:
            check_allocation(allocation, npc_ids, governor.tick_rates)

        supervising = asyncio.create_task(
            serve(self.supervisor, self.bus, sup_stop, self.supervising, force=self.force, check=check,
                  elsewhere=elsewhere))
        ticking = asyncio.create_task(self.world.run(self.stop) if self.world is not None
                                      else self.stop.wait())  # a shard without the world waits
        watch = asyncio.create_task(self._watch_spawn())
        failing = asyncio.create_task(self._watch_failed())
        try:
            if duration > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), duration)
            else:
                await self.stop.wait()
        finally:
            self.stop.set()
            watch.cancel()
            failing.cancel()
            await asyncio.gather(ticking, return_exceptions=True)
            if self.world is not None and self.world.trails is not None:
                self.world.trails.finish()  # the last K ticks' events get their outcomes, cut short
            await self._drain_trails()  # before the writer is stopped: the last ticks' events stored
            sup_stop.set()
            await asyncio.gather(supervising, return_exceptions=True)
            if self.world is not None:
                await self.world.stop()
        return self.summary()

    async def _drain_trails(self, timeout_s: float = 10.0) -> None:
        """Publish the world server's queued trail messages, then wait (at most timeout_s) until the
        trail writer has taken the stream empty; what is left stays in the stream for its next start."""
        sink, self.trail_sink = self.trail_sink, None
        if sink is None or self.bus is None:
            return
        self.trail_stats = sink.stats()
        await sink.close(timeout_s)
        self.trail_stats = sink.stats()
        deadline = time.monotonic() + timeout_s
        left = -1
        while time.monotonic() < deadline:
            try:
                left = (await self.bus.js.stream_info(stream_name())).state.messages
            except Exception as exc:  # the broker away: nothing to wait for here
                log.warning("trails: cannot read the trails stream at the end: %s", exc)
                return
            if left == 0:
                return
            await asyncio.sleep(0.05)
        log.warning("trails: %d messages still in the stream after %g s; the writer takes them at its next "
                    "start", left, timeout_s)

    async def _watch_failed(self) -> None:
        """Stop the run when an essential part went FATAL (the supervisor logged why)."""
        assert self.supervisor is not None
        while not self.supervisor.failed:
            await asyncio.sleep(0.05)
        log.error("stopping the run: %s is FATAL", ", ".join(self.supervisor.failed))
        self.stop.set()

    async def _watch_spawn(self) -> None:
        assert self.supervisor is not None
        await self.supervising.wait()
        npcs = [c for c in self.supervisor.children.values() if c.spec.npc >= 0]
        while not all(c.heartbeats > 0 or c.state == State.FATAL for c in npcs):
            await asyncio.sleep(0.01)
        self.spawn_all_s = time.monotonic() - self.started_at

    def summary(self) -> dict[str, Any]:
        """Per NPC: brain calls (ticks), reflexes, missed ticks, late actions, CPU seconds, lifeforce,
        restarts; and totals. With shards: the world columns where the world server runs (shard 0, for
        every NPC), the process columns for this shard's NPCs (another shard's: ``state`` REMOTE)."""
        assert self.supervisor is not None and self.cgroups is not None
        world, sup = self.world.summary() if self.world is not None else None, self.supervisor.summary()
        parts, sup_failed = self.parts(), self.supervisor.failed
        npcs = {}
        for i in range(self.config.npcs) if world is not None else self.npc_ids:
            s = sup.get(f"npc-{i}")
            process = {"shard": i % self.shard.count, "state": "REMOTE"} if s is None else {
                "cpu_s": round(s["cpu_s"], 3),
                "restarts": s["restarts"],
                "exits": s["exits"],
                "state": s["state"],
                "oom_kills": s["oom_kills"],
            }
            npcs[i] = {**(world[i] if world is not None else {}), **process}
        restarts = (sum(n.get("restarts", 0) for n in npcs.values())
                    + sum(p["restarts"] for p in parts.values()))
        if self.world is None:
            out = {"cgroups": self.cgroups.describe(), "shard": str(self.shard), "world_ticks": None,
                   "spawn_all_s": self.spawn_all_s, "missed_tick_fraction": None, "brain_calls": None,
                   "reflexes": None, "action_latency_p50_ms": None, "action_latency_p99_ms": None,
                   "overruns": None, "restarts": restarts, "bad_allocations": self.bad_allocations(),
                   "failed": list(sup_failed), "parts": parts, "npcs": npcs}
            with contextlib.suppress(OSError):
                (self.run_dir / "summary.json").write_text(json.dumps(out, indent=1, default=str))
            return out
        lat = self.world.latencies_ms()
        ticks = sum(n["ticks"] for n in npcs.values())
        missed = sum(n["missed"] for n in npcs.values())
        out = {
            "cgroups": self.cgroups.describe(),
            "shard": str(self.shard),
            "world_ticks": self.world.tick,
            "spawn_all_s": self.spawn_all_s,
            "missed_tick_fraction": missed / max(1, ticks + missed),
            "brain_calls": ticks,
            "reflexes": sum(n["reflexes"] for n in npcs.values()),
            "escalations": sum(n["escalations"] for n in npcs.values()),
            "action_latency_p50_ms": float(_percentile(lat, 50)),
            "action_latency_p99_ms": float(_percentile(lat, 99)),
            "overruns": self.world.overruns,
            "restarts": restarts,
            "bad_allocations": self.bad_allocations(),
            "failed": list(sup_failed),
            "parts": parts,
            "npcs": npcs,
        }
        lifetime = getattr(self.escalator, "lifetime_metrics", None)  # the cortex link's own counters
        if lifetime is not None:
            out["cortex"] = {k.removeprefix("cortex/"): v for k, v in lifetime().items()}
        if self.trail_stats is not None:
            out["trails"] = self.trail_stats
        with contextlib.suppress(OSError):
            (self.run_dir / "summary.json").write_text(json.dumps(out, indent=1, default=str))
        return out


    def bad_allocations(self) -> int:
        """Allocations refused: those that did not decode and those the supervisor refused."""
        assert self.supervisor is not None and self.bus is not None
        return self.bus.bad_messages.get(subjects.governor_allocate(), 0) + self.supervisor.bad_allocations


def _percentile(values: Any, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


async def _main(config: OrganismConfig, on_frame: Callable[..., Any] | None,
                lifeforce: LifeforceConfig | None, trails: dict[str, Any] | None,
                escalator: Escalator | None = None) -> dict[str, Any]:
    org = Organism(config, on_frame, lifeforce=lifeforce, trails=trails, escalator=escalator)
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        if org.stop.is_set() and sig == signal.SIGINT:
            log.warning("second SIGINT: stopping at once")
            org.force.set()
        org.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):  # before start-up: a signal then stops it too
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with org:
            return await org.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run(config: OrganismConfig, on_frame: Callable[..., Any] | None = None,
        lifeforce: LifeforceConfig | None = None, trails: dict[str, Any] | None = None,
        escalator: Escalator | None = None) -> dict[str, Any]:
    """Run the live organism to its end (lifeforce: what thinking costs; trails: the writer's
    serialised TrailsConfig; escalator: the world server's cortex link); the per-NPC summary."""
    return asyncio.run(_main(config, on_frame, lifeforce, trails, escalator))


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a table: the cgroup backend and the totals once, then one line per NPC ('-': kept by
    another shard)."""
    if summary["world_ticks"] is None:  # a shard without the world: its NPCs' processes only
        return "\n".join([
            summary["cgroups"],
            f"shard {summary['shard']}: the world server runs on shard 0; "
            f"spawn {summary['spawn_all_s']:.2f} s",
            f"{'npc':>4} {'cpu_s':>7} {'restarts':>8} state",
            *(f"{i:>4} {n['cpu_s']:>7.2f} {n['restarts']:>8} {n['state']}"
              for i, n in summary["npcs"].items()),
        ])
    lines = [
        summary["cgroups"],
        f"world ticks {summary['world_ticks']}, spawn {summary['spawn_all_s']:.2f} s, "
        f"action latency p50 {summary['action_latency_p50_ms']:.2f} ms p99 "
        f"{summary['action_latency_p99_ms']:.2f} ms, missed {100 * summary['missed_tick_fraction']:.2f} %"
        + (f", {summary['bad_allocations']} bad allocations" if summary.get("bad_allocations") else ""),
        f"{'npc':>4} {'ticks':>6} {'missed':>6} {'late':>5} {'cpu_s':>7} {'lifeforce':>9} {'deaths':>6} "
        f"{'restarts':>8} state",
    ]
    if summary.get("cortex"):
        lines.insert(2, cortex_line(summary["cortex"]))
    for i, n in summary["npcs"].items():
        alive = npc_alive(n)
        # the process state says how its process ended; a body dead in the world says DEAD (FATAL wins)
        state = "DEAD" if not alive and n["state"] != State.FATAL else n["state"]
        life = f"{n['lifeforce']:>9.3f}" if alive else f"{'dead':>9}"
        cpu = f"{n['cpu_s']:>7.2f}" if "cpu_s" in n else f"{'-':>7}"
        lines.append(
            f"{i:>4} {n['ticks']:>6} {n['missed']:>6} {n['late']:>5} {cpu} "
            f"{life} {n.get('deaths', 0):>6} {n.get('restarts', '-'):>8} {state}"
        )
    return "\n".join(lines)


def cortex_line(cortex: dict[str, float]) -> str:
    """The cortex link's lifetime counters in one line of the summary."""
    line = (f"cortex: {cortex['escalations']:.0f} escalations, {cortex['planned']:.0f} planned, "
            f"{cortex['plans_done']:.0f} plans done, {cortex['plans_invalid']:.0f} invalid "
            f"({cortex['plans_invalid_at_start']:.0f} at start), {cortex['stale_answers']:.0f} stale, "
            f"{cortex['discarded']:.0f} discarded")
    if "latency_p99_ms" in cortex:
        line += f", latency p50 {cortex['latency_p50_ms']:.1f} ms p99 {cortex['latency_p99_ms']:.1f} ms"
    return line


def npc_alive(npc: dict[str, Any]) -> bool:
    """Whether an NPC's body lives in the world at the end (summaries without `alive`: lifeforce > 0)."""
    return bool(npc.get("alive", npc.get("lifeforce", 1.0) > 0.0))


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.organism``: run the live organism standalone and print its summary."""
    p = argparse.ArgumentParser(prog="python -m agents.organism", description=__doc__.splitlines()[0])
    d = OrganismConfig()
    p.add_argument("--npcs", type=int, default=d.npcs, help="NPC processes")
    p.add_argument("--duration", type=float, default=d.duration_s, help="seconds to live (0: until SIGTERM)")
    p.add_argument("--stage", type=int, default=d.stage, help="world stage preset 0-5")
    p.add_argument("--tick-rate", type=int, default=d.tick_rate, help="initial NPC tick rate in Hz")
    p.add_argument("--clock", choices=CLOCKS, default=d.clock, help="world clock")
    p.add_argument(
        "--cpu-quota", type=float, default=d.cpu_quota, help="CPU quota per NPC, percent of a core"
    )
    p.add_argument(
        "--memory-max-mib", type=int, default=d.memory_max_mib, help="memory max per NPC (0: none)"
    )
    p.add_argument("--learn", action="store_true", help="NPCs learn online with PPO")
    p.add_argument("--run-dir", default=d.run_dir, help="folder for checkpoints, logs and summary.json")
    p.add_argument("--checkpoint-dir", default=d.checkpoint_dir, help="per-NPC weights folder")
    p.add_argument("--bus-url", default=None,
                   help="existing nats://host:port, or a cluster's comma-separated (default: embedded)")
    p.add_argument("--shard", default=d.shard, metavar="K/N",
                   help="supervise NPCs i with i mod N == K; shard 0 runs the world (N > 1 needs --bus-url)")
    p.add_argument("--cgroups", choices=BACKENDS, default=d.cgroups, help="cgroup backend")
    p.add_argument("--spawn", action="store_true", help="spawn NPC processes instead of forking")
    p.add_argument("--seed", type=int, default=d.seed, help="world and brain seed")
    p.add_argument("--bus-auth", choices=MODES, default=d.bus_auth,
                   help="roles: each process its own bus identity and permissions; none: a bare bus")
    p.add_argument("--user", default=d.user, help="Unix user the NPC processes run as (needs root)")
    p.add_argument("--governor", default=None, metavar="KIND",
                   help="run the governor process: fixed, heuristic, budget or learned (default: none)")
    p.add_argument("--governor-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="one GovernorConfig field, its value as YAML (repeatable): --governor-set "
                        "checkpoint=governor.pt --governor-set cpu_budget=4")
    a = p.parse_args(argv)
    if a.governor_set and a.governor is None:
        p.error("--governor-set: needs --governor KIND")
    try:
        governor: GovernorConfig | str | None = a.governor
        if a.governor_set:
            data: dict[str, Any] = {"kind": a.governor}
            for assignment in a.governor_set:
                assign(data, assignment)
            governor = governor_config(data)
        config = OrganismConfig(
            npcs=a.npcs,
            duration_s=a.duration,
            stage=a.stage,
            tick_rate=a.tick_rate,
            clock=a.clock,
            cpu_quota=a.cpu_quota,
            memory_max_mib=a.memory_max_mib,
            learn=a.learn,
            run_dir=a.run_dir,
            checkpoint_dir=a.checkpoint_dir,
            bus_url=a.bus_url,
            shard=a.shard,
            cgroups=a.cgroups,
            fork=not a.spawn,
            seed=a.seed,
            governor=governor,
            bus_auth=a.bus_auth,
            user=a.user,
        )
    except ValueError as exc:  # one line naming the field, as python -m train says it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    summary = run(config)
    print(format_summary(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
