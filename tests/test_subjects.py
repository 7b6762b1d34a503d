"""Subjects: shape, env prefix and token validation."""

import pytest

from nervous import subjects


def test_subjects_follow_env_domain_service_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIMMERVERSE_ENV", raising=False)
    assert subjects.cell_wave("math") == "dev.nervous.cells.math.wave"
    assert subjects.cell_request("math") == "dev.nervous.cells.math.request"
    assert subjects.cell_response("math") == "dev.nervous.cells.math.response"
    assert subjects.npc_state(7) == "dev.npc.7.state"
    assert subjects.npc_obs("npc_3") == "dev.npc.npc_3.obs"
    assert subjects.npc_action(3) == "dev.npc.3.action"
    assert subjects.npc_command(3) == "dev.npc.3.command"
    assert subjects.governor_allocate() == "dev.thalamus.governor.allocate"
    assert subjects.gate_open() == "dev.thalamus.gate.open"
    assert subjects.gate_close() == "dev.thalamus.gate.close"
    assert subjects.governor_collapse() == "dev.thalamus.governor.collapse"
    assert subjects.npc_states_pattern() == "dev.npc.*.state"
    assert subjects.cortex_request() == "dev.cortex.nyx.request"
    assert subjects.organ("vision", "detect") == "dev.organs.vision.detect"
    assert subjects.world_frame("run1") == "dev.world.run1.frame"
    assert subjects.heartbeat("thalamus", "governor") == "dev.thalamus.governor.heartbeat"
    assert subjects.trail_event() == "dev.trails.decision.event"
    assert subjects.trail_outcome() == "dev.trails.decision.outcome"
    assert subjects.trails_heartbeat() == "dev.trails.writer.heartbeat"


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_env_prefix_comes_from_environment(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("NIMMERVERSE_ENV", env)
    assert subjects.gate_open() == f"{env}.thalamus.gate.open"
    assert subjects.inbox_prefix("cell-math") == f"_INBOX.{env}.cell-math"


def test_unknown_env_is_rejected_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMMERVERSE_ENV", "production")
    with pytest.raises(ValueError, match="NIMMERVERSE_ENV"):
        subjects.cell_wave("math")


@pytest.mark.parametrize("bad", ["", " ", "ma th", "*", ">", "a.b", "math*", "\t", "é"])
def test_bad_tokens_are_rejected_naming_the_token(bad: str) -> None:
    with pytest.raises(ValueError, match="cell"):
        subjects.cell_wave(bad)
    with pytest.raises(ValueError, match="organ|verb"):
        subjects.organ("vision", bad)


def test_events_pattern_covers_waves_gates_allocations_and_collapses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMMERVERSE_ENV", "staging")
    assert subjects.events_pattern() == [
        "staging.nervous.cells.*.wave",
        "staging.thalamus.gate.*",
        "staging.thalamus.governor.allocate",
        "staging.thalamus.governor.collapse",
    ]


def test_trails_pattern_covers_events_and_outcomes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMMERVERSE_ENV", "prod")
    pattern = subjects.trails_pattern()
    assert pattern == "prod.trails.decision.*"
    for subject in (subjects.trail_event(), subjects.trail_outcome()):
        assert subject.rsplit(".", 1)[0] == pattern.rsplit(".", 1)[0]
    # two JetStream streams may not capture the same subject: the events stream must not see trails
    assert not any(p.split(".")[1] == "trails" for p in subjects.events_pattern())
