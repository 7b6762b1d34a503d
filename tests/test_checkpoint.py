"""Checkpoints: a resumed run's next update equals the uninterrupted run's; atomic writes survive kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from train.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from train.loop import Trainer

TIMING = ("charts/SPS", "perf/rollout_s", "perf/update_s", "perf/elapsed_s")


def _same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key not in TIMING:
            assert a[key] == b[key] or (np.isnan(a[key]) and np.isnan(b[key])), key


@pytest.mark.parametrize(("brain", "memory", "teacher"), [
    ("per_npc", "none", "none"), ("shared", "none", "none"), ("per_npc", "gru", "none"),
    ("shared", "gru", "none"),
    ("per_npc", "none", "heuristic"), ("shared", "gru", "heuristic")])
def test_resumed_run_gives_the_same_next_update(compose_run, tmp_path, brain, memory, teacher):
    # a kickstarted run resumes mid-anneal (the weight, and the teacher's random numbers, carry on)
    run = compose_run("+experiment=quick", f"brain={brain}", "brain.hidden=16", "ppo.num_envs=8",
                      f"brain.memory={memory}", f"ppo.teacher={teacher}", "ppo.teacher_steps=2000")
    first = Trainer(run)
    for _ in range(3):
        first.train_step()
    path = save_checkpoint(first, tmp_path / "latest.pt")
    expected = [first.train_step() for _ in range(2)]

    second = Trainer(run)
    restore(second, load_checkpoint(path))
    assert second.updates == 3 and second.global_step == 3 * 8 * 8 * 4
    got = [second.train_step() for _ in range(2)]
    for a, b in zip(expected, got, strict=True):
        _same_metrics(a, b)
    for (name, p), q in zip(first.brain.named_parameters(), second.brain.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert np.array_equal(first.world.tiles, second.world.tiles)
    assert np.array_equal(first.world.pos_y, second.world.pos_y)
    assert torch.equal(first.memory, second.memory)  # the memory state carried across rollouts
    if memory == "gru":
        assert first.memory.abs().sum() > 0 and second.brain.has_memory
    if teacher != "none":
        assert 0.0 < second.teacher_coef == first.teacher_coef < 1.0
        assert "losses/teacher_loss" in got[-1]
        assert torch.equal(first.rollout.teacher_actions, second.rollout.teacher_actions)


def test_a_checkpoint_from_before_memory_and_kickstarting_still_loads_and_resumes(compose_run, tmp_path):
    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=8")
    first = Trainer(run)
    first.train_step()
    path = save_checkpoint(first, tmp_path / "latest.pt")
    old = torch.load(path, weights_only=True)  # what a checkpoint written before memory holds
    del old["memory_state"], old["brain_meta"]["memory"], old["config"]["brain"]["memory"]
    del old["teacher_rng"], old["config"]["ppo"]["teacher"]  # ... and before kickstarting
    torch.save(old, path)
    expected = first.train_step()
    second = Trainer(run)
    restore(second, load_checkpoint(path))
    assert not second.brain.has_memory and second.memory.shape[-1] == 0
    _same_metrics(expected, second.train_step())


def test_a_memory_checkpoint_refuses_a_memoryless_run(compose_run, tmp_path):
    quick = ("+experiment=quick", "brain.hidden=16", "ppo.num_envs=8")
    trainer = Trainer(compose_run(*quick, "brain.memory=gru"))
    path = save_checkpoint(trainer, tmp_path / "latest.pt")
    with pytest.raises(CheckpointError, match="brain memory='gru' does not match this run's 'none'"):
        restore(Trainer(compose_run(*quick)), load_checkpoint(path))


def test_checkpoint_holds_every_part_and_loads_without_pickle(compose_run, tmp_path):
    trainer = Trainer(compose_run("+experiment=quick", "brain.hidden=16"))
    trainer.train_step()
    save_checkpoint(trainer, tmp_path / "checkpoints" / "latest.pt", {"wandb_id": "abc"})
    state = load_checkpoint(tmp_path)  # a run folder means its checkpoints/latest.pt
    for key in ("config", "brain", "optimizer", "torch_rng", "sample_rng", "world", "curriculum", "counters"):
        assert key in state
    assert state["extra"] == {"wandb_id": "abc"} and state["counters"]["updates"] == 1


def test_resume_after_a_stage_change_grows_brains_and_keeps_the_stage(compose_run, tmp_path):
    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=8", "curriculum.stages=[0,3]")
    trainer = Trainer(run)
    trainer.curriculum.record([1.0] * 1024)  # pass stage 0 by hand
    trainer._setup_stage(clone=True)
    assert trainer.stage == 3 and trainer.brain.n_brains == 16
    trainer.train_step()
    path = save_checkpoint(trainer, tmp_path / "c.pt")
    fresh = Trainer(run)
    restore(fresh, load_checkpoint(path))
    assert fresh.stage == 3 and fresh.brain.n_brains == 16 and fresh.world.num_npcs == 16
    fresh.train_step()


@pytest.mark.slow
def test_kill_9_loses_at_most_checkpoint_every_updates(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "train",
        "+experiment=quick",
        "total_agent_steps=100000000",
        "checkpoint_every=3",
        "brain.hidden=16",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    metrics = run_dir / "metrics.jsonl"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 8:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    logged = len(metrics.read_text().splitlines())
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert logged >= 8
    assert logged - 3 <= state["counters"]["updates"] <= logged
    assert json.loads(metrics.read_text().splitlines()[-1])["step"] > 0
