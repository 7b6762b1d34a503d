"""Wave collapse: the combination rule's properties, windows and events."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nervous.cells import CellBank, CellConfig, WaveArrays
from nervous.collapse import BatchCollapse, CollapseConfig, WaveCollapse, combine
from nervous.messages import REGIONS, Region, Wave
from world.tiles import Proprio, Tile

conf = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
confs = st.lists(conf, min_size=1, max_size=8)


@given(confs)
def test_combination_lies_in_unit_interval_and_above_the_strongest(cs: list[float]) -> None:
    c = float(combine(cs))
    assert 0.0 <= c <= 1.0
    assert c >= max(cs) - 1e-12


@given(conf)
def test_single_wave_combines_to_itself(c: float) -> None:
    assert float(combine([c])) == pytest.approx(c, abs=1e-12)


@given(confs, st.randoms())
def test_combination_is_order_invariant(cs: list[float], rnd) -> None:
    shuffled = cs[:]
    rnd.shuffle(shuffled)
    assert float(combine(shuffled)) == pytest.approx(float(combine(cs)), abs=1e-12)


@given(confs, st.integers(min_value=0, max_value=7), conf)
def test_combination_is_monotone_in_each_confidence(cs: list[float], i: int, bump: float) -> None:
    i %= len(cs)
    higher = cs[:]
    higher[i] = max(cs[i], bump)
    assert float(combine(higher)) >= float(combine(cs)) - 1e-12


def wave(cell: str, c: float, tick: int, npc: int = 1, region: Region = Region.MATH) -> Wave:
    return Wave(cell=cell, npc=npc, region=region, confidence=c, value=0.0, tick=tick)


def test_two_cells_collapse_once_and_rearm() -> None:
    wc = WaveCollapse(CollapseConfig(window_ticks=3, threshold=0.75, min_cells=2))
    assert wc.add(wave("math", 0.6, 1)) is None
    event = wc.add(wave("calculate", 0.5, 2))
    assert event is not None and event.confidence == pytest.approx(0.8)
    assert event.cells == ["calculate", "math"] and event.region == Region.MATH
    assert wc.add(wave("calculate", 0.5, 3)) is None  # still collapsed: no repeat
    assert wc.combined(1, Region.MATH, 4) == pytest.approx(0.5)  # the math wave expired
    assert wc.add(wave("math", 0.6, 4)) is None  # the combination fell below: re-armed ...
    wc.expire(10)
    assert wc.add(wave("math", 0.7, 10)) is None
    assert wc.add(wave("calculate", 0.7, 11)) is not None  # ... and fires again


def test_one_cell_cannot_amplify_itself_and_regions_and_npcs_stay_apart() -> None:
    wc = WaveCollapse(CollapseConfig(threshold=0.75, min_cells=2))
    assert wc.add(wave("math", 0.6, 1)) is None
    assert wc.add(wave("math", 0.6, 2)) is None
    assert wc.combined(1, Region.MATH, 2) == pytest.approx(0.6)
    assert wc.add(wave("smell", 0.9, 2, region=Region.FOOD)) is None
    assert wc.add(wave("calc", 0.9, 2, npc=2)) is None


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), conf, st.integers(0, 20)), max_size=30))
def test_combined_equals_the_rule_over_live_waves(waves) -> None:
    window = 3
    wc = WaveCollapse(CollapseConfig(window_ticks=window, threshold=1.0, min_cells=5))
    latest: dict[str, tuple[float, int]] = {}
    for cell, c, tick in waves:
        wc.add(wave(cell, c, tick))
        if cell not in latest or latest[cell][1] <= tick:
            latest[cell] = (c, tick)
    now = max((t for _, _, t in waves), default=0)
    live = [c for c, t in latest.values() if 0 <= now - t < window]
    expected = float(combine(live)) if live else 0.0
    assert wc.combined(1, Region.MATH, now) == pytest.approx(expected, abs=1e-9)


def arrays(confidence: np.ndarray, cells=("math", "calc"), regions=(Region.MATH, Region.MATH), tick=0):
    conf = np.asarray(confidence, dtype=np.float32)
    return WaveArrays(
        tick=tick,
        cells=cells,
        regions=regions,
        value_scale=np.ones(len(cells), np.float32),
        confidence=conf,
        value=np.zeros_like(conf),
        fired=conf >= 0.05,
    )


def test_batch_collapse_matches_the_rule_and_expires() -> None:
    bc = BatchCollapse(("math", "calc"), (Region.MATH, Region.MATH), CollapseConfig(window_ticks=2))
    math = REGIONS.index(Region.MATH)
    combined, new = bc.update(arrays([[0.6, 0.0], [0.6, 0.0]], tick=0))
    assert combined[0, math] == pytest.approx(0.6) and not new.any()
    combined, new = bc.update(arrays([[0.0, 0.5], [0.0, 0.0]], tick=1))
    assert combined[0, math] == pytest.approx(0.8) and new[0, math] and not new[1].any()
    combined, new = bc.update(arrays([[0.0, 0.5], [0.0, 0.0]], tick=2))
    assert combined[0, math] == pytest.approx(0.5)  # tick-0 math wave out of the window
    assert combined[1, math] == 0.0 and not new.any()
    assert (combined[:, [i for i, r in enumerate(REGIONS) if r != Region.MATH]] == 0).all()


def test_batch_collapse_equals_the_product_over_every_cell_to_the_bit() -> None:
    # BatchCollapse multiplies each region's cells' misses alone; the rule's dense form multiplies all C
    # columns per region with the other regions' cells read as 1.0 (what it computed before)
    bank = CellBank(CellConfig())
    bc = BatchCollapse(bank.names, bank.regions)
    member = np.array([[r == reg for r in bank.regions] for reg in REGIONS])
    rng = np.random.default_rng(0)
    conf_live = np.zeros((500, len(bank.names)), np.float32)
    tick_live = np.full(conf_live.shape, -100)
    events = 0
    for tick in range(60):
        conf = (rng.random(conf_live.shape) ** 3).astype(np.float32)
        fired = (conf >= 0.05) & (rng.random(conf.shape) < 0.5)
        combined, new = bc.update(WaveArrays(tick=tick, cells=bank.names, regions=bank.regions,
                                             value_scale=bank.value_scale, confidence=conf, value=conf,
                                             fired=fired))
        conf_live[fired], tick_live[fired] = conf[fired], tick
        live = tick - tick_live < bc.config.window_ticks
        miss = np.where(live, 1.0 - conf_live.astype(np.float64), 1.0)
        dense = (1.0 - np.prod(np.where(member, miss[:, None, :], 1.0), axis=2)).astype(np.float32)
        assert np.array_equal(combined, dense)
        events += int(new.sum())
    assert events > 0


def test_batch_collapse_runs_on_a_cell_bank() -> None:
    bank = CellBank(CellConfig())
    bc = BatchCollapse(bank.names, bank.regions)
    views = np.zeros((3, 7, 7), np.uint8)
    proprio = np.zeros((3, 20), np.float32)
    proprio[:, :2] = 1.0
    views[0, 3, 3] = 4  # fire underfoot
    combined, new = bc.update(bank.step(views, proprio, 0))
    assert combined.shape == (3, len(REGIONS))
    assert combined[0, REGIONS.index(Region.HAZARD)] == pytest.approx(1.0)
    assert not new.any()  # the hazard region has one cell: min_cells=2 is not met


def test_the_math_region_collapses_when_a_door_is_in_sight_and_a_key_in_hand() -> None:
    bank = CellBank(CellConfig())
    bc = BatchCollapse(bank.names, bank.regions)
    math = REGIONS.index(Region.MATH)
    views = np.zeros((3, 7, 7), np.uint8)
    proprio = np.zeros((3, 20), np.float32)
    proprio[:, :2] = 1.0
    views[:2, 0, 3] = Tile.DOOR  # three north of rows 0 and 1: vault 0.7
    proprio[0, Proprio.HAS_KEY] = 1.0  # key 0.9: 1 - 0.3 * 0.1 = 0.97
    proprio[2, Proprio.HAS_KEY] = 1.0  # a key but no door: one cell, no collapse
    combined, new = bc.update(bank.step(views, proprio, 0))
    assert combined[0, math] == pytest.approx(0.97) and new[0, math]
    assert combined[1, math] == pytest.approx(0.7) and combined[2, math] == pytest.approx(0.9)
    assert new.sum() == 1
    _, new = bc.update(bank.step(views, proprio, 1))
    assert not new.any()  # still collapsed: no repeat
    views[:] = Tile.EMPTY
    for tick in (2, 3, 4):  # the door out of sight until its last wave leaves the window: re-armed
        combined, _ = bc.update(bank.step(views, proprio, tick))
    assert combined[0, math] == pytest.approx(0.9)
    views[:2, 0, 3] = Tile.DOOR
    _, new = bc.update(bank.step(views, proprio, 5))
    assert new[0, math] and new.sum() == 1


def test_the_food_region_collapses_when_a_hungry_npc_saw_food_lately() -> None:
    bank = CellBank(CellConfig())
    bc = BatchCollapse(bank.names, bank.regions)
    food = REGIONS.index(Region.FOOD)
    views = np.zeros((3, 7, 7), np.uint8)
    proprio = np.zeros((3, 20), np.float32)
    proprio[:, :2] = 1.0
    views[:2, 0, 3] = Tile.FOOD  # rows 0 and 1 see food; row 2 never does
    bc.update(bank.step(views, proprio, 0))
    views[:] = Tile.EMPTY
    proprio[[0, 2], Proprio.LIFEFORCE] = 0.3  # rows 0 and 2 hungry, row 1 sated
    for tick in range(1, 11):  # the food out of view for ten ticks
        combined, new = bc.update(bank.step(views, proprio, tick))
        if new[0, food]:
            break
    assert new[0, food] and new[:, food].sum() == 1, combined[:, food]
    assert tick == 1  # hunger 0.775 with the remembered sighting: 1 - 0.225 * 0.41 > 0.75
    # sated: the memory and the tick-0 smell wave (1 / (1 + 3), still in the window), no hunger
    assert combined[1, food] == pytest.approx(1 - (1 - 0.6 * 0.99) * (1 - 0.25), rel=1e-4)
    assert combined[2, food] == pytest.approx(0.775, rel=1e-4)  # hungry, no food ever seen: one cell
