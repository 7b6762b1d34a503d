"""Cells and nerves wired into training and evaluation: waves join the observation, nerves override."""

import numpy as np
import pytest

from nervous.config import NervousConfig
from nervous.lifeforce import LifeforceConfig
from nervous.nerves import NerveConfig
from organs.config import CortexConfig
from organs.cortex.backends import EngineBackend
from organs.link import CortexLink
from train.evaluate import evaluate_brain, record_episode
from train.loop import Trainer
from train.modes import eval_mode, train_mode
from train.nervous_link import Reflexes, build_nervous
from world import GridWorld, stage_config
from world.replay import load_replay
from world.tiles import PROPRIO_SIZE, Action, Tile


def test_default_run_has_cells_and_nerves(compose_run):
    run = compose_run()
    assert run.nervous.cells and run.nervous.nerves.enabled
    senses, reflex = build_nervous(run.nervous)
    assert senses is not None and senses.size == 2 * len(run.nervous.cell.cells)
    assert reflex is not None and reflex.nerves is not None


def test_ablation_experiment_switches_everything_off(compose_run):
    run = compose_run("+experiment=no_nerves", "nervous.lifeforce.per_brain_call=0")
    assert build_nervous(run.nervous) == (None, None)


def test_trainer_learns_from_waves_and_masks_overrides(compose_run):
    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=4", "ppo.num_steps=6",
                      "world=stage1")
    senses, reflex = build_nervous(run.nervous)
    overrides = []

    def counting_reflex(world, actions):
        out = reflex(world, actions)
        overrides.append(out[1].sum())
        return out

    trainer = Trainer(run, senses=senses, reflex=counting_reflex)
    assert trainer.brain.proprio_size == PROPRIO_SIZE + senses.size
    trainer.train_step()
    rb = trainer.rollout
    assert rb.proprio[..., PROPRIO_SIZE:].abs().sum() > 0  # wave features reached the brains
    assert sum(overrides) > 0  # untrained brains walk into walls: the nerves step in
    assert (~rb.mask).sum() >= sum(overrides)  # and those samples stay out of the PPO loss


def test_waves_are_computed_once_per_tick():
    world = GridWorld(stage_config(2), num_envs=3, seed=0)
    senses, _ = build_nervous(NervousConfig())
    first = senses(world)
    assert senses(world) is first  # same tick: cached
    world.step(np.zeros((3, 4), dtype=np.int64))
    assert senses(world) is not first


def test_reflex_vetoes_walking_into_a_wall_and_charges_thinking():
    world = GridWorld(stage_config(0, n_food=0, food_regrow=0.0), num_envs=1, seed=0)
    r = world.r
    world.tiles[0, r:r + 16, r:r + 16] = Tile.EMPTY
    world.pos_y[0], world.pos_x[0] = r, r + 2 * np.arange(4)  # the top row: north is the border wall
    world.refresh()
    reflex = Reflexes(build_nervous(NervousConfig(nerves=NerveConfig(exploration=False)))[1].nerves,
                      LifeforceConfig(per_brain_call=0.01))
    actions, overridden = reflex(world, np.array([[Action.NORTH, Action.SOUTH, Action.STAY, Action.NORTH]]))
    assert overridden.tolist() == [[True, False, False, True]]
    assert actions[0, 0] != Action.NORTH and actions[0, 3] != Action.NORTH
    world.step(actions)
    assert world.lifeforce[0, 2] == pytest.approx(1 - world.config.lifeforce_decay - 0.01, abs=1e-5)


def test_evaluation_and_replay_use_the_trained_senses(compose_run, tmp_path):
    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=4", "ppo.num_steps=4",
                      "world=stage2")
    senses, reflex = build_nervous(run.nervous)
    brain = Trainer(run, senses=senses, reflex=reflex).brain
    config = stage_config(2, max_steps=12)
    stats = evaluate_brain(brain, config, episodes=2, seed=1, nervous=run.nervous)
    assert stats["episodes"] >= 2
    with pytest.raises(ValueError, match="wave features"):
        evaluate_brain(brain, config, episodes=1, nervous=None)
    replay = load_replay(record_episode(brain, config, tmp_path / "r.npz", seed=1, nervous=run.nervous))
    assert replay.arrays["waves"].shape == (len(replay), 4, len(run.nervous.cell.cells))
    assert replay.arrays["overrides"].shape == (len(replay), 4)
    assert replay.extra["cells"] == list(run.nervous.cell.cells)
    assert replay.arrays["waves"].max() > 0


def test_the_cortex_switch_puts_the_link_into_training_and_eval(compose_run, tmp_path, capsys):
    overrides = ("+experiment=quick", "brain.hidden=16", "ppo.num_envs=2", "world=stage4",
                 "governor=heuristic")
    run = compose_run(*overrides, "cortex.backend=engine", "total_agent_steps=512")
    senses, reflex = build_nervous(run.nervous, run.governor, run.cortex)
    assert isinstance(reflex.escalator, CortexLink) and isinstance(reflex.escalator.backend, EngineBackend)
    assert "cortex/escalations" in Trainer(run, senses=senses, reflex=reflex).train_step()
    assert build_nervous(run.nervous, run.governor, CortexConfig())[1].escalator is None  # backend none
    summary = train_mode(run, tmp_path / "run")
    evaluated = eval_mode(compose_run(*overrides, "mode=eval", f"checkpoint={summary['checkpoint']}",
                                      "episodes=1", "world.max_steps=20", "cortex.backend=http"), tmp_path)
    brain = evaluated["results"]["brain"]
    assert brain["episodes"] >= 1 and "cortex/escalations" in brain and "cortex/outcome_failed" in brain
