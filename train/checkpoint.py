"""Checkpoints: every brain, the optimiser, RNG states, the world, the curriculum and the counters.

One ``torch.save`` file written atomically (temp file + rename), loadable with ``weights_only=True``
(only tensors and plain Python values inside). The world's state is captured generically from the
GridWorld's numpy arrays and its generator, so a resumed run continues the exact same episodes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from train.config import ConfigError, RunConfig
from train.loop import Trainer
from world import GridWorld

FORMAT = "nimmerverse-checkpoint"
VERSION = 1
LATEST = Path("checkpoints") / "latest.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def world_state(world: GridWorld) -> dict[str, Any]:
    """Every writable numpy array of the world (as tensors), its generator state and stats."""
    arrays = {name: torch.from_numpy(value.copy()) for name, value in vars(world).items()
              if isinstance(value, np.ndarray) and value.flags.writeable}
    return {"arrays": arrays, "rng": world.rng.bit_generator.state, "stats": dict(world._stats)}


def load_world_state(world: GridWorld, state: dict[str, Any]) -> None:
    """Restore `world_state` into a world built with the same config and num_envs."""
    for name, value in state["arrays"].items():
        current = getattr(world, name)
        array = value.numpy()
        if current.shape != array.shape:
            raise CheckpointError(f"world.{name}: shape {tuple(array.shape)} in the checkpoint, "
                                  f"{current.shape} in this run")
        np.copyto(current, array)
    world.rng.bit_generator.state = state["rng"]
    world._stats = dict(state["stats"])


def trainer_state(trainer: Trainer, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to continue training exactly where the trainer is (plus `extra` values)."""
    return {
        "format": FORMAT, "version": VERSION,
        "config": OmegaConf.to_container(OmegaConf.structured(trainer.run), resolve=True),
        "brain_meta": brain_meta(trainer),
        "brain": trainer.brain.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "sample_rng": trainer.generator.get_state(),
        "teacher_rng": trainer.teacher_rng.bit_generator.state,
        "world": world_state(trainer.world),
        "curriculum": trainer.curriculum.state_dict(),
        "counters": {"global_step": trainer.global_step, "updates": trainer.updates,
                     "elapsed": trainer.elapsed},
        "passed": list(trainer.passed),
        "stage_started": dict(trainer.stage_started),
        "next_done": trainer.next_done.clone(),
        "memory_state": trainer.memory.clone(),
        "last_return": trainer.last_return,
        "extra": dict(extra or {}),
    }


def brain_meta(trainer: Trainer) -> dict[str, Any]:
    """What a brain's shapes depend on (checked when a checkpoint is loaded)."""
    b = trainer.brain
    return {"n_brains": b.n_brains, "shared": b.config.shared, "hidden": b.config.hidden,
            "view_size": b.config.view_size, "proprio_size": b.proprio_size, "n_codes": b.n_codes,
            "n_actions": b.n_actions, "memory": b.config.memory}


def save_checkpoint(trainer: Trainer, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write the trainer's state to `path` atomically and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(trainer_state(trainer, extra), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file; raise CheckpointError naming the file and what is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / LATEST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        why = type(error).__name__
        raise CheckpointError(f"checkpoint {path}: not a readable checkpoint ({why})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a {FORMAT} file")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: version {state.get('version')!r} is not {VERSION}")
    return state


def saved_run_config(state: dict[str, Any]) -> RunConfig:
    """The RunConfig a checkpoint was trained with."""
    try:
        run = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), state["config"]))
    except Exception as error:
        raise ConfigError(f"checkpoint config: {str(error).splitlines()[0]}") from None
    assert isinstance(run, RunConfig)
    return run


def restore(trainer: Trainer, state: dict[str, Any]) -> None:
    """Load a checkpoint's state into a trainer built from the checkpoint's own config."""
    meta = {"memory": "none"} | state["brain_meta"]  # checkpoints from before memory have none
    trainer.brain.grow(int(meta["n_brains"]), trainer.optimizer)
    here = brain_meta(trainer)
    for key, value in meta.items():
        if here[key] != value:
            raise CheckpointError(f"checkpoint: brain {key}={value!r} does not match this run's "
                                  f"{here[key]!r}")
    trainer.curriculum.load_state_dict(state["curriculum"])
    counters = state["counters"]
    trainer._setup_stage(clone=False)
    trainer.brain.load_state_dict(state["brain"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    trainer.generator.set_state(state["sample_rng"])
    if "teacher_rng" in state:  # a checkpoint from before kickstarting: its teacher never drew
        trainer.teacher_rng.bit_generator.state = state["teacher_rng"]
    load_world_state(trainer.world, state["world"])
    trainer.global_step = int(counters["global_step"])
    trainer.updates = int(counters["updates"])
    trainer.elapsed = float(counters["elapsed"])
    trainer.passed = [dict(row) for row in state["passed"]]
    trainer.stage_started = dict(state["stage_started"])
    trainer.next_done = state["next_done"].clone()
    if "memory_state" in state:  # a checkpoint from before memory: a memoryless brain's empty state
        trainer.memory = state["memory_state"].clone()
    trainer.last_return = state["last_return"]
