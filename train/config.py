"""The run's structured config: one dataclass per part, registered in Hydra's ConfigStore.

Groups (``conf/<group>/*.yaml``): world, brain, ppo, curriculum, nervous, logger, runtime; named overlays in
``conf/experiment/``. With no ``world`` chosen the run follows the progressive curriculum over the
stage presets; choosing one (``world=stage3``, optionally with ``world.<field>=...``) trains on that
stage alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from agents.brain import BrainConfig
from agents.organism import OrganismConfig
from agents.ppo import PPOConfig
from governor.config import GovernorConfig
from nervous.auth import BusSettings
from nervous.config import NervousConfig
from organs.config import CortexConfig
from organs.trails.config import TrailsConfig
from world import CurriculumConfig, WorldConfig, stage_config

MODES = ("train", "eval", "view", "governor")
LOGGER_MODES = ("offline", "online", "disabled")
RUNTIMES = ("inproc", "processes")
VIEWERS = ("none", "live")


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the field."""


@dataclass
class LoggerConfig:
    """Where metrics go: wandb, metrics.jsonl in the run folder, and the progress bar."""

    mode: str = "offline"
    """wandb mode: offline (run files in the run folder), online, or disabled."""
    project: str = "nimmerverse"
    """wandb project."""
    entity: str | None = None
    """wandb entity (team or user); None: the default one."""
    progress: bool = True
    """Show a progress bar with SPS, stage and success."""
    log_every: int = 1
    """Updates between metric rows."""


@dataclass
class RuntimeConfig:
    """How NPC brains run: ``inproc`` batched in this process, ``processes`` one OS process per NPC."""

    name: str = "inproc"
    """Runtime: inproc (training, sweeps) or processes (the live organism, agents/organism.py)."""
    torch_threads: int = 2
    """torch intra-op threads of this process."""
    organism: OrganismConfig = field(default_factory=OrganismConfig)
    """The live organism (runtime=processes): NPC processes, cgroup limits, clock, supervisor."""


@dataclass
class ViewConfig:
    """The viewer (mode=view); the same options as `python -m train.view`."""

    replay: str | None = None
    """Replay file to play (written by mode=eval record=true)."""
    live: bool = False
    """Watch a live run's frames on the bus instead of a replay."""
    bus_url: str | None = None
    """nats://host:port of the live run's bus (None: the url a local run left for viewers)."""
    run: str | None = None
    """The live run's name (None: the newest local run)."""
    env: str | None = None
    """dev, staging or prod (None: NIMMERVERSE_ENV)."""
    screenshot: str | None = None
    """Write the last drawn frame to this PNG."""
    record: str | None = None
    """Record the frames shown to this GIF."""
    frames: int | None = None
    """Exit after this many frames (headless use)."""
    speed: float = 10.0
    """Replay frames per second."""
    wait: float = 5.0
    """Live: seconds to wait for the first frame before saying there is none."""
    trails: str | None = None
    """Decision-trail store (SQLite file or postgresql:// dsn) for the selected NPC's last escalations
    (None: trails.sqlite beside the replay, when there is one)."""


@dataclass
class CurriculumSettings(CurriculumConfig):
    """The world's curriculum settings plus per-stage thresholds."""

    stage_thresholds: dict[int, float] = field(default_factory=dict)
    """Threshold per stage overriding ``threshold`` (e.g. a stage's heuristic success)."""


