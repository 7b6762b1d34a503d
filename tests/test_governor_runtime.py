"""The governor in the in-process runtime: tick-rate semantics, lifeforce of thinking, quotas, the budget."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from governor.baselines import FixedGovernor, make_governor
from governor.config import GovernorConfig
from governor.costs import CostModel
from governor.decisions import Decisions
from governor.inputs import GlobalContext
from governor.runtime import BrainClock, GovernedReflex
from nervous.cells import CellBank
from nervous.lifeforce import LifeforceConfig
from nervous.messages import REGIONS, Region
from nervous.nerves import NerveBank
from tests.cortex_fixtures import hand_made_world
from train.nervous_link import Reflexes
from world import GridWorld, stage_config
from world.tiles import A


class RateGovernor:
    """A governor that holds every NPC at one tick rate and quota (for the semantics tests)."""

    def __init__(self, config: GovernorConfig, rate: int, quota: float = 100.0) -> None:
        self.fixed = FixedGovernor(config)
        self.rate, self.quota = rate, quota

    def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
        d = self.fixed.decide(features, context)
        d.tick_rate[:] = self.rate
        d.cpu_quota[d.alive] = self.quota
        return d


class CountingNerves(NerveBank):
    """The real nerves, counting how often they run."""

    calls = 0

    def apply(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        CountingNerves.calls += 1
        return super().apply(*args, **kwargs)


def _config(**changes: object) -> GovernorConfig:
    return dataclasses.replace(GovernorConfig(), **changes)


def _governed(rate: int, quota: float = 100.0, lifeforce: LifeforceConfig | None = None,
              nerves: NerveBank | None = None, costs: CostModel | None = None,
              config: GovernorConfig | None = None) -> GovernedReflex:
    config = config or _config(cpu_budget=4.0)
    extra = {"costs": costs} if costs is not None else {}
    return GovernedReflex(config, lifeforce or LifeforceConfig(), nerves,
                          governor_factory=lambda c: RateGovernor(c, rate, quota), **extra)


def test_brain_clock_calls_a_5_hz_brain_once_every_4_world_ticks() -> None:
    clock = BrainClock((1, 2))
    clock.set_rates(np.array([[5, 20]]))
    calls = np.zeros((1, 2), dtype=int)
    for _ in range(40):
        due = clock.due()
        calls += due
        clock.advance(due)
    assert calls.tolist() == [[10, 40]]


def test_brain_clock_staggers_npcs_over_the_period_at_the_same_rate() -> None:
    n, ticks = 96, 80
    clock = BrainClock((2, n))
    clock.advance(clock.due())  # all born together at tick 0: every brain at once
    for rate in (5, 2, 1, 10, 20):
        clock.set_rates(np.full((2, n), rate))
        period = 20 // rate
        calls = np.zeros((2, n), dtype=int)
        per_tick = []
        for _ in range(ticks):
            due = clock.due()
            per_tick.append(int(due[0].sum()))
            calls += due
            clock.advance(due)
        # the same rate (each brain once a period) with n / period wake-ups at every tick, not n at one
        assert max(per_tick[period:]) <= -(-n // period) and min(per_tick[period:]) >= n // period
        assert (calls >= ticks // period).all() and (calls <= ticks // period + 1).all()
    clock.set_rates(np.full((2, n), 5))
    clock.reset(np.ones((2, n), dtype=bool))  # an episode restarts at 5 Hz: all born at one tick
    born = []
    for _ in range(4):
        due = clock.due()
        born.append(due.copy())
        clock.advance(due)
    born = np.array(born)
    assert born.sum(axis=(1, 2)).tolist() == [2 * n // 4] * 4 and (born.sum(axis=0) == 1).all()


def test_brain_clock_faster_rate_shortens_the_wait_and_reset_calls_at_the_first_own_tick() -> None:
    clock = BrainClock((1, 1))
    clock.set_rates(np.array([[1]]))
    clock.advance(clock.due())  # called at tick 0; next at tick 20
    assert not clock.due().any()
    clock.set_rates(np.array([[10]]))  # period 2: due within one tick
    clock.advance(np.zeros((1, 1), bool))
    assert clock.due().all()
    clock.advance(clock.due())  # called at tick 2; tick 3 now
    clock.reset(np.ones((1, 1), bool))  # born at tick 3: its first own tick at 10 Hz is 4
    assert not clock.due().any()
    clock.advance(np.zeros((1, 1), bool))
    assert clock.due().all()
    clock.set_rates(np.array([[20]]))
    clock.reset(np.ones((1, 1), bool))  # at 20 Hz every tick is its own: at once
    assert clock.due().all()
    with pytest.raises(ValueError, match="divide 20"):
        clock.set_rates(np.array([[3]]))


def test_an_npc_at_5_hz_calls_its_brain_every_4_ticks_stays_between_and_nerves_run_every_tick() -> None:
    world = GridWorld(stage_config(0), num_envs=2, seed=3)
    CountingNerves.calls = 0
    governed = _governed(5, nerves=CountingNerves())
    rng = np.random.default_rng(0)
    npc = np.arange(world.num_npcs)
    calls = np.zeros((world.num_envs, world.num_npcs), dtype=int)
    for t in range(24):
        proposed = rng.integers(0, 5, size=(world.num_envs, world.num_npcs))
        final, not_chosen = governed(world, proposed)
        kept = ~governed.last_overridden  # a nerve may override any tick's action
        # born at tick 0: every brain at once; then NPC n at its own ticks, t % 4 == n % 4 (staggered)
        due = np.broadcast_to((t == 0) | (t % 4 == npc % 4), calls.shape)
        calls += due
        assert (governed.last_action[due] == proposed[due]).all()
        assert not not_chosen[due & kept].any()
        assert not_chosen[~due].all()  # the brain did not choose these: kept out of the PPO loss
        assert (final[~due & kept] == A.STAY).all()
        world.step(final)
    assert CountingNerves.calls == 24  # nerves: every world tick
    stats = governed.pop_stats()
    # 6 calls a second's worth of ticks per NPC: its birth call and then one every 4 ticks
    assert stats["governor/brain_calls_per_npc_s"] == pytest.approx(calls.mean() / 24 * 20)
    assert set(calls.ravel().tolist()) <= {6, 7}  # 24 ticks: the birth call plus 5 or 6 own ticks
    assert stats["governor/mean_tick_rate_hz"] == pytest.approx(5.0)


def test_every_brain_call_costs_lifeforce_so_a_slower_brain_keeps_more() -> None:
    lifeforce = LifeforceConfig(per_brain_call=0.002)
    worlds = {rate: GridWorld(stage_config(0), num_envs=1, seed=5) for rate in (20, 5)}
    governed = {rate: _governed(rate, lifeforce=lifeforce) for rate in worlds}
    for _ in range(21):
        for rate, world in worlds.items():
            final, _ = governed[rate](world, np.full((1, world.num_npcs), A.STAY))
            world.step(final)
    # 21 calls against 6 (the birth call and one in each 4 ticks after, staggered): 15 extra calls' worth
    # of lifeforce spent at 20 Hz
    spent = worlds[5].lifeforce - worlds[20].lifeforce
    assert spent == pytest.approx(np.full_like(spent, 15 * 0.002), abs=1e-5)


def test_fixed_governor_reproduces_the_ungoverned_reflexes_exactly() -> None:
    lifeforce = LifeforceConfig()
    worlds = [GridWorld(stage_config(2), num_envs=3, seed=11) for _ in range(2)]
    old = Reflexes(NerveBank(), lifeforce)
    new = GovernedReflex(GovernorConfig(), lifeforce, NerveBank())
    rng = np.random.default_rng(1)
    for _ in range(120):
        proposed = rng.integers(0, 5, size=(3, worlds[0].num_npcs))
        a, over_a = old(worlds[0], proposed)
        b, over_b = new(worlds[1], proposed)
        assert a.tolist() == b.tolist()
        assert (over_b == over_a).all()
        for world, actions in zip(worlds, (a, b), strict=True):
            world.step(actions)
    assert np.array_equal(worlds[0].lifeforce, worlds[1].lifeforce)


def test_a_small_quota_throttles_brain_calls_and_keeps_cpu_under_it() -> None:
    costs = CostModel(reflex_tick_s=100e-6, brain_call_s=2e-3, escalation_s=0.0)  # 20 Hz would be 4.2 %
    world = GridWorld(stage_config(0), num_envs=2, seed=2)
    governed = _governed(20, quota=5.0, costs=costs)
    for _ in range(400):
        final, _ = governed(world, np.full((2, world.num_npcs), A.STAY))
        world.step(final)
    stats = governed.pop_stats()
    cpu_share = stats["governor/cpu_s_per_npc_min"] / 60.0
    assert cpu_share <= 0.05 * 1.01  # within the quota
    assert stats["governor/throttled_fraction"] == 0.0  # 4.2 % fits in 5 %
    governed = _governed(20, quota=5.0, costs=dataclasses.replace(costs, brain_call_s=4e-3))
    world = GridWorld(stage_config(0), num_envs=2, seed=2)
    for _ in range(400):
        final, _ = governed(world, np.full((2, world.num_npcs), A.STAY))
        world.step(final)
    stats = governed.pop_stats()
    assert stats["governor/throttled_fraction"] > 0.3  # 8.2 % asked of a 5 % quota
    assert 0.05 * 0.95 <= stats["governor/cpu_s_per_npc_min"] / 60.0 <= 0.05 * 1.01  # all of it, no more


@pytest.mark.parametrize("kind", ["fixed", "heuristic", "budget"])
def test_the_cpu_budget_is_never_exceeded_in_any_env(kind: str) -> None:
    config = _config(kind=kind, cpu_budget=1.0)
    world = GridWorld(stage_config(3), num_envs=3, seed=4)  # 16 NPCs on one core each env
    bank = CellBank()
    governed = GovernedReflex(config, LifeforceConfig(), NerveBank(), cells=bank,
                              governor_factory=make_governor)
    rng = np.random.default_rng(4)
    decisions_seen = 0
    for _ in range(200):
        bank.step(world.views.reshape(-1, world.V, world.V),
                  world.proprio.reshape(-1, world.proprio.shape[-1]), world.ticks)
        final, _ = governed(world, rng.integers(0, 5, size=(3, world.num_npcs)))
        world.step(final)
        for decision in governed.decisions:
            decisions_seen += 1
            assert decision.cpu_quota.sum() <= 100.0 * config.cpu_budget + 1e-9
    assert decisions_seen >= 3 * 20


def test_the_viewer_fields_show_what_the_governor_set_and_flash_a_gate_that_opened() -> None:
    class GateGovernor(RateGovernor):
        def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
            d = super().decide(features, context)
            d.gates[:, 3] = context.tick >= 10  # region 3 opens at the second governor tick
            d.llm_priority[:] = 7
            return d

    world = GridWorld(stage_config(0), num_envs=2, seed=1)
    governed = GovernedReflex(_config(cpu_budget=4.0), LifeforceConfig(),
                              governor_factory=lambda c: GateGovernor(c, 10, 30.0))
    assert governed.governed() == {}
    for tick in range(11):
        final, _ = governed(world, np.zeros((2, world.num_npcs), dtype=np.int64))
        world.step(final)
        fields = governed.governed()
        assert fields["tick_rate"].tolist() == [[10.0] * world.num_npcs] * 2
        assert (fields["cpu_quota"] == 30.0).all() and (fields["llm_priority"] == 7).all()
        assert (fields["gates"] == (8 if tick >= 10 else 0)).all()
        assert fields["gate_flash"].all() == (tick >= 10)
        assert (fields["cpu_use"] > 0).all() and (fields["cpu_use"] < 0.1).all()  # cores
        assert (fields["escalations"] == 0).all() and (fields["escalation_ago"] == -1.0).all()


class RecordingEscalator:
    """An escalator that records what the runtime asks of it and escalates every request."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, np.ndarray]] = []

    def escalate(self, world: GridWorld, requests: np.ndarray, priority: np.ndarray, confidence: np.ndarray,
                 waves: object) -> np.ndarray:
        self.asked.append((int(world.ticks), requests.copy()))
        return requests.any(axis=-1)

    def follow(self, world: GridWorld, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return actions, np.zeros(actions.shape, dtype=bool)

    def reset(self, rows: np.ndarray) -> None:
        pass


def test_a_collapse_between_governor_ticks_waits_for_the_gate_it_opens_and_escalates_once() -> None:
    world = hand_made_world(["#######", "#@....#", "#.....#", "###D###", "#.....#", "#######"])
    bank = CellBank()
    escalator = RecordingEscalator()
    lifeforce = LifeforceConfig(per_escalation=0.25)
    governed = GovernedReflex(_config(kind="heuristic"), lifeforce, cells=bank, escalator=escalator)
    math = list(REGIONS).index(Region.MATH)
    spent = []
    for tick in range(25):
        if tick == 3:  # a key in hand with the door in sight: the math region collapses at tick 3
            world.has_key[0, 0] = True
            world.refresh()
        bank.step(world.views.reshape(-1, world.V, world.V), world.proprio.reshape(1, -1), world.ticks)
        before = float(world.lifeforce[0, 0])
        final, _ = governed(world, np.full((1, 1), A.STAY))
        world.step(final)
        spent.append(before - float(world.lifeforce[0, 0]))
    # the gate was closed at the governor tick 0 and opened at tick 10, from the collapse held since 3
    asked = [(tick, requests[0, 0].nonzero()[0].tolist()) for tick, requests in escalator.asked]
    assert asked == [(10, [math])]
    assert spent[10] == pytest.approx(spent[9] + 0.25, abs=1e-5)  # the escalation was charged, once
    assert governed.pop_stats()["governor/escalations_per_100_ticks"] == pytest.approx(100 / 25)
    fields = governed.governed()  # the viewer's cortex line: one escalation, 14 ticks (0.7 s) ago
    assert fields["escalations"].tolist() == [[1]] and fields["escalation_ago"][0, 0] == pytest.approx(0.7)
