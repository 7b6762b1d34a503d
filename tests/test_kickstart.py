"""Kickstarting (ppo.teacher): the distillation term, its anneal, its config; teacher=none is PPO alone."""

import time

import numpy as np
import pytest
import torch

from agents.brain import Brain, BrainConfig
from agents.ppo import Batch, PPOConfig, ppo_loss, ppo_update, teacher_loss
from agents.rollout import Rollout
from train.config import ConfigError
from train.loop import Trainer
from world.heuristics import heuristic_policy
from world.tiles import NUM_ACTIONS, NUM_CODES, PROPRIO_SIZE


def _batch(G: int, T: int, m: int, seed: int = 0, memory: str = "none") -> tuple[Brain, Batch]:
    """A brain and a random (but self-consistent) rollout batch of G brains x T ticks x m columns."""
    gen = torch.Generator().manual_seed(seed)
    brain = Brain(BrainConfig(hidden=16, memory=memory), G, generator=torch.Generator().manual_seed(seed))
    ro = Rollout(G, T, m, 7, PROPRIO_SIZE, NUM_ACTIONS, brain.state_size, teacher=True)
    ro.codes[:] = torch.randint(0, NUM_CODES, ro.codes.shape, generator=gen).to(torch.uint8)
    ro.proprio[:] = torch.rand(ro.proprio.shape, generator=gen)
    ro.action_mask[:] = torch.rand(ro.action_mask.shape, generator=gen) < 0.8
    ro.action_mask[..., 0] = True  # at least one legal action
    ro.actions[:] = torch.distributions.Categorical(probs=ro.action_mask.float()).sample()
    ro.logprobs[:] = torch.log(1.0 / ro.action_mask.sum(-1).float())
    ro.values[:] = torch.randn(ro.values.shape, generator=gen)
    ro.rewards[:] = torch.randn(ro.rewards.shape, generator=gen)
    ro.mask[:] = torch.rand(ro.mask.shape, generator=gen) < 0.9
    ro.resets[:, 0] = True
    assert ro.teacher_actions is not None
    ro.teacher_actions[:] = torch.randint(0, NUM_ACTIONS, ro.teacher_actions.shape, generator=gen)
    return brain, ro.batch(torch.zeros(G, m), torch.zeros(G, m, dtype=torch.bool), 0.99, 0.95, teacher=True)


def _config(T: int, m: int) -> PPOConfig:
    return PPOConfig(num_envs=m, num_steps=T, num_minibatches=2, update_epochs=2)


def _reference_update(brain: Brain, optimizer: torch.optim.Optimizer, batch: Batch,
                      config: PPOConfig) -> None:
    """PPO's update as it was before kickstarting: get_action_and_value and ppo_loss per minibatch."""
    from agents.ppo import clip_grad_norm_per_brain

    samples = batch.actions.shape[1]
    minibatch = samples // config.num_minibatches
    params = [p for p in brain.parameters() if p.requires_grad]
    for _epoch in range(config.update_epochs):
        order = torch.randperm(samples)
        for start in range(0, samples, minibatch):
            idx = order[start:start + minibatch]
            _, logprob, entropy, value = brain.get_action_and_value(
                batch.codes[:, idx], batch.proprio[:, idx], batch.action_mask[:, idx], batch.actions[:, idx])
            loss, _ = ppo_loss(logprob, entropy, value, batch.logprobs[:, idx], batch.values[:, idx],
                               batch.advantages[:, idx], batch.returns[:, idx], batch.mask[:, idx],
                               config.clip_coef, config.vf_coef, config.ent_coef, config.clip_vloss,
                               config.norm_adv)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            clip_grad_norm_per_brain(params, config.max_grad_norm)
            optimizer.step()


