"""Hydra composition: every conf file and experiment composes into a valid RunConfig; bad values fail."""

import dataclasses
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from train.config import ConfigError, RunConfig
from world import WorldConfig, stage_config
from world.rollout import BASELINE_SUCCESS

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("brain", "ppo", "curriculum", "nervous", "logger", "runtime")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_default_config_is_the_progressive_curriculum_with_per_npc_brains(compose_run):
    run = compose_run()
    assert isinstance(run, RunConfig)
    assert run.world is None and run.curriculum.stages == [0, 1, 2, 3, 4, 5]
    assert not run.brain.shared and run.runtime.name == "inproc" and run.logger.mode == "offline"


@pytest.mark.parametrize("stage", _options("world"))
def test_every_world_option_composes_to_its_stage_preset(compose_run, stage):
    run = compose_run(f"world={stage}")
    assert isinstance(run.world, WorldConfig)
    assert run.world == stage_config(stage)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(compose_run, group, option):
    run = compose_run(f"{group}={option}")
    assert getattr(run, group) is not None


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(compose_run, experiment):
    run = compose_run(f"+experiment={experiment}")
    assert isinstance(run, RunConfig)


def test_stage4_bar_is_the_heuristics_measured_success_and_stages_0_to_3_keep_the_threshold(compose_run):
    """Issue 17: the default run can pass stage 4 at the heuristic's success (0.8 was out of reach)."""
    run = compose_run()
    assert run.curriculum.stage_thresholds == {4: BASELINE_SUCCESS[4]["heuristic"]}
    assert run.curriculum.threshold == 0.8
    assert compose_run("curriculum.stage_thresholds={4:0.5}").curriculum.stage_thresholds[4] == 0.5


def test_experiments_change_what_they_say(compose_run):
    assert compose_run("+experiment=shared_brain").brain.shared
    bench = compose_run("+experiment=benchmark")
    assert bench.curriculum.stages == [0, 1, 2] and bench.stop_when_passed
    assert {s: bench.curriculum.stage_thresholds[s] for s in (0, 1, 2)} == {0: 0.96, 1: 0.74, 2: 0.734}
    assert compose_run("+experiment=quick").logger.mode == "disabled"
    full = compose_run("+experiment=full_curriculum")
    assert full.curriculum.stages == [0, 1, 2, 3, 4, 5] and full.stop_when_passed
    assert full.max_wall_s is not None and full.max_wall_s <= 45 * 60
    assert full.ppo.teacher == "none" == compose_run().ppo.teacher  # measured: the teacher harms stage 5
    assert {s: full.curriculum.stage_thresholds[s] for s in (4, 5)} == {
        s: BASELINE_SUCCESS[s]["heuristic"] for s in (4, 5)}


def test_ppo_one_epoch_is_the_default_ppo_with_one_epoch(compose_run):
    default, fast = compose_run().ppo, compose_run("ppo=one_epoch").ppo
    assert fast.update_epochs == 1 and default.update_epochs == 2
    assert dataclasses.replace(fast, update_epochs=2) == default


def test_world_field_overrides_are_typed_and_validated(compose_run):
    assert compose_run("world=stage2", "world.n_food=30").world.n_food == 30
    with pytest.raises(ConfigError, match=r"^world\.n_food=-1"):
        compose_run("world=stage0", "world.n_food=-1")


@pytest.mark.parametrize(
    "overrides",
    [
        ["ppo.lr=3"],
        ["ppo.num_envs=abc"],
        ["world=stage9"],
        ["brain=nope"],
        ["+experiment=nope"],
        ["world=stage0", "world.colour=red"],
        ["logger.verbose=true"],
    ],
)
def test_unknown_keys_groups_and_wrong_types_fail_at_composition(compose_run, overrides):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_run(*overrides)


@pytest.mark.parametrize(
    "override,field",
    [
        ("ppo.num_envs=0", "ppo.num_envs"),
        ("mode=fly", "mode"),
        ("logger.mode=loud", "logger.mode"),
        ("runtime.name=threads", "runtime.name"),
        ("runtime=processes runtime.organism.cpu_quota=500", "runtime.organism.cpu_quota"),
        ("runtime=processes runtime.organism.obs_spread=0.95", "runtime.organism.obs_spread"),
        ("viewer=tv", "viewer"),
        ("curriculum.threshold=2.0", "curriculum.threshold"),
        ("curriculum.stage_thresholds={4:1.5}", "curriculum.stage_thresholds.4"),
        ("++curriculum.stage_thresholds={9:0.5}", "curriculum.stage_thresholds.9"),
        ("brain.view_size=8", "brain.view_size"),
        ("total_agent_steps=0", "total_agent_steps"),
        ("mode=eval", "checkpoint"),
    ],
)
def test_bad_values_give_one_line_errors_naming_the_field(compose_run, override, field):
    with pytest.raises(ConfigError) as info:
        compose_run(*override.split())
    message = str(info.value)
    assert message.startswith(field) and "\n" not in message
