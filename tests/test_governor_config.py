"""GovernorConfig: defaults, the YAML mirrors, Hydra composition, and one clear line naming a bad field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from governor.config import GovernorConfig

CONF = Path(__file__).resolve().parents[1] / "conf" / "governor"
KINDS = ("fixed", "heuristic", "budget", "learned")


@pytest.mark.parametrize("kind", KINDS)
def test_yaml_mirrors_the_dataclass(kind: str) -> None:
    values = OmegaConf.to_container(OmegaConf.load(CONF / f"{kind}.yaml"))
    assert values.pop("defaults") == ["schema", "_self_"]
    assert set(values) == set(GovernorConfig.field_names())
    assert GovernorConfig(**values) == GovernorConfig(kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_each_yaml_composes_against_the_schema(kind: str) -> None:
    from hydra import compose, initialize_config_module

    from train.config import register_configs

    register_configs()
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose(f"governor/{kind}", overrides=["governor.cpu_budget=4.0"])
    config = OmegaConf.to_object(cfg.governor)
    assert isinstance(config, GovernorConfig)
    assert config.kind == kind and config.cpu_budget == 4.0 and config.tick_rates == [1, 2, 5, 10, 20]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "smart"}, "governor.kind='smart': no such governor; choose one of fixed, heuristic"),
        ({"governor_hz": 0}, "governor.governor_hz=0: must be > 0"),
        ({"cpu_budget": -1.0}, "governor.cpu_budget=-1.0: must be > 0"),
        ({"tick_rates": []}, "governor.tick_rates=[]: must name at least one tick rate"),
        ({"tick_rates": [1, 2, 40]}, "governor.tick_rates=[1, 2, 40]: 40 is not an integer in 1..20"),
        ({"tick_rates": [0, 5]}, "governor.tick_rates=[0, 5]: 0 is not an integer in 1..20"),
        ({"tick_rates": [1, 3, 5]}, "governor.tick_rates=[1, 3, 5]: 3 Hz does not divide the 20 Hz world"),
        ({"tick_rates": [1, 5, 5]}, "governor.tick_rates=[1, 5, 5]: a tick rate is named twice"),
        ({"tick_rates": [2, 5, 20]}, "governor.idle_tick_rate=1: must be one of governor.tick_rates"),
        ({"min_quota": 2.0}, "governor.min_quota=2.0: must be in 5..100"),
        ({"max_quota": 150.0}, "governor.max_quota=150.0: must be in governor.min_quota..100"),
        ({"min_quota": 50.0, "max_quota": 40.0}, "governor.max_quota=40.0: must be in governor.min_quota"),
        ({"gate_threshold": 1.5}, "governor.gate_threshold=1.5: must be in 0..1"),
        ({"low_lifeforce": -0.1}, "governor.low_lifeforce=-0.1: must be in 0..1"),
        ({"collapse_hold_ticks": 0}, "governor.collapse_hold_ticks=0: must be an integer >= 1"),
        ({"help_regions": ["maths"]}, "governor.help_regions=['maths']: 'maths' is no region"),
        ({"budget_in_ms": 0.0}, "governor.budget_in_ms=0.0: must be > 0"),
        ({"state_change_throttle_in_frames": 0}, "governor.state_change_throttle_in_frames=0: must be an"),
        ({"state_change_throttle_in_frames": 129}, "governor.state_change_throttle_in_frames=129: must be"),
        ({"max_tick_rate": 0}, "governor.max_tick_rate=0: must be an integer >= 1"),
        ({"tick_rates": [1, 2], "idle_tick_rate": 1, "calm_tick_rate": 2, "max_tick_rate": 5},
         "governor.max_tick_rate=5: no tick rate of [1, 2] calls the brain at least every 5 world ticks"),
        ({"initial_estimated_work_unit_time_ms": -2.0}, "governor.initial_estimated_work_unit_time_ms=-2.0"),
        ({"work_unit_smoothing_speed": 0.05}, "governor.work_unit_smoothing_speed=0.05: must be > 0.1"),
        ({"governor_hz": True}, "governor.governor_hz=True: must be > 0"),
        ({"calls_budget": -1.0}, "governor.calls_budget=-1.0: must be >= 0 (brain calls per second"),
        ({"calls_target": 0.0}, "governor.calls_target=0.0: must be in (0, 1]"),
        ({"calls_target": 1.5}, "governor.calls_target=1.5: must be in (0, 1]"),
        ({"calls_multiplier_lr": -1.0}, "governor.calls_multiplier_lr=-1.0: must be >= 0"),
        ({"calls_multiplier_kp": -0.5}, "governor.calls_multiplier_kp=-0.5: must be >= 0"),
    ],
)
def test_bad_fields_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)) as info:
        GovernorConfig(**overrides)
    assert "\n" not in str(info.value)


def test_a_budget_too_small_for_the_minimum_quotas_is_named_once_the_npc_count_is_known() -> None:
    config = GovernorConfig(cpu_budget=0.1)  # fine on its own: the NPC count is not known yet
    config.check_npcs(2)  # 2 x 5 % = 0.1 cores: fits exactly
    message = r"^governor\.cpu_budget=0\.1: 4 NPCs at governor\.min_quota=5 % need at least 0\.2 cores$"
    with pytest.raises(ValueError, match=message):
        config.check_npcs(4)


def test_budget_rates_respect_max_tick_rate() -> None:
    assert GovernorConfig(max_tick_rate=20).budget_rates() == [1, 2, 5, 10, 20]
    assert GovernorConfig(max_tick_rate=4).budget_rates() == [5, 10, 20]  # 5 Hz: every 4 world ticks
    assert GovernorConfig(max_tick_rate=1).budget_rates() == [20]


def test_the_governor_group_composes_into_the_run_config(compose_run) -> None:
    assert compose_run().governor.kind == "fixed"  # today's behaviour by default
    run = compose_run("governor=budget", "governor.cpu_budget=2.5")
    assert run.governor.kind == "budget" and run.governor.cpu_budget == 2.5
