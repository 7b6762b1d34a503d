"""CortexConfig: defaults, the YAML mirror, and one clear line naming a bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from organs.config import CortexConfig

YAML = Path(__file__).resolve().parents[1] / "conf" / "cortex" / "default.yaml"


def test_yaml_mirrors_the_dataclass_but_turns_the_cortex_on() -> None:
    values = OmegaConf.to_container(OmegaConf.load(YAML))
    values.pop("defaults")
    # python -m train escalates to the in-process planner by default, from stage 4 (the locks) on;
    # programmatic runs (benchmarks) do not escalate unless asked, and then on every stage
    assert values["backend"] == "engine" and CortexConfig().backend == "none"
    assert values["from_stage"] == 4 and CortexConfig().from_stage == 0
    assert CortexConfig(**values) == CortexConfig(backend="engine", from_stage=4)
    assert set(values) == set(CortexConfig.field_names())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeout_s", -1, "cortex.timeout_s=-1: must be > 0"),
        ("concurrency", 0, "cortex.concurrency=0: must be > 0"),
        ("retries", -2, "cortex.retries=-2: must be >= 0"),
        ("base_url", "theia:31000", "cortex.base_url='theia:31000': must start with http"),
        ("breaker_failures", True, "cortex.breaker_failures=True: must be > 0"),
        ("model", "", "cortex.model"),
        ("backend", "grpc", "cortex.backend='grpc': must be one of none, engine, http"),
        ("outcome_ticks", 2.5, "cortex.outcome_ticks=2.5: must be an integer > 0"),
        ("from_stage", 6, "cortex.from_stage=6: must be a stage, 0..5"),
        ("from_stage", "4", "cortex.from_stage='4': must be a stage, 0..5"),
    ],
)
def test_bad_fields_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        CortexConfig(**{field: value})


def test_the_cortex_group_composes_into_the_run_config(compose_run) -> None:
    run = compose_run("cortex.base_url=http://theia:31000/v1", "cortex.priority_scheduling=true")
    assert run.cortex.base_url == "http://theia:31000/v1" and run.cortex.priority_scheduling
    assert compose_run().cortex.base_url is None  # the embedded planner server by default
    assert compose_run().cortex.backend == "engine"  # the default run escalates to the in-process planner
    assert compose_run("cortex.backend=none").cortex.backend == "none"
    assert compose_run("+experiment=governor").cortex.backend == "none"  # the governor learns blind
    assert compose_run("+experiment=governor", "cortex.backend=engine").cortex.backend == "engine"
    # the cortex looks through the vision organ where the governor opened an NPC's organ gate
    assert compose_run().cortex.vision_gate == "governed" == CortexConfig().vision_gate
    assert compose_run("cortex.vision_gate=open").cortex.vision_gate == "open"
    assert compose_run("cortex.vision_gate=closed").cortex.vision_gate == "closed"

