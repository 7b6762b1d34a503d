"""The trails config group: the YAML mirrors TrailsConfig, composes into RunConfig, bad values in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from organs.trails import TrailsConfig
from train.config import ConfigError

YAML = Path(__file__).resolve().parents[1] / "conf" / "trails" / "default.yaml"


def test_yaml_mirrors_the_dataclass() -> None:
    values = OmegaConf.to_container(OmegaConf.load(YAML))
    values.pop("defaults")
    assert TrailsConfig(**values) == TrailsConfig()


def test_the_trails_group_composes_into_the_run_config(compose_run) -> None:
    default = compose_run()
    assert default.trails == TrailsConfig() and not default.runtime.organism.trails  # off unless asked
    run = compose_run("trails.dsn=postgresql://nimmerverse@phoebe:5432/trails", "trails.batch_size=64",
                      "trails.stream.max_age_s=3600", "runtime=processes", "runtime.organism.trails=true")
    assert run.trails.location("x") == "postgresql://nimmerverse@phoebe:5432/trails"
    assert run.trails.batch_size == 64 and run.trails.stream.max_age_s == 3600
    assert run.runtime.organism.trails


def test_bad_trails_values_are_one_line_naming_the_field(compose_run) -> None:
    with pytest.raises(ConfigError) as err:
        compose_run("trails.dsn=mysql://x")
    assert str(err.value) == "trails.dsn='mysql://x': must start with postgresql://"
    with pytest.raises(ConfigError, match="^trails.stream.duplicate_window_s=7200.0: must be in"):
        compose_run("trails.stream.max_age_s=3600", "trails.stream.duplicate_window_s=7200")
    with pytest.raises(ConfigError, match="^trails.flush: no such config field$"):
        compose_run("+trails.flush=1")


def test_the_organisms_trails_option_is_off_by_default_and_the_yaml_says_so() -> None:
    from agents.organism import OrganismConfig

    processes = OmegaConf.load(YAML.parents[1] / "runtime" / "processes.yaml")
    assert OrganismConfig().trails is False and processes.organism.trails is False


def test_a_run_name_too_long_for_a_trail_event_is_refused_in_one_line_when_trails_are_on() -> None:
    from agents.organism import OrganismConfig
    from governor.service import GovernorServiceConfig

    long = "r" * 65
    assert OrganismConfig(run=long).run == long  # without trails, any name
    with pytest.raises(ValueError, match=r"runtime.organism.run='r{65}': with trails, must be 1-64"):
        OrganismConfig(run=long, trails=True)
    with pytest.raises(ValueError, match=r"run='r{65}': with trails, must be 1-64 characters$"):
        GovernorServiceConfig(run=long, trails=True)
