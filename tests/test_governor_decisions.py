"""Decisions: quotas fitted to the CPU budget, rates to the calls budget, Allocation messages and checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governor.decisions import Decisions, check_allocation, fit_to_budget, fit_to_calls
from nervous.messages import REGIONS, Allocation, Region, decode, encode


def _decisions(n: int = 3) -> Decisions:
    gates = np.zeros((n, len(REGIONS)), dtype=bool)
    gates[0, REGIONS.index(Region.MATH)] = True
    return Decisions(
        tick_rate=np.array([20, 5, 1][:n], dtype=np.int64),
        cpu_quota=np.array([80.0, 25.0, 5.0][:n]),
        gates=gates,
        llm_priority=np.array([9, 3, 0][:n], dtype=np.int64),
        alive=np.array([True, True, False][:n]),
    )


def test_quotas_within_the_budget_are_left_alone() -> None:
    quota = np.array([50.0, 30.0, 5.0])
    assert np.array_equal(fit_to_budget(quota, budget_cores=1.0, min_quota=5.0), quota)


def test_quotas_over_the_budget_shrink_proportionally_above_the_minimum() -> None:
    fitted = fit_to_budget(np.array([100.0, 100.0, 55.0, 5.0]), budget_cores=1.2, min_quota=5.0)
    assert fitted.sum() <= 120.0 and fitted.sum() == pytest.approx(120.0)
    above = fitted - 5.0
    assert above[0] == pytest.approx(above[1]) and above[0] == pytest.approx(above[2] * 95 / 50)
    assert fitted[3] == 5.0


LEVELS = [1, 2, 5, 10, 20]


def test_rates_within_the_calls_budget_or_without_one_are_left_alone() -> None:
    rate = np.array([20, 20, 5, 1])
    alive, urgency = np.ones(4, dtype=bool), np.zeros(4)
    assert np.array_equal(fit_to_calls(rate, alive, LEVELS, 46.0, urgency, urgency), rate)
    assert np.array_equal(fit_to_calls(rate, alive, LEVELS, 0.0, urgency, urgency), rate)


def test_over_the_calls_budget_the_fastest_are_capped_and_the_most_urgent_get_the_next_level_back() -> None:
    n = 96
    rate, alive = np.full(n, 20), np.ones(n, dtype=bool)
    priority, reserve = np.full(n, 10.0), np.linspace(1.0, 0.0, n)  # the last NPCs are the neediest
    fitted = fit_to_calls(rate, alive, LEVELS, 960.0, priority, reserve)
    assert fitted.tolist() == [10] * n  # 96 x 20 Hz = 1920 calls/s: all at 10 Hz fit exactly
    fitted = fit_to_calls(rate, alive, LEVELS, 1000.0, priority, reserve)
    assert fitted.sum() == 1000 and fitted[-4:].tolist() == [20] * 4 and (fitted[:-4] == 10).all()
    priority[:2] = 0.0  # priority first: the two least urgent are capped whatever their reserve
    rate[:2] = 10
    fitted = fit_to_calls(rate, alive, LEVELS, 1000.0, priority, reserve)
    assert fitted[:2].tolist() == [10, 10] and fitted.sum() <= 1000


def test_slower_npcs_and_dead_ones_keep_their_rates_and_an_impossible_budget_gives_the_slowest() -> None:
    rate = np.array([20, 20, 1, 20, 5])
    alive = np.array([True, True, True, False, True])
    zeros = np.zeros(5)
    fitted = fit_to_calls(rate, alive, LEVELS, 20.0, zeros, zeros)  # 46 living calls/s -> 20
    assert fitted.tolist() == [5, 5, 1, 20, 5] and fitted[alive].sum() <= 20  # cap 5 Hz: 5 + 5 + 1 + 5
    assert fit_to_calls(rate, alive, LEVELS, 2.0, zeros, zeros).tolist() == [1, 1, 1, 20, 1]


@settings(max_examples=200, deadline=None)
@given(rates=st.lists(st.sampled_from(LEVELS), min_size=1, max_size=64), budget=st.floats(0.5, 2000.0),
       seed=st.integers(0, 2**31 - 1))
def test_fitted_rates_fit_the_calls_budget_never_rise_and_stay_levels(rates: list[int], budget: float,
                                                                      seed: int) -> None:
    rng = np.random.default_rng(seed)
    rate = np.array(rates)
    alive = rng.random(len(rate)) > 0.2
    fitted = fit_to_calls(rate, alive, LEVELS, budget, rng.integers(0, 11, len(rate)), rng.random(len(rate)))
    assert set(fitted.tolist()) <= set(LEVELS) and (fitted <= rate).all()
    assert np.array_equal(fitted[~alive], rate[~alive])
    if alive.sum() * min(LEVELS) <= budget:
        assert fitted[alive].sum() <= budget
    else:
        assert (fitted[alive] == np.minimum(rate[alive], min(LEVELS))).all()


def test_a_budget_below_the_minimum_quotas_is_named() -> None:
    with pytest.raises(ValueError, match=r"^governor\.cpu_budget=0\.1: 3 NPCs at governor\.min_quota=5 %"):
        fit_to_budget(np.full(3, 50.0), budget_cores=0.1, min_quota=5.0)


@settings(max_examples=300, deadline=None)
@given(
    quota=st.lists(st.floats(0.0, 100.0), min_size=0, max_size=64),
    min_quota=st.floats(5.0, 20.0),
    spare=st.floats(0.0, 40.0),
)
def test_fitted_quotas_never_exceed_the_budget_nor_fall_below_the_minimum(
    quota: list[float], min_quota: float, spare: float
) -> None:
    budget_cores = (min_quota * len(quota) + 1e-6) / 100.0 + spare
    fitted = fit_to_budget(np.array(quota), budget_cores, min_quota)
    assert fitted.sum() <= 100.0 * budget_cores
    assert np.all(fitted >= min_quota)
    assert np.all(fitted <= np.maximum(np.array(quota), min_quota) + 1e-9)  # never raised above asked


def test_decisions_check_their_shapes() -> None:
    d = _decisions()
    with pytest.raises(ValueError, match=r"^decisions\.gates: shape \(3, 5\)"):
        Decisions(d.tick_rate, d.cpu_quota, d.gates[:, :5], d.llm_priority, d.alive)
    with pytest.raises(ValueError, match=r"^decisions\.tick_rate: shape \(2,\)"):
        Decisions(d.tick_rate[:2], d.cpu_quota, d.gates, d.llm_priority, d.alive)


def test_allocations_round_trip_through_the_wire() -> None:
    allocations = _decisions().to_allocations(npc_ids=[4, 5, 6], tick=120)
    assert [a.npc for a in allocations] == [4, 5]  # the dead row sends nothing
    first = allocations[0]
    assert first.tick == 120 and first.tick_rate == 20 and first.cpu_quota == 80.0 and first.llm_priority == 9
    assert first.gates[Region.MATH] and not first.gates[Region.HAZARD] and set(first.gates) == set(REGIONS)
    for allocation in allocations:
        assert decode(encode(allocation), Allocation, "dev.thalamus.governor.allocate") == allocation


def test_only_changed_rows_are_sent_when_asked() -> None:
    before = _decisions()
    after = _decisions()
    assert after.to_allocations([4, 5, 6], tick=1, since=before) == []
    after.cpu_quota[0] += 0.2  # below QUOTA_TOLERANCE: no message
    after.llm_priority[1] = 4
    assert [a.npc for a in after.to_allocations([4, 5, 6], tick=1, since=before)] == [5]
    after.gates[0, REGIONS.index(Region.FOOD)] = True
    after.alive[2] = True  # a respawned NPC is sent, whatever its decision was before
    assert [a.npc for a in after.to_allocations([4, 5, 6], tick=1, since=before)] == [4, 5, 6]


def test_an_allocation_for_an_unknown_npc_or_tick_rate_is_named() -> None:
    allocation = _decisions().to_allocations([4, 5, 6], tick=1)[0]
    check_allocation(allocation, npc_ids=[4, 5, 6], tick_rates=[1, 2, 5, 10, 20])
    with pytest.raises(ValueError, match=r"^allocation\.npc=4: no such NPC \(known: 0\.\.3\)$"):
        check_allocation(allocation, npc_ids=range(4), tick_rates=[1, 2, 5, 10, 20])
    message = r"^allocation\.tick_rate=20: not one of the tick rates \[1, 2, 5, 10\]$"
    with pytest.raises(ValueError, match=message):
        check_allocation(allocation, npc_ids=[4], tick_rates=[1, 2, 5, 10])