@dataclass
class RunConfig:
    """Everything one `python -m train` run needs."""

    world: WorldConfig | None = None
    """A fixed stage to train or evaluate on; None: the progressive curriculum's presets."""
    brain: BrainConfig = field(default_factory=BrainConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    nervous: NervousConfig = field(default_factory=NervousConfig)
    """Cells (wave features in the observation), nerves (reflexes) and lifeforce costs."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    governor: GovernorConfig = field(default_factory=GovernorConfig)
    """The thalamus governor: fixed, heuristic, budget or learned (training, eval and the organism)."""
    cortex: CortexConfig = field(default_factory=CortexConfig)
    """The cortex: backend none (default), engine (in-process planner) or http (the embedded server, or vLLM
    at cortex.base_url); with the governor's gates, escalations in training and mode=eval."""
    bus: BusSettings = field(default_factory=BusSettings)
    """The bus: bus.auth=roles (each process its own identity and permissions, the default) or none."""
    trails: TrailsConfig = field(default_factory=TrailsConfig)
    """Decision trails: the store (trails.sqlite in the run folder, or trails.dsn=postgresql://...) and the
    writer's batching; the live organism runs the writer with runtime.organism.trails=true."""
    mode: str = "train"
    """train, eval, view (the viewer on a replay or a live run), or governor (train the learned governor)."""
    seed: int = 1
    """Seed of torch and of the worlds."""
    total_agent_steps: int = 8_000_000
    """Training budget in agent steps (NPC slots x ticks)."""
    max_wall_s: float | None = None
    """Stop training after this many seconds (None: no limit)."""
    stop_when_passed: bool = False
    """Stop training once the curriculum's last stage is passed."""
    checkpoint_every: int = 20
    """Updates between checkpoints (a crash loses at most this many)."""
    checkpoint: str | None = None
    """Checkpoint file to evaluate (mode=eval), or whose brains the NPCs start from (runtime=processes)."""
    resume: str | None = None
    """Run folder to continue training from (its checkpoints/latest.pt)."""
    episodes: int = 100
    """Episodes to evaluate (mode=eval)."""
    record: bool = False
    """Also save a replay of one evaluated episode (mode=eval)."""
    greedy: bool = False
    """Evaluate with the most likely action instead of sampling."""
    viewer: str = "none"
    """none, or live: publish frames through train.live_feed.FramePublisher while training."""
    view: ViewConfig = field(default_factory=ViewConfig)
    """The viewer's options (mode=view)."""
    duration: float | None = None
    """Seconds the live organism runs (runtime=processes; overrides runtime.organism.duration_s)."""


def register_configs() -> None:
    """Register the schemas: the top-level one and each group's, so YAML is type-checked."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="brain", name="schema", node=BrainConfig)
    cs.store(group="ppo", name="schema", node=PPOConfig)
    cs.store(group="curriculum", name="schema", node=CurriculumSettings)
    cs.store(group="nervous", name="schema", node=NervousConfig)
    cs.store(group="logger", name="schema", node=LoggerConfig)
    cs.store(group="runtime", name="schema", node=RuntimeConfig)
    cs.store(group="cortex", name="schema", node=CortexConfig)
    cs.store(group="governor", name="schema", node=GovernorConfig)
    cs.store(group="trails", name="schema", node=TrailsConfig)


def _choice(value: Any, allowed: tuple[str, ...], field_name: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{field_name}={value!r}: must be one of {', '.join(allowed)}")


def _unknown_key(node: Any, path: str = "") -> str | None:
    """The first key of `node` (or below) that its schema dataclass does not declare, else None."""
    if not isinstance(node, DictConfig):
        return None
    schema = OmegaConf.get_type(node)
    if schema is None or not is_dataclass(schema):  # None, or a plain dict field: nothing declared to check
        return None
    known = {f.name for f in fields(schema)}
    for key, value in node.items_ex(resolve=False):
        if key not in known:
            return f"{path}{key}"
        found = _unknown_key(value, f"{path}{key}.")
        if found is not None:
            return found
    return None


def check_learned_governor(config: GovernorConfig) -> None:
    """Raise ConfigError when a deployed learned governor has no usable checkpoint (loads it once)."""
    from governor.learned import load_network

    if not config.checkpoint:
        raise ConfigError("governor.checkpoint='': the learned governor needs trained weights "
                          "(python -m train +experiment=governor writes <run>/governor.pt)")
    try:
        load_network(config)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Convert a composed config to a validated RunConfig; raise ConfigError naming the bad field."""
    unknown = _unknown_key(cfg)
    if unknown is not None:
        raise ConfigError(f"{unknown}: no such config field")
    try:
        run = OmegaConf.to_object(cfg)
    except ValueError as error:  # the dataclasses' own validation
        raise ConfigError(str(error).splitlines()[0]) from None
    if not isinstance(run, RunConfig):
        raise ConfigError("config: not a RunConfig (compose it with conf/config.yaml)")
    _choice(run.mode, MODES, "mode")
    _choice(run.logger.mode, LOGGER_MODES, "logger.mode")
    _choice(run.runtime.name, RUNTIMES, "runtime.name")
    _choice(run.viewer, VIEWERS, "viewer")
    for name in ("total_agent_steps", "checkpoint_every", "episodes"):
        if getattr(run, name) < 1:
            raise ConfigError(f"{name}={getattr(run, name)!r}: must be >= 1")
    if run.runtime.torch_threads < 1:
        raise ConfigError(f"runtime.torch_threads={run.runtime.torch_threads!r}: must be >= 1")
    if run.logger.log_every < 1:
        raise ConfigError(f"logger.log_every={run.logger.log_every!r}: must be >= 1")
    if run.max_wall_s is not None and run.max_wall_s <= 0:
        raise ConfigError(f"max_wall_s={run.max_wall_s!r}: must be > 0")
    for stage, value in run.curriculum.stage_thresholds.items():
        if not isinstance(stage, int) or not 0 <= stage <= 5:
            raise ConfigError(f"curriculum.stage_thresholds.{stage}: not a stage; stages are 0-5")
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"curriculum.stage_thresholds.{stage}={value!r}: must be in (0, 1]")
    if run.duration is not None and run.duration < 0:
        raise ConfigError(f"duration={run.duration!r}: must be >= 0 seconds (0: until SIGTERM)")
    if run.mode == "view" and not (run.view.replay or run.view.live):
        raise ConfigError("view: mode=view needs view.replay=<file> or view.live=true")
    if run.governor.kind == "learned" and run.mode != "governor":
        check_learned_governor(run.governor)
    if run.runtime.name == "processes":  # the organism's NPCs (fixed there starts no governor process)
        npcs = run.runtime.organism.npcs if run.governor.kind != "fixed" else 0
    else:  # every stage's NPCs
        worlds = [run.world] if run.world is not None else [stage_config(s) for s in run.curriculum.stages]
        npcs = max(w.n_npcs for w in worlds)
    try:  # must fit the governor's CPU budget at their minimum quotas
        run.governor.check_npcs(npcs)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if run.mode == "eval" and not run.checkpoint:
        raise ConfigError("checkpoint: mode=eval needs checkpoint=<path to a .pt file>")
    return run
