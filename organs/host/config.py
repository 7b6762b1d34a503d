"""OrganHostConfig: which organs the host serves, its slots and their policy, gates, costs and timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field

from nervous.bus import BusConfig
from nervous.lifeforce import LifeforceConfig

#: What a request does when every slot is taken (see ``organs.host``).
WHEN_FULL = ("evict", "wait")
#: Whose requests are served: everyone's, or only NPCs whose organ gate was opened (``OrganGate``).
GATES = ("open", "governed")
#: How an organ is loaded: a worker process per loaded organ, or into the host's own process.
LOADERS = ("process", "inproc")


@dataclass
class OrganHostConfig:
    """The organ host: its organs, slots, gates and timeouts."""

    organs: list[str] = field(default_factory=lambda: ["vision"])
    """Organs served, as ``name`` (a kind of ``organs.host.registry.KINDS``) or ``name:kind``."""
    weights: dict[str, str] = field(default_factory=dict)
    """Weight file per organ name (default: the one its kind ships)."""
    slots: int = 1
    """Organs loaded at once (one model per device slot)."""
    when_full: str = "evict"
    """All slots taken: ``evict`` the least recently used idle organ (else wait for one), or ``wait``
    until one unloads after its idle time; either way bounded by the request's deadline."""
    unload_after_s: float = 30.0
    """An organ idle (no request) this long is unloaded."""
    load_timeout_s: float = 60.0
    """A load that takes longer fails (its worker is killed)."""
    gate: str = "open"
    """``open``: every NPC is served; ``governed``: only NPCs whose organ gate is open."""
    loader: str = "process"
    """``process``: each loaded organ lives in its own worker process, so unloading returns all of its
    memory; ``inproc``: organs load into the host's process (the in-process runtime, tests)."""
    threads: int = 1
    """Torch CPU threads of each loaded organ."""
    heartbeat_s: float = 1.0
    """Seconds between heartbeats."""
    reap_s: float = 0.1
    """Seconds between two checks for idle organs."""
    drain_s: float = 5.0
    """On SIGTERM: seconds requests in flight may take to finish before organs are unloaded."""
    max_request_bytes: int = 1 << 20
    """Largest request payload accepted; larger ones get an error reply."""
    lifeforce: LifeforceConfig = field(default_factory=LifeforceConfig)
    """``per_organ_call`` is charged to the asking NPC for each served call."""
    bus: BusConfig = field(default_factory=lambda: BusConfig(name="organ-host"))
    """Where the bus is."""

    def __post_init__(self) -> None:
        if isinstance(self.lifeforce, dict):
            self.lifeforce = LifeforceConfig(**self.lifeforce)
        if isinstance(self.bus, dict):
            self.bus = BusConfig(**self.bus)
        if not self.organs:
            raise ValueError("organs.organs=[]: name at least one organ to serve")
        if not isinstance(self.slots, int) or isinstance(self.slots, bool) or self.slots < 1:
            raise ValueError(f"organs.slots={self.slots!r}: must be an integer >= 1")
        if self.when_full not in WHEN_FULL:
            raise ValueError(f"organs.when_full={self.when_full!r}: must be one of {', '.join(WHEN_FULL)}")
        if self.gate not in GATES:
            raise ValueError(f"organs.gate={self.gate!r}: must be one of {', '.join(GATES)}")
        if self.loader not in LOADERS:
            raise ValueError(f"organs.loader={self.loader!r}: must be one of {', '.join(LOADERS)}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"organs.threads={self.threads!r}: must be an integer >= 1")
        for name in ("unload_after_s", "load_timeout_s", "heartbeat_s", "reap_s", "drain_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"organs.{name}={value!r}: must be > 0")
