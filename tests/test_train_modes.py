"""`python -m train` modes beyond training: the viewer (mode=view), the live organism, the live feed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from agents.brain import Brain
from agents.npc import brain_slot, weights_digest
from agents.organism import OrganismConfig
from train.checkpoint import CheckpointError, save_checkpoint
from train.config import ConfigError
from train.loop import Trainer
from train.modes import LiveFeed, seed_npc_brains
from train.nervous_link import build_nervous
from world import GridWorld, stage_config
from world.replay import ReplayWriter


def run_train(*args: str, cwd, timeout: float = 180) -> subprocess.CompletedProcess:
    env = os.environ | {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_processes_runtime_and_duration_compose(compose_run):
    run = compose_run("runtime=processes", "duration=42", "runtime.organism.npcs=3")
    assert run.runtime.name == "processes" and run.duration == 42
    assert run.runtime.organism.npcs == 3 and run.runtime.torch_threads == 1
    with pytest.raises(ConfigError, match="duration=-1"):
        compose_run("runtime=processes", "duration=-1")


def test_view_mode_needs_a_source(compose_run):
    with pytest.raises(ConfigError, match="mode=view needs view.replay"):
        compose_run("mode=view")


def test_view_mode_plays_a_replay_headless(tmp_path):
    world = GridWorld(stage_config(1), num_envs=1, seed=2)
    writer = ReplayWriter(1, "walls")
    for _ in range(6):
        writer.add(world.frame(0))
        world.step(np.random.default_rng(0).integers(0, 7, (1, 4)))
    replay = writer.save(tmp_path / "walls.npz")
    shot = tmp_path / "shot.png"
    done = run_train("mode=view", f"view.replay={replay}", "view.frames=6", f"view.screenshot={shot}",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(shot).size[0] > 400


def test_view_mode_reports_an_unreadable_replay_in_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a replay")
    done = run_train("mode=view", f"view.replay={bad}", "view.frames=2", cwd=tmp_path)
    assert done.returncode == 1
    assert "not a readable .npz replay" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def _trainer_checkpoint(compose_run, tmp_path, brain: str, memory: str = "none"):
    run = compose_run("+experiment=quick", f"brain={brain}", "brain.hidden=16", "ppo.num_envs=2",
                      f"brain.memory={memory}")
    trainer = Trainer(run)
    return trainer, save_checkpoint(trainer, tmp_path / f"{brain}.pt")


@pytest.mark.parametrize(("brain", "memory"), [("per_npc", "none"), ("shared", "none"), ("per_npc", "gru")])
def test_npcs_start_from_the_brains_of_a_training_checkpoint(compose_run, tmp_path, brain, memory):
    trainer, path = _trainer_checkpoint(compose_run, tmp_path, brain, memory)
    organism = OrganismConfig(npcs=6, run_dir=str(tmp_path / "org"))
    npcs = tmp_path / "org" / "npcs"
    npcs.mkdir(parents=True)
    (npcs / "npc-5.pt").write_bytes(b"its own weights")  # an NPC with weights of its own keeps them
    seeded = seed_npc_brains(organism, str(path))
    assert (seeded.hidden, seeded.view_size) == (16, trainer.brain.config.view_size)
    assert seeded.brain_memory == memory
    assert (npcs / "npc-5.pt").read_bytes() == b"its own weights"
    stacked = trainer.brain.state_dict()
    for i in range(5):
        weights = torch.load(npcs / f"npc-{i}.pt", weights_only=True)["brain"]
        g = 0 if brain == "shared" else i % trainer.brain.n_brains
        for name, tensor in weights.items():
            torch.testing.assert_close(tensor[0], stacked[name][g])


def test_a_missing_training_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        seed_npc_brains(OrganismConfig(run_dir=str(tmp_path)), str(tmp_path / "nope.pt"))


@pytest.mark.slow
def test_processes_runtime_runs_the_live_organism_on_trained_brains(compose_run, tmp_path):
    trainer, path = _trainer_checkpoint(compose_run, tmp_path, "per_npc")
    done = run_train("runtime=processes", "duration=3", "runtime.organism.npcs=2", f"checkpoint={path}",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    assert "2 of 2 NPCs start from its 4 brain(s)" in table
    assert "world ticks" in table and " npc  ticks" in table
    rows = [line.split() for line in table.splitlines() if line.strip().startswith(("0 ", "1 "))]
    assert len(rows) == 2 and all(int(row[1]) > 10 for row in rows)  # both NPCs acted for seconds
    assert table.startswith("checkpoint ") and "live organism: stage 3 (crowd), 2 NPC processes" in table
    saved = next(line for line in table.splitlines() if line.startswith("saved "))
    summary_path, logs = saved.split()[1].rstrip(";"), saved.split()[4].rstrip(";")
    assert json.loads((tmp_path / summary_path).read_text())["npcs"]
    assert (tmp_path / logs.replace("<i>", "1")).is_file()
    assert "INFO" not in done.stderr  # supervisor chatter goes to the run's log, not the terminal
    for i in range(2):  # each NPC process runs brain i of the trainer
        status = json.loads(next(tmp_path.rglob(f"npc-{i}.status.json")).read_text())
        one = Brain(trainer.brain.config, 1)
        one.load_state_dict(brain_slot(trainer.brain.state_dict(), i))
        assert status["source"] == "checkpoint" and status["weights"] == weights_digest(one)


@pytest.mark.slow
def test_a_memory_brain_trains_evaluates_records_and_lives_as_npc_processes(tmp_path):
    trained = run_train("+experiment=quick", "world=stage0", "brain.memory=gru", "brain.hidden=16",
                        "hydra.run.dir=trained", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    checkpoint = "checkpoint=trained/checkpoints/latest.pt"
    done = run_train("mode=eval", checkpoint, "world=stage0", "episodes=2", "world.max_steps=15",
                     "record=true", "hydra.run.dir=evaluated", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "trained" / "replay_stage0.npz").is_file()
    result = json.loads((tmp_path / "trained" / "eval_stage0.json").read_text())
    assert result["results"]["brain"]["episodes"] >= 2
    live = run_train("runtime=processes", "duration=3", "runtime.organism.npcs=2", "runtime.organism.stage=0",
                     checkpoint, cwd=tmp_path)
    assert live.returncode == 0, live.stderr[-3000:]
    rows = [line.split() for line in live.stdout.splitlines() if line.strip().startswith(("0 ", "1 "))]
    assert len(rows) == 2 and all(int(row[1]) > 10 for row in rows)  # both memory NPCs acted for seconds
    weights = torch.load(next(tmp_path.rglob("npc-0.pt")), weights_only=True)
    assert weights["memory"] == "gru" and "w_hh" in weights["brain"]


class RecordingPublisher:
    """Stands in for FramePublisher's interface (the bus side is tested in test_live_feed.py)."""

    def __init__(self):
        self.calls = []

    def maybe_publish(self, world, **extras):
        self.calls.append(extras)

    def close(self):
        self.calls.append("closed")


