"""Each cell on hand-made senses, and the cell bank's batch outputs."""

import numpy as np
import pytest

from nervous.cells import CellBank, CellConfig, make_cell
from nervous.collapse import CollapseConfig
from nervous.messages import Region, WaveBatch, decode, encode
from tests.nervous_senses import at, senses
from world.tiles import Action, Proprio, Tile


def step(name: str, views: np.ndarray, proprio: np.ndarray, tick: int = 0, cell=None):
    cell = cell or make_cell(name)
    conf, value = cell.step(views, proprio, tick)
    assert conf.dtype == np.float32 and conf.shape == (len(views),)
    assert np.all((conf >= 0) & (conf <= 1))
    return conf, value


def test_battery_walks_ok_low_critical_with_hysteresis() -> None:
    views, proprio = senses(1)
    cell = make_cell("battery")
    levels = [1.0, 0.3, 0.32, 0.36, 0.09, 0.12, 0.16, 0.5]
    confs = []
    for tick, level in enumerate(levels):
        proprio[:, Proprio.BATTERY] = level
        conf, value = step("battery", views, proprio, tick, cell)
        confs.append(float(conf[0]))
        assert value[0] == pytest.approx(level)
    assert confs[0] == 0.0  # OK
    assert 0.3 <= confs[1] < 0.9  # entered LOW at 0.3
    assert confs[2] > 0.0  # 0.32 is inside the hysteresis band: still LOW
    assert confs[3] == 0.0  # 0.36 > 0.3 + 0.05: back to OK
    assert min(confs[4], confs[5]) == pytest.approx(0.9)  # CRITICAL, held at 0.12
    assert 0.0 < confs[6] < 0.89  # 0.16 leaves CRITICAL for LOW
    assert confs[7] == 0.0


def test_battery_uses_the_lower_of_lifeforce_and_battery() -> None:
    views, proprio = senses(2)
    proprio[0, Proprio.LIFEFORCE] = 0.05
    conf, value = step("battery", views, proprio)
    assert conf[0] >= 0.9 - 1e-6 and conf[1] == 0.0
    assert value[0] == pytest.approx(0.05)


def test_proximity_reports_blocked_sides_as_bitmask() -> None:
    views, proprio = senses(3)
    views[0][at(7, -1, 0)] = Tile.WALL  # north
    views[1][at(7, 0, 1)] = Tile.NPC  # east
    views[1][at(7, 0, -1)] = Tile.WATER  # west
    views[2][at(7, 0, 1)] = Tile.FIRE  # passable: not a collision
    views[2][at(7, -2, 0)] = Tile.WALL  # not adjacent
    conf, value = step("proximity", views, proprio)
    np.testing.assert_allclose(conf, [0.25, 0.5, 0.0])
    np.testing.assert_array_equal(value, [1, 4 + 8, 0])