@pytest.mark.parametrize("teacher_coef", [0.0, None])
def test_without_a_teacher_the_update_is_todays_ppo_bit_for_bit(teacher_coef):
    T, m = 4, 6
    brain, batch = _batch(2, T, m)
    if teacher_coef is None:  # no teacher actions in the batch at all
        batch.teacher_actions = None
    reference, _ = _batch(2, T, m)
    config = _config(T, m)
    torch.manual_seed(5)
    ppo_update(brain, torch.optim.Adam(brain.parameters(), lr=1e-2), batch, config, teacher_coef or 0.0)
    torch.manual_seed(5)
    _reference_update(reference, torch.optim.Adam(reference.parameters(), lr=1e-2), batch, config)
    for (name, p), q in zip(brain.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_with_a_teacher_the_update_differs():
    T, m = 4, 6
    brain, batch = _batch(2, T, m)
    other, _ = _batch(2, T, m)
    torch.manual_seed(5)
    stats = ppo_update(brain, torch.optim.Adam(brain.parameters(), lr=1e-2), batch, _config(T, m), 0.5)
    torch.manual_seed(5)
    ppo_update(other, torch.optim.Adam(other.parameters(), lr=1e-2), batch, _config(T, m), 0.0)
    assert not torch.equal(brain.w_actor, other.w_actor)
    assert stats["teacher_loss"] > 0 and 0.0 <= stats["teacher_agreement"] <= 1.0


def test_teacher_loss_hand_computed_leaves_out_dead_samples_and_illegal_teacher_actions():
    probs = [[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]
    logp_all = torch.log(torch.tensor([probs]))
    teacher = torch.tensor([[0, 1, 1, 2]])
    legal = torch.tensor([[[True, True, True], [True, True, True], [True, False, True], [True, True, True]]])
    alive = torch.tensor([[True, True, True, False]])
    loss, stats = teacher_loss(logp_all, teacher, legal, alive)
    # samples 0 and 1 count (2: the teacher's action is illegal; 3: dead): -(ln 0.5 + ln 0.8) / 2
    assert loss.item() == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2, rel=1e-6)
    assert stats["teacher_agreement"] == pytest.approx(1.0)  # both counted argmaxes are the teacher's


@pytest.mark.parametrize("memory", ["none", "gru"])
def test_the_distillation_term_alone_pulls_the_policy_to_the_teacher(memory):
    T, m = 4, 8
    brain, batch = _batch(1, T, m, seed=2, memory=memory)
    batch.advantages.zero_()  # no policy gradient: only the teacher's term moves the policy
    batch.mask[:] = True
    config = PPOConfig(num_envs=m, num_steps=T, num_minibatches=1, update_epochs=1, ent_coef=0.0,
                       max_grad_norm=10.0)
    optimizer = torch.optim.Adam(brain.parameters(), lr=3e-3)
    first = ppo_update(brain, optimizer, batch, config, 1.0)
    for _ in range(150):
        last = ppo_update(brain, optimizer, batch, config, 1.0)
    assert last["teacher_loss"] < 0.5 * first["teacher_loss"]
    assert last["teacher_agreement"] >= 0.9 > first["teacher_agreement"]


def test_the_weight_anneals_linearly_to_the_floor_and_is_zero_without_a_teacher():
    config = PPOConfig(teacher="heuristic", teacher_coef=2.0, teacher_steps=1000, teacher_floor=0.1)
    weights = [config.teacher_weight(s) for s in (0, 250, 900, 1000, 5000)]
    assert weights == pytest.approx([2.0, 1.5, 0.2, 0.1, 0.1])
    assert PPOConfig(teacher="none", teacher_coef=2.0).teacher_weight(0) == 0.0


@pytest.mark.parametrize(("field", "value"), [("teacher", "oracle"), ("teacher_steps", 0),
                                              ("teacher_coef", -1.0), ("teacher_floor", 5.0)])
def test_teacher_config_rejects_bad_values_naming_the_field(compose_run, field, value):
    with pytest.raises(ValueError, match=rf"^ppo\.{field}="):
        PPOConfig(**{field: value})
    with pytest.raises(ConfigError, match=rf"^ppo\.{field}=") as info:
        compose_run(f"ppo.{field}={value}")
    assert "\n" not in str(info.value)


def test_the_trainer_asks_the_heuristic_on_the_brains_observations_and_logs_the_teacher(compose_run):
    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=4", "world=stage4",
                      "ppo.teacher=heuristic", "ppo.teacher_steps=2048")
    trainer = Trainer(run)
    world, rng = trainer.world, np.random.default_rng(run.seed)
    B, N, V = world.num_envs, world.num_npcs, world.V
    expected = heuristic_policy(world.views.reshape(B * N, V, V), world.proprio.reshape(B * N, -1),
                                world.action_mask.reshape(B * N, -1), rng)
    metrics = trainer.train_step()
    rb = trainer.rollout
    assert rb.teacher_actions is not None
    assert torch.equal(rb.teacher_actions[:, 0], trainer.to_groups(expected.reshape(B, N)))
    assert metrics["charts/teacher_coef"] == 1.0  # the first rollout: no steps into the stage yet
    assert metrics["losses/teacher_loss"] > 0 and 0.0 <= metrics["charts/teacher_agreement"] <= 1.0
    steps = trainer.global_step
    assert trainer.teacher_coef == pytest.approx(1.0 - steps / 2048)
    while trainer.global_step < 2048:
        metrics = trainer.train_step()
    assert trainer.teacher_coef == 0.0
    metrics = trainer.train_step()  # annealed away: the heuristic is not asked, no teacher term
    assert metrics["charts/teacher_coef"] == 0.0 and "losses/teacher_loss" not in metrics


