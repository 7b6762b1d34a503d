"""A real (small) learning run: per-NPC brains learn to forage on stage 0 far better than random."""

import time

import pytest

from train.evaluate import evaluate_brain
from train.loop import Trainer
from world import stage_config
from world.rollout import POLICIES, evaluate

#: Learned success must beat the random policy's (0.003 on stage 0) by at least this much.
MARGIN = 0.3


@pytest.mark.slow
def test_stage0_brains_beat_random_by_a_margin_within_1_2_m_agent_steps(compose_run):
    run = compose_run("world=stage0", "ppo.num_envs=256", "total_agent_steps=1200000", "seed=3",
                      "logger.mode=disabled", "logger.progress=false")
    trainer = Trainer(run)
    start = time.monotonic()
    # bounded by agent steps, not by the wall clock: a loaded machine makes it slower, not worse
    # (the 15-minute cap only keeps a broken trainer from running forever)
    while not trainer.done_training and time.monotonic() - start < 900:
        trainer.train_step()
    assert trainer.done_training, f"only {trainer.global_step:,} agent steps in 15 minutes"
    learned = evaluate_brain(trainer.brain, stage_config(0), episodes=100, seed=7)["success"]
    random = evaluate(stage_config(0), POLICIES["random"], episodes=100, seed=7)["success"]
    print(f"stage 0 after {trainer.global_step:,} agent steps, {time.monotonic() - start:.0f} s: "
          f"learned success {learned:.3f}, random {random:.3f}")
    assert learned >= random + MARGIN
