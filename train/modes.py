"""What `python -m train` does in each mode: train (fresh or resumed), eval, view, and the live organism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from agents.brain import Brain
from agents.npc import brain_slot, write_weights
from agents.organism import OrganismConfig
from agents.shard import parse_shard
from governor.config import GovernorConfig
from governor.runtime import GovernedReflex
from organs.config import CortexConfig
from organs.link import make_link
from organs.trails.recorder import TrailRecorder
from organs.trails.store import TrailRecord, open_store
from organs.trails.store import shown as shown_store
from organs.trails.table import format_per_npc, record_row
from organs.trails.writer import TrailWriter
from train.checkpoint import (
    LATEST,
    CheckpointError,
    load_checkpoint,
    restore,
    save_checkpoint,
    saved_run_config,
)
from train.config import ConfigError, RunConfig
from train.evaluate import evaluate_brain, format_table, record_episode
from train.loop import Trainer
from train.nervous_link import Reflexes, WaveSenses, build_nervous, close_nervous
from train.next_steps import after_eval, after_organism, after_training, results_dir, stage_name
from train.tracking import Tracker
from world import GridWorld, stage_config
from world.replay import ReplayError
from world.rollout import POLICIES
from world.rollout import evaluate as evaluate_policy

#: Top-level fields (and groups, as prefixes) a resumed run may change; the rest come from the checkpoint.
RESUMABLE = ("total_agent_steps", "max_wall_s", "stop_when_passed", "checkpoint_every", "logger", "runtime",
             "viewer", "resume")


class LiveFeed:
    """The trainer's frame publisher: env 0's frames, with the NPCs' waves and nerve overrides."""

    def __init__(self, publisher: Any, senses: WaveSenses | None,
                 reflex: Reflexes | GovernedReflex | None) -> None:
        self.publisher, self.senses, self.reflex = publisher, senses, reflex

    def maybe_publish(self, world: GridWorld) -> Any:
        """Hand the frame to the publisher (which drops it unless one is due)."""
        bank = self.senses.bank if self.senses is not None else None
        waves = bank.last.confidence if bank is not None and bank.last is not None else None
        overrides = self.reflex.last_overridden if self.reflex is not None else None
        governed = self.reflex.governed() if isinstance(self.reflex, GovernedReflex) else {}
        organ_states = getattr(getattr(self.reflex, "escalator", None), "organ_states", None)
        organs = organ_states() if organ_states is not None else None  # the cortex link's vision organ
        return self.publisher.maybe_publish(world, waves=waves, overrides=overrides, organs=organs,
                                            **governed)

    def close(self) -> None:
        """Stop the publisher."""
        self.publisher.close()


def make_publisher(run: RunConfig, name: str, senses: WaveSenses | None = None,
                   reflex: Reflexes | GovernedReflex | None = None, trails: str | None = None
                   ) -> LiveFeed | None:
    """The live frame feed (``train.live_feed.FramePublisher``) when viewer=live, else None (trails: the
    run's trail store, for the viewer's escalation list)."""
    if run.viewer != "live":
        return None
    from train.live_feed import FramePublisher

    regions = list(senses.bank.regions) if senses is not None else None
    cells = list(senses.bank.names) if senses is not None else None
    feed = LiveFeed(FramePublisher(run=name, regions=regions, cells=cells), senses, reflex)
    open_viewer(name, trails)
    return feed


def open_viewer(run: str, trails: str | None = None) -> subprocess.Popen | None:
    """Open the live viewer on this run (listing escalations from the trail store trails, when given)
    beside it when there is a display; else say how to watch."""
    command = [sys.executable, "-m", "train.view", "--live", "--run", run, "--wait", "30"]
    command += ["--trails", trails] if trails else []
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print(f"viewer=live: no display here; watch with: {' '.join(command[1:])}", file=sys.stderr)
        return None
    return subprocess.Popen(command, start_new_session=True)


