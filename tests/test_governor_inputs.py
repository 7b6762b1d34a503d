"""GovernorInputs: NPC reports, collapses, waves, overrides and global context land in named columns."""

from __future__ import annotations

import numpy as np
import pytest

from governor import inputs as col
from governor.config import GovernorConfig
from governor.inputs import GlobalContext, GovernorInputs, region_column
from nervous.messages import REGIONS, CollapseEvent, NpcState, Region


def _state(npc: int, **fields) -> NpcState:
    values = dict(npc=npc, tick=0, lifeforce=0.8, battery=0.6, reward_rate=0.02, tick_rate=10, cpu_use=0.25,
                  lag_ms=12.0)
    values.update(fields)
    return NpcState(**values)


def _collapse(npc: int, region: Region, confidence: float, tick: int) -> CollapseEvent:
    return CollapseEvent(npc=npc, region=region, confidence=confidence, cells=["a", "b"], tick=tick)


@pytest.fixture
def inputs() -> GovernorInputs:
    return GovernorInputs(GovernorConfig(cpu_budget=2.0, collapse_hold_ticks=10), npc_ids=[3, 7, 9])


def test_feature_names_match_the_columns() -> None:
    assert len(col.FEATURE_NAMES) == col.NUM_FEATURES == 10 + 2 * len(REGIONS) + 4
    assert col.FEATURE_NAMES[col.LIFEFORCE] == "lifeforce"
    assert col.FEATURE_NAMES[region_column(col.COLLAPSE, Region.MATH)] == "collapse_math"
    assert col.FEATURE_NAMES[col.NPCS_ALIVE] == "npcs_alive"


def test_a_report_fills_its_own_row_and_nobody_elses(inputs: GovernorInputs) -> None:
    inputs.observe_state(_state(7, override_rate=0.3))
    f = inputs.features(GlobalContext(tick=0))
    assert f.shape == (3, col.NUM_FEATURES) and f.dtype == np.float32
    row = f[1]
    assert row[col.ALIVE] == 1.0
    assert row[col.LIFEFORCE] == pytest.approx(0.8) and row[col.BATTERY] == pytest.approx(0.6)
    assert row[col.REWARD_RATE] == pytest.approx(0.02) and row[col.TICK_RATE] == 10.0
    assert row[col.CPU_USE] == pytest.approx(0.25) and row[col.LAG_S] == pytest.approx(0.012)
    assert row[col.OVERRIDE_RATE] == pytest.approx(0.3)  # the live NPC's own moving average
    assert not f[[0, 2], : col.CPU_LOAD].any()  # never-reported NPCs are zero rows


def test_an_unknown_npc_is_one_line_naming_the_field(inputs: GovernorInputs) -> None:
    with pytest.raises(ValueError, match=r"^npc_state\.npc=4: no such NPC"):
        inputs.observe_state(_state(4))
    with pytest.raises(ValueError, match=r"^collapse\.npc=0: no such NPC"):
        inputs.observe_collapse(_collapse(0, Region.MATH, 0.9, 1))
    with pytest.raises(ValueError, match=r"^npc_ids=\[1, 1\]: an NPC id is named twice"):
        GovernorInputs(GovernorConfig(), [1, 1])


def test_too_many_npcs_for_the_budget_is_named() -> None:
    with pytest.raises(ValueError, match=r"^governor\.cpu_budget=0\.5: 11 NPCs"):
        GovernorInputs(GovernorConfig(cpu_budget=0.5), range(11))


def test_a_collapse_is_held_for_collapse_hold_ticks_then_dropped(inputs: GovernorInputs) -> None:
    inputs.observe_state(_state(3))
    inputs.observe_collapse(_collapse(3, Region.MATH, 0.9, tick=100))
    math = region_column(col.COLLAPSE, Region.MATH)
    assert inputs.features(GlobalContext(tick=100))[0, math] == pytest.approx(0.9)
    assert inputs.features(GlobalContext(tick=109))[0, math] == pytest.approx(0.9)
    assert inputs.features(GlobalContext(tick=110))[0, math] == 0.0
    assert inputs.features(GlobalContext(tick=105))[0, col.COLLAPSE].sum() == pytest.approx(0.9)  # only math