def test_a_new_stage_is_kickstarted_again(compose_run):
    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=4", "curriculum.stages=[0,1]",
                      "ppo.teacher=heuristic", "ppo.teacher_steps=1024")
    trainer = Trainer(run)
    for _ in range(3):
        trainer.train_step()
    assert trainer.teacher_coef < 1.0
    trainer.curriculum.record([1.0] * 1024)  # pass stage 0 by hand, as the trainer does on passing
    trainer.stage_started = {"step": trainer.global_step, "elapsed": trainer.elapsed}
    trainer._setup_stage(clone=True)
    assert trainer.stage == 1 and trainer.teacher_coef == 1.0


def test_without_a_teacher_the_rollout_holds_no_teacher_actions(compose_run):
    trainer = Trainer(compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=4"))
    metrics = trainer.train_step()
    assert trainer.rollout.teacher_actions is None
    assert not any("teacher" in key for key in metrics)


#: A short stage-4 run: kickstarted brains must open at least this many more doors and locks per NPC-episode
#: than brains trained by PPO alone on the same seed and budget.
OPENED_MARGIN = 0.05
BUDGET = 250_000


def _train_stage4(compose_run, teacher: str) -> dict[str, float]:
    from train.evaluate import evaluate_brain
    from world import stage_config

    run = compose_run("world=stage4", "+experiment=no_nerves", "ppo.num_envs=32", f"ppo.teacher={teacher}",
                      f"ppo.teacher_steps={BUDGET}", f"total_agent_steps={BUDGET}", "seed=1",
                      "runtime.torch_threads=1", "logger.mode=disabled", "logger.progress=false")
    trainer = Trainer(run)
    start = time.monotonic()
    while not trainer.done_training and time.monotonic() - start < 900:
        trainer.train_step()
    assert trainer.done_training, f"only {trainer.global_step:,} agent steps in 15 minutes"
    return evaluate_brain(trainer.brain, stage_config(4), episodes=64, seed=7, nervous=run.nervous)


@pytest.mark.slow
def test_kickstarted_brains_open_more_doors_and_locks_than_ppo_alone_on_stage4(compose_run):
    kick, scratch = _train_stage4(compose_run, "heuristic"), _train_stage4(compose_run, "none")
    print(f"stage 4 after {BUDGET:,} agent steps: opened per NPC-episode kickstarted {kick['opened']:.3f}, "
          f"PPO alone {scratch['opened']:.3f}; return {kick['return']:.2f} / {scratch['return']:.2f}")
    assert kick["opened"] >= scratch["opened"] + OPENED_MARGIN