def view_mode(run: RunConfig) -> int:
    """Open the viewer on a replay or a live run (`python -m train.view` with Hydra options)."""
    from train.view import view

    v = run.view
    return view(replay=v.replay, live=v.live, bus_url=v.bus_url, run=v.run, env=v.env,
                screenshot=v.screenshot, record=v.record, frames=v.frames, speed=v.speed, wait=v.wait,
                trails=v.trails)


def seed_npc_brains(organism: OrganismConfig, checkpoint: str) -> OrganismConfig:
    """Give each NPC without weights of its own brain i mod n of a training checkpoint; the config to run."""
    state = load_checkpoint(checkpoint)
    meta = state["brain_meta"]
    folder = Path(organism.checkpoint_dir or Path(organism.run_dir) / "npcs")
    groups = 1 if meta["shared"] else meta["n_brains"]
    seeded = 0
    for i in range(organism.npcs):
        path = folder / f"npc-{i}.pt"
        if not path.exists():
            write_weights(path, i, brain_slot(state["brain"], i % groups), meta["hidden"], meta["view_size"],
                          memory=meta.get("memory", "none"))
            seeded += 1
    print(f"checkpoint {checkpoint}: {seeded} of {organism.npcs} NPCs start from its {groups} brain(s)")
    return replace(organism, hidden=meta["hidden"], view_size=meta["view_size"],
                   brain_memory=meta.get("memory", "none"))


def live_governor(run: RunConfig) -> GovernorConfig | None:
    """The governor runtime=processes runs as its own process: run.governor, or None for ``fixed``.

    ``fixed`` (the default) is today's organism without a governor process: every NPC at
    ``runtime.organism.tick_rate`` and ``cpu_quota``, as the fixed governor decides, but without fitting
    the quotas into ``governor.cpu_budget`` (which on the default 2 cores refuses more than 40 NPCs at
    the minimum quota) and without its threshold gates. ``python -m agents.organism --governor fixed``
    runs the fixed governor as a process all the same.
    """
    return run.governor if run.governor.kind != "fixed" else None


def npc_processes(organism: OrganismConfig) -> str:
    """What this host runs, said in the start line: all NPC processes, or a shard's share of them."""
    shard = parse_shard(organism.shard, organism.bus_url)
    if shard.count == 1:
        return f"{organism.npcs} NPC processes"
    head = ", the world server and services" if shard.head else ""
    return f"shard {shard}: {len(shard.npcs(organism.npcs))} of {organism.npcs} NPC processes{head}"


def live_organs(cortex: CortexConfig, organism: OrganismConfig) -> OrganismConfig:
    """The organism with the organ host the cortex link looks through: vision served (its gate governed
    with ``cortex.vision_gate=governed``) when the cortex is on and its vision gate not closed."""
    if cortex.backend == "none" or cortex.vision_gate == "closed":
        return organism
    organs = organism.organs if "vision" in organism.organs else [*organism.organs, "vision"]
    gate = "governed" if cortex.vision_gate == "governed" else "open"
    return replace(organism, organs=organs, organ_gate=gate)


