"""The training loop's seams: extra senses widen the brain's input, reflexes override and are masked."""

import numpy as np
import torch

from train.loop import Trainer
from world.tiles import PROPRIO_SIZE, Action


class TwoWaves:
    """Senses adding two constant features per NPC."""

    size = 2

    def __init__(self):
        self.calls = 0

    def __call__(self, world):
        self.calls += 1
        return np.ones((world.num_envs, world.num_npcs, 2), dtype=np.float32)


class AlwaysStay:
    """A reflex that overrides slot 0's action with STAY in every env."""

    def __init__(self):
        self.seen = []

    def __call__(self, world, actions):
        self.seen.append(actions.copy())
        overridden = np.zeros_like(actions, dtype=bool)
        overridden[:, 0] = True
        actions = actions.copy()
        actions[:, 0] = Action.STAY
        return actions, overridden


class Frames:
    def __init__(self):
        self.ticks = 0

    def maybe_publish(self, world):
        self.ticks += 1


def test_senses_reflex_and_publisher_are_called_every_tick(compose_run):
    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=4", "ppo.num_steps=5")
    senses, reflex, frames = TwoWaves(), AlwaysStay(), Frames()
    trainer = Trainer(run, senses=senses, reflex=reflex, publisher=frames)
    assert trainer.brain.proprio_size == PROPRIO_SIZE + 2
    trainer.train_step()
    assert senses.calls == 6 and len(reflex.seen) == 5 and frames.ticks == 5  # +1: the bootstrap value
    rb = trainer.rollout
    assert rb.proprio.shape[-1] == PROPRIO_SIZE + 2 and (rb.proprio[..., -2:] == 1).all()
    assert not rb.mask[0].any()  # slot 0 (brain 0) was overridden every tick: out of the loss
    assert rb.mask[1:].any()


def test_collect_runs_on_one_torch_thread_and_the_update_on_the_configured_ones(compose_run):
    class Threads(Frames):
        def maybe_publish(self, world):
            self.seen = torch.get_num_threads()

    run = compose_run("+experiment=quick", "brain.hidden=16", "ppo.num_envs=4", "ppo.num_steps=3",
                      "runtime.torch_threads=2")
    frames = Threads()
    trainer = Trainer(run, publisher=frames)
    trainer.train_step()
    assert frames.seen == 1
    assert torch.get_num_threads() == 2