def test_batched_collapses_and_waves(inputs: GovernorInputs) -> None:
    for npc in (3, 7, 9):
        inputs.observe_state(_state(npc))
    fired = np.zeros((3, len(REGIONS)), dtype=bool)
    fired[2, REGIONS.index(Region.HAZARD)] = True
    conf = np.full((3, len(REGIONS)), 0.8, dtype=np.float32)
    inputs.observe_collapses(fired, conf, tick=5)
    waves = np.zeros((3, len(REGIONS)), dtype=np.float32)
    waves[0, REGIONS.index(Region.FOOD)] = 0.4
    inputs.observe_waves(waves)
    f = inputs.features(GlobalContext(tick=6))
    assert f[2, region_column(col.COLLAPSE, Region.HAZARD)] == pytest.approx(0.8)
    assert f[:, col.COLLAPSE].sum() == pytest.approx(0.8)
    assert f[0, region_column(col.WAVE, Region.FOOD)] == pytest.approx(0.4)
    assert f[:, col.WAVE].sum() == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"^waves: shape \(2, 6\)"):
        inputs.observe_waves(np.zeros((2, len(REGIONS))))


def test_overrides_brain_calls_and_escalations(inputs: GovernorInputs) -> None:
    for npc in (3, 7, 9):
        inputs.observe_state(_state(npc))
    for _ in range(20):
        inputs.observe_overrides(np.array([True, False, False]))
    inputs.observe_brain_calls(np.array([True, True, False]), tick=40)
    inputs.observe_escalation(7, tick=30)
    f = inputs.features(GlobalContext(tick=60))
    assert f[0, col.OVERRIDE_RATE] == pytest.approx(1 - 0.95**20, rel=1e-5) and f[1, col.OVERRIDE_RATE] == 0.0
    assert f[0, col.SINCE_BRAIN_CALL_S] == pytest.approx(1.0)  # 20 world ticks at 20 Hz
    assert f[2, col.SINCE_BRAIN_CALL_S] == col.SINCE_CAP_S  # never called
    assert f[1, col.SINCE_ESCALATION_S] == pytest.approx(1.5)
    assert f[0, col.SINCE_ESCALATION_S] == col.SINCE_CAP_S


def test_global_context_is_broadcast_to_every_row(inputs: GovernorInputs) -> None:
    inputs.observe_state(_state(3))
    inputs.observe_state(_state(9))
    f = inputs.features(GlobalContext(tick=0, cpu_in_use=1.5, cortex_queue_depth=7, cortex_latency_s=0.3))
    assert np.all(f[:, col.CPU_LOAD] == pytest.approx(0.75))  # 1.5 of 2.0 cores
    assert np.all(f[:, col.CORTEX_QUEUE] == 7) and np.all(f[:, col.CORTEX_LATENCY_S] == pytest.approx(0.3))
    assert np.all(f[:, col.NPCS_ALIVE] == pytest.approx(2 / 3))


def test_mark_dead_zeroes_the_row_and_mark_alive_starts_a_fresh_life(inputs: GovernorInputs) -> None:
    inputs.observe_state(_state(3))
    inputs.observe_collapse(_collapse(3, Region.MATH, 0.9, tick=1))
    inputs.mark_dead(3)
    f = inputs.features(GlobalContext(tick=2))
    assert not f[0, : col.CPU_LOAD].any()
    inputs.observe_collapse(_collapse(3, Region.MATH, 0.9, tick=2))  # a dead NPC's collapse is ignored
    inputs.mark_alive(3)
    f = inputs.features(GlobalContext(tick=3))
    assert f[0, col.ALIVE] == 1.0 and f[0, col.LIFEFORCE] == 0.0 and not f[0, col.COLLAPSE].any()
    inputs.observe_state(_state(3, alive=False))  # a report of death marks it dead too
    assert inputs.features(GlobalContext(tick=4))[0, col.ALIVE] == 0.0