def organism_mode(run: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Run the live organism (runtime=processes) and print its per-NPC summary; the governor process
    is ``live_governor(run)``."""
    from agents.organism import format_summary
    from agents.organism import run as run_organism

    organism = replace(run.runtime.organism, run_dir=str(run_dir / "organism"), seed=run.seed,
                       bus_auth=run.bus.auth,
                       run=run_dir.name.replace(".", "-").replace(" ", "-") or "organism")
    if run.duration is not None:
        organism = replace(organism, duration_s=float(run.duration))
    if run.world is not None:
        organism = replace(organism, stage=run.world.stage)
    try:
        organism = replace(organism, governor=live_governor(run))
    except ValueError as error:  # a governor that cannot govern these NPCs: bad input, not a crash
        raise ConfigError(str(error)) from None
    organism = live_organs(run.cortex, organism)
    if run.checkpoint:
        organism = seed_npc_brains(organism, run.checkpoint)
    learning = " each learning online" if organism.learn else ""
    governed = f", the {organism.governor.kind} governor" if organism.governor is not None else ""
    print(f"live organism: {stage_name(organism.stage)}, {npc_processes(organism)}{learning}{governed}, "
          + (f"{organism.duration_s:g} s" if organism.duration_s else "until Ctrl-C")
          + f"; run folder {run_dir}", flush=True)
    trails = run.trails.location(organism.run_dir) if organism.trails else None
    feed = make_publisher(run, organism.run, trails=trails)
    # the world server passes actions, tick rates and CPU use along with each frame
    on_frame = feed.publisher.maybe_publish if feed is not None else None
    # cortex.backend=engine|http: the world server escalates live and never waits for the answers; it looks
    # through the organ host's service
    escalator = make_link(run.cortex, run.nervous.lifeforce, blocking=False, live=True)
    try:
        summary = run_organism(organism, on_frame=on_frame, lifeforce=run.nervous.lifeforce,
                               trails=asdict(run.trails), escalator=escalator)
    finally:
        if feed is not None:
            feed.close()
        if escalator is not None:
            escalator.close()
    print(format_summary(summary))
    print(after_organism(summary, run_dir, Path(organism.run_dir), organism.stage, run.checkpoint,
                         organism.learn))
    return summary


def _resumed_config(run: RunConfig, saved: RunConfig, overrides: list[str]) -> RunConfig:
    """The checkpoint's config with the resumable fields taken from this invocation."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key.split(".", 1)[0] not in RESUMABLE:
            raise ConfigError(f"{key}: cannot change in a resumed run (it comes from the checkpoint); "
                              f"changeable: {', '.join(RESUMABLE[:-1])}")
    values = {f.name: getattr(saved, f.name) for f in fields(RunConfig)}
    values.update({name: getattr(run, name) for name in RESUMABLE})
    return RunConfig(**values)


def open_trails(run: RunConfig, run_dir: Path, name: str | None = None
                ) -> tuple[TrailRecorder | None, TrailWriter | None]:
    """With trails.record, a recorder of gate decisions and escalations feeding the run's trail store
    (its events under the run name ``name``, default the run folder's name)."""
    if not run.trails.record:
        return None, None
    from organs.trails.store import TrailStoreError

    try:
        writer = TrailWriter(open_store(run.trails.location(run_dir)))
    except TrailStoreError as error:
        raise ConfigError(str(error)) from None
    return TrailRecorder(writer.write_many, name or run_dir.name, outcome_ticks=run.trails.outcome_ticks,
                         batch_size=run.trails.batch_size), writer


def train_mode(run: RunConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train (or continue a run with `resume`) until the budget is spent; return the summary."""
    state = None
    if run.resume:
        resume_dir = Path(run.resume)
        if not resume_dir.is_dir():
            raise ConfigError(f"resume={run.resume}: no such run folder")
        if not (resume_dir / LATEST).is_file():
            raise ConfigError(f"resume={run.resume}: the folder holds no {LATEST}")
        state = load_checkpoint(resume_dir / LATEST)
        run = _resumed_config(run, saved_run_config(state), overrides or [])
        run_dir = resume_dir
    run_dir = Path(run_dir)
    recorder, writer = open_trails(run, run_dir)
    senses, reflex = build_nervous(run.nervous, run.governor, run.cortex, trails=recorder)
    try:
        return _train(run, run_dir, state, senses, reflex, recorder)
    finally:
        close_nervous(reflex)
        if recorder is not None and writer is not None:
            recorder.finish()  # the last K ticks' events get their outcomes, cut short
            writer.close()


def _train(run: RunConfig, run_dir: Path, state: dict[str, Any] | None, senses: WaveSenses | None,
           reflex: Reflexes | GovernedReflex | None, recorder: TrailRecorder | None = None) -> dict[str, Any]:
    trails = run.trails.location(run_dir) if recorder is not None else None
    publisher = make_publisher(run, run_dir.name, senses, reflex, trails=trails)
    trainer = Trainer(run, senses=senses, reflex=reflex, publisher=publisher)
    if state is not None:
        restore(trainer, state)
    wandb_id = (state or {}).get("extra", {}).get("wandb_id")
    tracker = Tracker(run.logger, run_dir, OmegaConf.to_container(OmegaConf.structured(run), resolve=True),
                      total=run.total_agent_steps, initial=trainer.global_step, run_id=wandb_id,
                      name=run_dir.name)
    extra = {"wandb_id": tracker.run_id}
    checkpoint_path = run_dir / LATEST
    if state is not None:
        tracker.message(f"resumed {run_dir} at update {trainer.updates}, stage {trainer.stage}, "
                        f"{trainer.global_step:,} agent steps")
    interrupted = False
    try:
        while not trainer.done_training:
            metrics = trainer.train_step()
            passed = "charts/passed_stage" in metrics
            tracker.log(metrics, trainer.global_step,
                        write=passed or trainer.updates % run.logger.log_every == 0)
            if passed:
                row = trainer.passed[-1]
                after = "curriculum finished" if trainer.curriculum.finished else f"now stage {trainer.stage}"
                tracker.message(f"stage {row['stage']:.0f} passed (success {row['success']:.3f}) after "
                                f"{row['stage_steps']:,.0f} agent steps, {row['stage_s']:.0f} s; {after}")
            if trainer.updates % run.checkpoint_every == 0:
                save_checkpoint(trainer, checkpoint_path, extra)
    except KeyboardInterrupt:
        interrupted = True
        tracker.message("interrupted: saving a checkpoint")
    finally:
        if publisher is not None and hasattr(publisher, "close"):
            publisher.close()
    save_checkpoint(trainer, checkpoint_path, extra)
    summary = {
        "stage": trainer.stage, "world": run.world.name if run.world else "progressive",
        "success": trainer.curriculum.success, "return": trainer.last_return,
        "agent_steps": trainer.global_step, "updates": trainer.updates, "wall_s": round(trainer.elapsed, 2),
        "passed": trainer.passed, "finished": trainer.curriculum.finished, "interrupted": interrupted,
        "checkpoint": str(checkpoint_path),
    }
    if recorder is not None:
        recorder.finish()  # counted with the outcomes of the last K ticks' events
        summary["trails"] = {"store": run.trails.location(run_dir), "events": recorder.events,
                             "outcomes": recorder.outcomes}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    tracker.summary({k: v for k, v in summary.items() if isinstance(v, int | float | str)})
    tracker.close()
    print(after_training(summary, run_dir, trainer.curriculum.config.threshold, run.total_agent_steps))
    if interrupted:
        raise KeyboardInterrupt
    return summary


def eval_mode(run: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Evaluate a checkpoint's brains on a stage; print a table, save eval_stage<s>.json (and a replay).

    The files go beside the checkpoint, into the training run's folder (`<run>/checkpoints/x.pt` ->
    `<run>/`); a checkpoint outside a run folder has them written into this job's own `run_dir`."""
    assert run.checkpoint is not None
    state = load_checkpoint(run.checkpoint)
    saved = saved_run_config(state)
    meta = state["brain_meta"]
    world = run.world or saved.world or stage_config(saved.curriculum.stages[state["curriculum"]["index"]])
    brain = Brain(saved.brain, meta["n_brains"], proprio_size=meta["proprio_size"])
    brain.load_state_dict(state["brain"])
    job = Path(run_dir)
    run_dir = results_dir(run.checkpoint, job)
    trails_run = f"eval-{job.name}"[:64]  # its own run name: the training run's events keep theirs
    recorder, writer = open_trails(run, run_dir, trails_run)
    try:  # the brains act with the senses and reflexes they were trained with
        rows = {"brain": evaluate_brain(brain, world, run.episodes, run.seed, run.greedy,
                                        nervous=saved.nervous, governor=run.governor, cortex=run.cortex,
                                        trails=recorder)}
    except ValueError as error:
        raise CheckpointError(f"checkpoint {run.checkpoint}: {error}") from None
    finally:
        if recorder is not None and writer is not None:
            recorder.finish()  # the last K ticks' events get their outcomes, cut short
            writer.close()
    for name in ("heuristic", "random"):
        rows[name] = evaluate_policy(world, POLICIES[name], run.episodes, run.seed)
    result = {"checkpoint": str(run.checkpoint), "stage": world.stage, "world": asdict(world),
              "episodes": run.episodes, "greedy": run.greedy, "results": rows}
    escalations = None
    if recorder is not None:
        location = run.trails.location(run_dir)
        with open_store(location, create=False) as store:
            escalations = store.last_per_npc(trails_run, run.trails.eval_last)
        result["trails"] = {"store": location, "run": trails_run, "events": recorder.events,
                            "outcomes": recorder.outcomes,
                            "last_escalations": {str(npc): [record_row(r) for r in records]
                                                 for npc, records in escalations.items()}}
    if run.record:
        replay = record_episode(brain, world, run_dir / f"replay_stage{world.stage}.npz", seed=run.seed,
                                greedy=run.greedy, extra={"checkpoint": str(run.checkpoint),
                                                          **({"trails_run": trails_run} if recorder else {})},
                                nervous=saved.nervous, governor=run.governor, cortex=run.cortex)
        result["replay"] = str(replay)
    run_dir.mkdir(parents=True, exist_ok=True)
    if run.record and run.logger.mode != "disabled":
        result["recording"] = str(log_recording(run, run_dir, Path(result["replay"]), rows))
    (run_dir / f"eval_stage{world.stage}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"stage {world.stage} ({world.name}), {run.episodes} episodes, "
          f"{'greedy' if run.greedy else 'sampled'} actions, checkpoint {run.checkpoint}")
    print(format_table(rows))
    if escalations is not None:
        print(eval_trails_text(result["trails"], escalations, run.trails.eval_last))
    print(after_eval(result, run_dir))
    return result


def eval_trails_text(trails: dict[str, Any], escalations: dict[int, list[TrailRecord]], last: int) -> str:
    """The eval's trails: where they are, and each NPC's last escalations as a table."""
    head = f"trails: {trails['events']} events of run {trails['run']} in {shown_store(trails['store'])}; "
    if not escalations:
        return head + "no escalations (the cortex is off, or no gate opened)"
    head += f"last {last} escalations of each of the {len(escalations)} NPCs that escalated:"
    npc = next(iter(escalations))
    store = trails["store"]
    where = f"--dsn {shown_store(store)}" if store.startswith("postgres") else f"--store {store}"
    query = (f"python -m organs.trails query {where} --run {trails['run']} "
             f"--npc {npc} --kind escalation")
    return f"{head}\n{format_per_npc(escalations)}\n  all of one NPC's: {query}"


def log_recording(run: RunConfig, run_dir: Path, replay: Path, rows: dict[str, dict[str, float]]) -> Path:
    """Draw the replay into a GIF with the viewer (headless) and log it, and the eval table, to wandb."""
    from train.view import view
    from world.replay import load_replay

    gif = replay.with_suffix(".gif")
    headless = "DISPLAY" not in os.environ and "SDL_VIDEODRIVER" not in os.environ
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    try:
        status = view(replay=str(replay), frames=len(load_replay(replay)), record=str(gif), speed=20.0)
    finally:
        if headless:
            os.environ.pop("SDL_VIDEODRIVER", None)
    if status != 0 or not gif.is_file():
        raise ReplayError(f"replay {replay}: the viewer could not record it to {gif}")
    import wandb

    tracker = Tracker(run.logger, run_dir, OmegaConf.to_container(OmegaConf.structured(run), resolve=True),
                      total=0, name=f"eval-{run_dir.name}", progress=False)
    assert tracker.wandb_run is not None
    metrics = {f"eval/{policy}/{key}": value for policy, stats in rows.items() for key, value in stats.items()
               if isinstance(value, int | float)}
    tracker.wandb_run.log(metrics | {"media/episode": wandb.Video(str(gif), format="gif")})
    tracker.close()
    return gif
