"""The fixed, heuristic and budget governors: their rules on hand-made NPCs; the CPU budget always holds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from governor import inputs as col
from governor.baselines import (
    GOVERNORS,
    BudgetGovernor,
    FixedGovernor,
    HeuristicGovernor,
    make_governor,
)
from governor.config import GovernorConfig
from governor.decisions import Decisions
from governor.inputs import GlobalContext, GovernorInputs
from nervous.messages import REGIONS, CollapseEvent, NpcState, Region

MATH, HAZARD, FOOD = (REGIONS.index(r) for r in (Region.MATH, Region.HAZARD, Region.FOOD))
#: The budget tests' arithmetic assumes 2 ms per brain call until it is measured.
MS2 = {"initial_estimated_work_unit_time_ms": 2.0}


def _world(config: GovernorConfig, npcs: list[dict], tick: int = 100) -> np.ndarray:
    """The inputs array of NPCs described by their report fields plus optional collapses/hazard wave."""
    inputs = GovernorInputs(config, range(len(npcs)))
    waves = np.zeros((len(npcs), len(REGIONS)), dtype=np.float32)
    for npc, spec in enumerate(npcs):
        spec = dict(spec)
        collapses = spec.pop("collapses", {})
        waves[npc, HAZARD] = spec.pop("hazard_wave", 0.0)
        dead = spec.pop("dead", False)
        report = dict(lifeforce=0.9, battery=0.9, reward_rate=0.05, tick_rate=20, cpu_use=0.0)
        report.update(spec)
        inputs.observe_state(NpcState(npc=npc, tick=tick, **report))
        for region, confidence in collapses.items():
            inputs.observe_collapse(CollapseEvent(npc=npc, region=region, confidence=confidence,
                                                  cells=["a", "b"], tick=tick))
        if dead:
            inputs.mark_dead(npc)
    inputs.observe_waves(waves)
    return inputs.features(GlobalContext(tick=tick))


DYING_IN_DANGER = dict(lifeforce=0.05, hazard_wave=0.9)
IDLE_AND_SAFE = dict(reward_rate=0.0)
DOING_MATH = dict(collapses={Region.MATH: 0.9})


# --- fixed ---------------------------------------------------------------------------------------
def test_fixed_runs_everyone_at_20_hz_with_full_quotas_scaled_to_the_budget() -> None:
    config = GovernorConfig(kind="fixed", cpu_budget=2.0)
    features = _world(config, [DYING_IN_DANGER, IDLE_AND_SAFE, DOING_MATH, dict(dead=True), {}])
    d = FixedGovernor(config).decide(features, GlobalContext(tick=100))
    assert d.tick_rate[d.alive].tolist() == [20, 20, 20, 20]
    assert d.cpu_quota[d.alive].tolist() == pytest.approx([50.0] * 4, abs=1e-9)  # 4 x 100 % into 200 %
    assert d.cpu_quota[3] == 0.0 and not d.alive[3]
    assert d.llm_priority[d.alive].tolist() == [5, 5, 5, 5] and d.llm_priority[3] == 0


def test_fixed_opens_a_gate_on_any_region_with_a_collapse_above_threshold() -> None:
    config = GovernorConfig(kind="fixed", gate_threshold=0.75)
    features = _world(config, [dict(collapses={Region.HAZARD: 0.8, Region.FOOD: 0.7}), DOING_MATH])
    gates = FixedGovernor(config).decide(features, GlobalContext(tick=100)).gates
    assert gates[0, HAZARD] and not gates[0, FOOD] and gates[1, MATH]
    assert gates.sum() == 2


# --- heuristic -----------------------------------------------------------------------------------
def test_heuristic_gives_a_dying_npc_in_danger_20_hz_and_a_high_priority() -> None:
    config = GovernorConfig(kind="heuristic")
    features = _world(config, [DYING_IN_DANGER, IDLE_AND_SAFE, {}])
    d = HeuristicGovernor(config).decide(features, GlobalContext(tick=100))
    assert d.tick_rate[0] == 20 and d.llm_priority[0] >= 8
    assert d.cpu_quota[0] == max(d.cpu_quota)


def test_heuristic_slows_an_idle_safe_npc_and_keeps_a_busy_one_calm() -> None:
    config = GovernorConfig(kind="heuristic", idle_tick_rate=1, calm_tick_rate=5)
    features = _world(config, [IDLE_AND_SAFE, dict(reward_rate=0.1), dict(reward_rate=0.0, **DOING_MATH)])
    d = HeuristicGovernor(config).decide(features, GlobalContext(tick=100))
    assert d.tick_rate.tolist() == [1, 5, 5]  # a held collapse is not idle
    assert d.cpu_quota[0] < d.cpu_quota[1]
    assert d.llm_priority.tolist() == [0, 0, 0]  # nobody is urgent


def test_heuristic_low_battery_alone_is_urgent() -> None:
    config = GovernorConfig(kind="heuristic", low_lifeforce=0.3)
    d = HeuristicGovernor(config).decide(_world(config, [dict(battery=0.15)]), GlobalContext(tick=100))
    assert d.tick_rate[0] == 20 and d.llm_priority[0] == 5  # need (0.3 - 0.15) / 0.3


def test_heuristic_opens_the_math_gate_on_a_math_collapse_and_not_on_other_regions() -> None:
    config = GovernorConfig(kind="heuristic", help_regions=["math"])
    features = _world(config, [DOING_MATH, dict(collapses={Region.HAZARD: 0.95, Region.FOOD: 0.95}),
                               dict(collapses={Region.MATH: 0.5})])
    gates = HeuristicGovernor(config).decide(features, GlobalContext(tick=100)).gates
    assert gates[0, MATH] and gates.sum() == 1  # hazard/food are the reflexes' job; 0.5 is below threshold


def test_heuristic_help_regions_are_configurable() -> None:
    config = GovernorConfig(kind="heuristic", help_regions=["math", "food"])
    features = _world(config, [dict(collapses={Region.FOOD: 0.9})])
    assert HeuristicGovernor(config).decide(features, GlobalContext(tick=100)).gates[0, FOOD]


# --- budget --------------------------------------------------------------------------------------
def _by_need(n: int) -> list[dict]:
    """n NPCs whose significance rises with their index (lifeforce falls)."""
    return [dict(lifeforce=0.9 - 0.1 * i, reward_rate=0.1) for i in range(n)]


def test_budget_gives_the_fastest_rates_to_the_most_significant_and_throttles_the_rest() -> None:
    # work unit 2 ms per brain call: everyone at 1 Hz costs 8 x 2 x 1/20 = 0.8 ms per world tick, leaving 3.2
    config = GovernorConfig(kind="budget", budget_in_ms=4.0, initial_estimated_work_unit_time_ms=2.0)
    features = _world(config, _by_need(8))
    governor = BudgetGovernor(config)
    d = governor.decide(features, GlobalContext(tick=0))
    order = np.argsort(-governor.significance(features), kind="stable")
    assert order.tolist() == [7, 6, 5, 4, 3, 2, 1, 0]
    assert d.tick_rate[order].tolist() == [20, 10, 5, 1, 1, 1, 1, 1]  # 1.9 + 0.9 + 0.4 ms bought
    spent = float(np.sum(governor.work_ms * d.tick_rate / 20))
    assert spent <= config.budget_in_ms
    assert d.llm_priority[7] > d.llm_priority[0]


def test_budget_ticks_everyone_fastest_when_the_budget_allows() -> None:
    config = GovernorConfig(kind="budget", budget_in_ms=50.0, **MS2)
    d = BudgetGovernor(config).decide(_world(config, _by_need(8)), GlobalContext(tick=0))
    assert d.tick_rate.tolist() == [20] * 8


def test_budget_max_tick_rate_bounds_the_throttling() -> None:
    config = GovernorConfig(kind="budget", budget_in_ms=0.5, max_tick_rate=4, **MS2)  # slowest allowed: 5 Hz
    d = BudgetGovernor(config).decide(_world(config, _by_need(8)), GlobalContext(tick=0))
    assert d.tick_rate.min() == 5  # over budget rather than slower than every 4 world ticks


def test_budget_measured_cpu_makes_an_expensive_npc_cost_more() -> None:
    # NPC 1 is the more significant; measured at 20 ms per brain call (0.4 cores at 20 Hz) it cannot afford
    # more than 2 Hz, and a less significant NPC never ticks faster than a more significant one
    config = GovernorConfig(kind="budget", budget_in_ms=2.6, work_unit_smoothing_speed=10.0, **MS2)
    cheap = _world(config, [dict(lifeforce=0.5), dict(lifeforce=0.4)])  # 2 ms each: 0.1 + 1.9 + 0.4 ms
    assert BudgetGovernor(config).decide(cheap, GlobalContext(tick=0)).tick_rate.tolist() == [5, 20]
    costly = _world(config, [dict(lifeforce=0.5), dict(lifeforce=0.4, cpu_use=0.4, tick_rate=20)])
    governor = BudgetGovernor(config)
    d = governor.decide(costly, GlobalContext(tick=0))
    assert governor.work_ms.tolist() == pytest.approx([2.0, 20.0])  # speed 10 at 2 Hz: converged at once
    assert d.tick_rate.tolist() == [2, 2]


def test_budget_respects_the_state_change_throttle() -> None:
    config = GovernorConfig(kind="budget", budget_in_ms=4.0, state_change_throttle_in_frames=30, **MS2)
    governor = BudgetGovernor(config)
    first = governor.decide(_world(config, _by_need(8)), GlobalContext(tick=0))
    flipped = _world(config, _by_need(8)[::-1])  # now NPC 0 is the most significant
    held = governor.decide(flipped, GlobalContext(tick=10))
    assert held.tick_rate.tolist() == first.tick_rate.tolist()  # 10 < 30 world ticks: nobody changes
    changed = governor.decide(flipped, GlobalContext(tick=30))
    assert changed.tick_rate.tolist() == first.tick_rate.tolist()[::-1]


def test_budget_throttled_npcs_keep_their_cost_while_the_others_share_the_rest() -> None:
    config = GovernorConfig(kind="budget", budget_in_ms=4.0, state_change_throttle_in_frames=30, **MS2)
    governor = BudgetGovernor(config)
    governor.decide(_world(config, _by_need(8)), GlobalContext(tick=0))
    specs = _by_need(8)
    specs[7] = dict(dead=True)  # the fastest NPC dies: its budget waits for the others' throttle
    d = governor.decide(_world(config, specs), GlobalContext(tick=10))
    assert d.tick_rate[6] == 10 and not d.alive[7]  # still locked
    assert float(np.sum((governor.work_ms * d.tick_rate / 20)[d.alive])) <= config.budget_in_ms
    d = governor.decide(_world(config, specs), GlobalContext(tick=30))
    assert d.tick_rate[6] == 20 and d.tick_rate[5] == 10  # the next most significant move up


# --- every governor --------------------------------------------------------------------------------
KINDS = ("fixed", "heuristic", "budget")


@st.composite
def worlds(draw: st.DrawFn) -> tuple[GovernorConfig, np.ndarray]:
    n = draw(st.integers(0, 40))
    min_quota = draw(st.floats(5.0, 25.0))
    config = GovernorConfig(
        kind=draw(st.sampled_from(KINDS)),
        cpu_budget=(n * min_quota + 1e-6) / 100.0 + draw(st.floats(0.0, 8.0)),
        min_quota=min_quota,
        max_quota=draw(st.floats(min_quota, 100.0)),
        budget_in_ms=draw(st.floats(0.1, 100.0)),
        gate_threshold=draw(st.floats(0.0, 1.0)),
    )
    features = draw(arrays(np.float32, (n, col.NUM_FEATURES), elements=st.floats(0.0, 1.0, width=32)))
    features[:, col.ALIVE] = features[:, col.ALIVE] > 0.3
    features[:, col.TICK_RATE] *= 20.0
    return config, features


@settings(max_examples=300, deadline=None)
@given(world=worlds(), tick=st.integers(0, 10_000))
def test_every_governor_keeps_the_quotas_inside_the_cpu_budget(world, tick: int) -> None:
    config, features = world
    d = make_governor(config).decide(features, GlobalContext(tick=tick))
    alive = features[:, col.ALIVE] > 0.5
    assert np.array_equal(d.alive, alive)
    assert d.cpu_quota.sum() <= 100.0 * config.cpu_budget
    assert np.all(d.cpu_quota[alive] >= config.min_quota) and np.all(d.cpu_quota[alive] <= config.max_quota)
    assert np.all(d.cpu_quota[~alive] == 0.0)
    assert set(d.tick_rate.tolist()) <= set(config.tick_rates)
    assert np.all((d.llm_priority >= 0) & (d.llm_priority <= 10))
    assert not d.gates[~alive].any()
    d.to_allocations(list(range(len(d))), tick=tick)  # every living row is a valid message


def test_the_budget_governor_stays_in_budget_over_many_ticks() -> None:
    rng = np.random.default_rng(16)
    config = GovernorConfig(kind="budget", budget_in_ms=6.0, state_change_throttle_in_frames=20, **MS2)
    governor = BudgetGovernor(config)
    cpu_use = rng.uniform(0.01, 0.05, 16).astype(np.float32)  # 0.5..2.5 ms per brain call at 20 Hz
    seen = set()
    for step in range(50):
        features = rng.random((16, col.NUM_FEATURES), dtype=np.float32)  # significance changes every tick
        features[:, col.ALIVE] = 1.0
        features[:, col.CPU_USE] = cpu_use
        features[:, col.TICK_RATE] = 20.0
        d = governor.decide(features, GlobalContext(tick=10 * step))
        assert float(np.sum(governor.work_ms * d.tick_rate / 20)) <= config.budget_in_ms
        assert d.cpu_quota.sum() <= 100.0 * config.cpu_budget
        seen.update(d.tick_rate.tolist())
    assert len(seen) >= 3  # it really throttles


@pytest.mark.parametrize("batched", [False, True])
def test_with_a_calls_budget_the_heuristic_slows_its_urgent_crowd_and_fixed_stays_at_20_hz(
        batched: bool) -> None:
    crowd = [DYING_IN_DANGER] * 12 + [IDLE_AND_SAFE] * 4  # 12 x 20 Hz + 4 x 1 Hz = 244 calls/s
    for kind, want in (("heuristic", 124), ("fixed", 320)):
        config = GovernorConfig(kind=kind, calls_budget=130.0, cpu_budget=2.0)
        features = _world(config, crowd)
        governor = make_governor(config)
        if batched:
            d = governor.decide_batch(features[None], [GlobalContext(tick=100)])[0]
        else:
            d = governor.decide(features, GlobalContext(tick=100))
        assert int(d.tick_rate.sum()) == want
    # heuristic: the 12 urgent NPCs capped at 10 Hz (124 calls/s); the idle ones keep 1 Hz
    assert d.tick_rate.tolist() == [20] * 16  # fixed: today's behaviour whatever the calls budget


def test_make_governor_builds_each_kind_and_names_the_rest() -> None:
    for kind, cls in GOVERNORS.items():
        assert isinstance(make_governor(GovernorConfig(kind=kind)), cls)
    with pytest.raises(ValueError, match=r"^governor\.checkpoint='': the learned governor needs"):
        make_governor(GovernorConfig(kind="learned"))
    config = dataclasses.replace(GovernorConfig(), kind="fixed")
    config.kind = "smart"  # changed after validation
    with pytest.raises(ValueError, match=r"^governor\.kind='smart': no such governor"):
        make_governor(config)


def test_a_malformed_inputs_array_is_named() -> None:
    governor = FixedGovernor(GovernorConfig())
    with pytest.raises(ValueError, match=rf"^features: shape \(4, 3\), expected \(N, {col.NUM_FEATURES}\)"):
        governor.decide(np.zeros((4, 3)), GlobalContext(tick=0))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["fixed", "heuristic"]), envs=st.integers(1, 6), n=st.integers(1, 40),
       whole=st.booleans(), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_decide_batch_gives_each_env_what_decide_gives_it(kind: str, envs: int, n: int, whole: bool,
                                                          seed: int, data: st.DataObject) -> None:
    # whole-percent quotas (the defaults) give the same sums bit for bit; others agree to rounding
    min_quota = 5.0 if whole else data.draw(st.floats(5.0, 25.0))
    max_quota = data.draw(st.integers(5, 100)) * 1.0 if whole else data.draw(st.floats(min_quota, 100.0))
    config = GovernorConfig(kind=kind, min_quota=min_quota, max_quota=max(max_quota, min_quota),
                            cpu_budget=(n * min_quota + 1e-6) / 100.0 + data.draw(st.floats(0.0, 8.0)),
                            gate_threshold=data.draw(st.floats(0.0, 1.0)))
    rng = np.random.default_rng(seed)
    features = rng.random((envs, n, col.NUM_FEATURES), dtype=np.float32)
    features[..., col.ALIVE] = features[..., col.ALIVE] > 0.3
    features[..., col.TICK_RATE] *= 20.0
    contexts = [GlobalContext(tick=7)] * envs
    batch = make_governor(config).decide_batch(features, contexts)
    assert len(batch) == envs
    for b, got in enumerate(batch):
        want = make_governor(config).decide(features[b], contexts[b])
        for field in ("tick_rate", "gates", "llm_priority", "alive"):
            assert np.array_equal(getattr(got, field), getattr(want, field)), field
        assert got.organ_gates.keys() == want.organ_gates.keys() == {"vision"}
        assert np.array_equal(got.organ_gates["vision"], want.organ_gates["vision"])
        if whole:
            assert np.array_equal(got.cpu_quota, want.cpu_quota)
        else:
            np.testing.assert_allclose(got.cpu_quota, want.cpu_quota, rtol=1e-12, atol=1e-12)


def test_decide_batch_names_a_budget_too_small_for_the_living() -> None:
    features = np.ones((2, 4, col.NUM_FEATURES), dtype=np.float32)
    config = GovernorConfig(kind="fixed", cpu_budget=0.1, min_quota=5.0)  # 4 x 5 % > 10 %
    with pytest.raises(ValueError, match=r"^governor\.cpu_budget=0\.1: 4 NPCs at governor\.min_quota=5"):
        FixedGovernor(config).decide_batch(features, [GlobalContext(tick=0)] * 2)


@pytest.mark.parametrize("base", [FixedGovernor, HeuristicGovernor])
def test_a_subclass_that_overrides_decide_keeps_its_rule_in_decide_batch(base: type) -> None:
    class SlowEverything(base):  # type: ignore[misc, valid-type]
        def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
            d = super().decide(features, context)
            d.tick_rate[:] = min(self.config.tick_rates)
            return d

    features = np.ones((3, 4, col.NUM_FEATURES), dtype=np.float32)
    batch = SlowEverything(GovernorConfig()).decide_batch(features, [GlobalContext(tick=0)] * 3)
    assert [d.tick_rate.tolist() for d in batch] == [[min(GovernorConfig().tick_rates)] * 4] * 3