def test_smell_points_to_the_nearest_food() -> None:
    views, proprio = senses(4)
    views[0][at(7, 0, 2)] = Tile.FOOD  # two east
    views[0][at(7, -3, -3)] = Tile.FOOD  # farther
    views[1][at(7, 1, 0)] = Tile.FOOD  # one south
    views[2][at(7, 0, 0)] = Tile.FOOD  # underfoot
    conf, value = step("smell", views, proprio)
    np.testing.assert_allclose(conf, [1 / 3, 0.5, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(value, [Action.EAST, Action.SOUTH, Action.INTERACT, 0])


def test_hazard_sees_fire_and_remembers_it_decaying() -> None:
    views, proprio = senses(2)
    cell = make_cell("hazard")
    views[0][at(7, 0, 0)] = Tile.FIRE
    views[1][at(7, -1, 0)] = Tile.FIRE
    conf, value = step("hazard", views, proprio, 0, cell)
    np.testing.assert_allclose(conf, [1.0, 0.5])
    assert value[1] == Action.NORTH
    views[:] = Tile.EMPTY
    conf, value = step("hazard", views, proprio, 1, cell)
    np.testing.assert_allclose(conf, [0.5, 0.25])  # decayed memory
    np.testing.assert_array_equal(value, [0, 0])
    cell.reset_npcs(np.array([True, False]))
    conf, _ = step("hazard", views, proprio, 2, cell)
    np.testing.assert_allclose(conf, [0.0, 0.125])


def test_social_sees_npcs_signals_and_heard_calls() -> None:
    views, proprio = senses(4)
    views[0][at(7, 0, 1)] = Tile.NPC
    views[0][at(7, 2, 2)] = Tile.NPC
    views[1][at(7, 0, 1)] = Tile.NPC_SIGNAL
    proprio[2, Proprio.HEARD_SIGNAL] = 0.75
    conf, value = step("social", views, proprio)
    np.testing.assert_allclose(conf, [0.25, 0.5, 0.75, 0.0])
    np.testing.assert_array_equal(value, [2, 1, 0, 0])


def test_vault_sees_the_nearest_door_or_lock_without_memory() -> None:
    views, proprio = senses(4)
    cell = make_cell("vault")
    views[0][at(7, 0, 1)] = Tile.DOOR  # next to it
    views[1][at(7, -3, 3)] = Tile.LOCK  # a corner of the view
    views[1][at(7, 3, 3)] = Tile.DOOR  # as far
    views[2][at(7, 0, 2)] = Tile.KEY  # a key is no entrance
    views[3][at(7, 1, 1)] = Tile.WALL
    conf, value = step("vault", views, proprio, 0, cell)
    np.testing.assert_allclose(conf, [0.8, 0.6 + 0.4 / 7, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(value, [1, 6, -1, -1])
    views[:] = Tile.EMPTY
    conf, _ = step("vault", views, proprio, 1, cell)
    assert not conf.any()  # a sighting, not a memory


def test_key_in_hand_or_seen_lately_decaying() -> None:
    views, proprio = senses(3)
    cell = make_cell("key", CellConfig(key_memory=0.5))
    proprio[0, Proprio.HAS_KEY] = 1.0
    views[1][at(7, 2, -1)] = Tile.KEY
    conf, value = step("key", views, proprio, 0, cell)
    np.testing.assert_allclose(conf, [0.9, 0.6, 0.0])
    np.testing.assert_array_equal(value, [1, 0, 0])
    views[:] = Tile.EMPTY
    conf, _ = step("key", views, proprio, 1, cell)
    np.testing.assert_allclose(conf, [0.9, 0.3, 0.0])  # the sighting decays, the key in hand stays
    cell.reset_npcs(np.array([False, True, False]))
    conf, _ = step("key", views, proprio, 2, cell)
    np.testing.assert_allclose(conf, [0.9, 0.0, 0.0])


def test_key_wanted_at_a_door_without_a_key_and_only_when_asked_for() -> None:
    views, proprio = senses(5)
    for row in (0, 1, 2, 3):
        views[row][at(7, 0, 3)] = Tile.DOOR  # a door at the view's edge
    views[4][at(7, 0, 3)] = Tile.LOCK  # a lock wants no key
    proprio[1, Proprio.HAS_KEY] = 1.0
    views[2][at(7, -1, 0)] = Tile.KEY
    off, _ = step("key", views, proprio, 0, make_cell("key"))
    np.testing.assert_allclose(off, [0.0, 0.9, 0.6, 0.0, 0.0])  # default 0: a door alone asks nothing
    cell = make_cell("key", CellConfig(key_wanted=0.5))
    conf, value = step("key", views, proprio, 0, cell)
    np.testing.assert_allclose(conf, [0.5, 0.9, 0.6, 0.5, 0.0])  # a held or known key reads as before
    np.testing.assert_array_equal(value, [0, 1, 0, 0, 0])
    views[0][at(7, 0, 3)] = Tile.EMPTY  # the door out of sight: wanted no more
    conf, _ = step("key", views, proprio, 1, cell)
    assert conf[0] == 0.0 and conf[3] == 0.5
    # with the vault cell the math region collapses at a door whose key the NPC does not know
    bank = CellBank(CellConfig(key_wanted=0.5))
    waves = bank.step(views[3:4], proprio[3:4], 0)
    math = [i for i, r in enumerate(waves.regions) if r == Region.MATH]
    combined = 1.0 - np.prod(1.0 - waves.confidence[0, math])
    assert combined >= CollapseConfig().threshold and waves.fired[0, math].sum() >= CollapseConfig().min_cells
    with pytest.raises(ValueError, match="nervous.cell.key_wanted=1.5: must be in 0..1"):
        CellConfig(key_wanted=1.5)


def lock(proprio: np.ndarray, row: int, a: int, op: str, b: int, shown: int) -> None:
    proprio[row, Proprio.FACING_LOCK] = 1.0
    proprio[row, Proprio.LOCK_A] = a / 10
    proprio[row, Proprio.LOCK_B] = b / 10
    proprio[row, Proprio.LOCK_OP] = {"+": 0.0, "-": 0.5, "*": 1.0}[op]
    proprio[row, Proprio.LOCK_SHOWN] = shown / 100


def test_math_solves_easy_problems_and_asks_for_hard_ones() -> None:
    views, proprio = senses(6)
    lock(proprio, 0, 3, "+", 4, 7)  # shown answer is right: READY
    lock(proprio, 1, 9, "-", 2, 1)  # solved, display not there yet
    lock(proprio, 2, 4, "*", 5, 20)  # small product: READY
    lock(proprio, 3, 8, "*", 7, 56)  # too hard for the cell
    lock(proprio, 4, 2, "-", 6, 0)  # negative answer
    conf, value = step("math", views, proprio)
    np.testing.assert_allclose(conf, [0.95, 0.6, 0.95, 0.2, 0.6, 0.0])
    np.testing.assert_array_equal(value, [7, 7, 20, -1, -4, -1])


def test_cell_bank_steps_all_cells_and_builds_features_and_batches() -> None:
    bank = CellBank(CellConfig())
    views, proprio = senses(5)
    views[0][at(7, 0, 1)] = Tile.FOOD
    views[3][at(7, -1, 0)] = Tile.WALL
    lock(proprio, 4, 1, "+", 1, 2)
    waves = bank.step(views, proprio, tick=9)
    c = len(bank.names)
    assert waves.confidence.shape == (5, c) and waves.fired.shape == (5, c)
    assert bank.feature_size == 2 * c and len(bank.feature_names) == 2 * c
    feats = bank.features()
    assert feats.shape == (5, 2 * c) and feats.dtype == np.float32
    smell = bank.names.index("smell")
    assert feats[0, smell] == pytest.approx(0.5) and feats[1, smell] == 0.0
    batch = waves.to_batch(npc_ids=np.array([10, 11, 12, 13, 14]))
    back = decode(encode(batch), WaveBatch, "s")
    got = {(w.npc, w.region) for w in back.waves()}
    assert got == {(10, Region.FOOD), (13, Region.COLLISION), (14, Region.MATH)}


def test_cell_bank_rejects_bad_shapes_and_unknown_cells() -> None:
    bank = CellBank()
    views, proprio = senses(2)
    with pytest.raises(ValueError, match="views"):
        bank.step(views[:, :, :6], proprio, 0)
    with pytest.raises(ValueError, match="proprio"):
        bank.step(views, proprio[:1], 0)
    with pytest.raises(ValueError, match="telepathy"):
        CellBank(CellConfig(cells=("telepathy",)))


def test_cell_bank_reset_forgets_only_masked_npcs() -> None:
    bank = CellBank(CellConfig(cells=("hazard",)))
    views, proprio = senses(2)
    views[:, 3, 3] = Tile.FIRE
    bank.step(views, proprio, 0)
    views[:] = Tile.EMPTY
    bank.reset(np.array([True, False]))
    waves = bank.step(views, proprio, 1)
    np.testing.assert_allclose(waves.confidence[:, 0], [0.0, 0.5])


def test_cells_are_vectorised_over_large_batches() -> None:
    rng = np.random.default_rng(1)
    m = 4096
    views = rng.integers(0, 12, size=(m, 9, 9), dtype=np.uint8)
    proprio = rng.random((m, 20), dtype=np.float32)
    bank = CellBank()
    waves = bank.step(views, proprio, 0)
    # row-by-row results equal the batch (no cross-NPC mixing)
    for row in (0, 17, m - 1):
        single = CellBank().step(views[row : row + 1], proprio[row : row + 1], 0)
        np.testing.assert_allclose(single.confidence[0], waves.confidence[row])
        np.testing.assert_allclose(single.value[0], waves.value[row])


def test_hunger_rises_as_lifeforce_falls() -> None:
    views, proprio = senses(4)
    proprio[:, Proprio.LIFEFORCE] = [0.9, 0.5, 0.3, 0.05]
    conf, value = step("hunger", views, proprio, 0, make_cell("hunger", CellConfig(hunger_level=0.5)))
    np.testing.assert_allclose(conf, [0.0, 0.0, 0.6 + 0.35 * 0.5, 0.95], rtol=1e-5)
    np.testing.assert_allclose(value, [0.9, 0.5, 0.3, 0.05], rtol=1e-6)


def test_forage_remembers_food_seen_lately_decaying() -> None:
    views, proprio = senses(2)
    cell = make_cell("forage", CellConfig(food_memory=0.5))
    views[0][at(7, 2, -1)] = Tile.FOOD
    conf, value = step("forage", views, proprio, 0, cell)
    np.testing.assert_allclose(conf, [0.6, 0.0])
    np.testing.assert_array_equal(value, [1, 0])
    views[:] = Tile.EMPTY
    conf, value = step("forage", views, proprio, 1, cell)
    np.testing.assert_allclose(conf, [0.3, 0.0])  # out of view, still remembered
    np.testing.assert_array_equal(value, [0, 0])
    cell.reset_npcs(np.array([True, False]))
    conf, _ = step("forage", views, proprio, 2, cell)
    np.testing.assert_allclose(conf, [0.0, 0.0])