def test_live_feed_sends_waves_and_overrides_with_frames(compose_run):
    run = compose_run("world=stage2")
    senses, reflex = build_nervous(run.nervous)
    world = GridWorld(stage_config(2), num_envs=2, seed=0)
    senses(world)
    reflex(world, np.full((2, 4), 1))
    publisher = RecordingPublisher()
    feed = LiveFeed(publisher, senses, reflex)
    feed.maybe_publish(world)
    feed.close()
    extras = publisher.calls[0]
    assert extras["waves"].shape == (8, len(run.nervous.cell.cells))
    assert extras["overrides"].shape == (2, 4)
    assert publisher.calls[-1] == "closed"


@pytest.mark.slow
def test_eval_record_logs_a_gif_to_wandb_offline(tmp_path):
    trained = run_train("+experiment=quick", "world=stage0", "hydra.run.dir=trained", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    done = run_train("mode=eval", "checkpoint=trained/checkpoints/latest.pt", "world=stage0", "episodes=2",
                     "world.max_steps=15", "record=true", "logger.mode=offline", "hydra.run.dir=evaluated",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    gif = tmp_path / "trained" / "replay_stage0.gif"  # beside the checkpoint, in the training run's folder
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames >= 10
    assert not (tmp_path / "evaluated").exists()  # the eval job's own folder would hold only Hydra's files
    logged = list((tmp_path / "trained" / "wandb").glob("offline-run-*/files/media/videos/**/*.gif"))
    assert logged, "the recording is in the offline wandb run"


def test_viewer_live_opens_the_viewer_when_there_is_a_display(monkeypatch, capsys):
    from train.modes import open_viewer

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert open_viewer("run-1") is None
    assert "-m train.view --live --run run-1" in capsys.readouterr().err
    monkeypatch.setenv("DISPLAY", ":99")  # a display that is not there: the viewer starts, then says so
    viewer = open_viewer("run-1")
    try:
        assert viewer is not None and viewer.args[1:5] == ["-m", "train.view", "--live", "--run"]
    finally:
        viewer.kill()
        viewer.wait()
