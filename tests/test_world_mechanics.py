"""Each rule of the core on a hand-built scene."""

import numpy as np
import pytest

from world import GridWorld, stage_config
from world.core import LOCK_DISPLAY_OFFSETS
from world.tiles import Action, Proprio, Tile


def approx(value: float):
    """Float32 lifeforce arithmetic: compare to 1e-5."""
    return pytest.approx(value, abs=1e-5)


def scene(stage: int = 0, n_npcs: int = 2, **overrides) -> GridWorld:
    """An empty 8x8 world (no items, no regrowth) whose NPCs sit at the first row."""
    fields = dict(
        height=8,
        width=8,
        n_npcs=n_npcs,
        n_food=0,
        food_regrow=0.0,
        n_fire=0,
        n_water=0,
        n_chargers=0,
        n_vaults=0,
        n_keys_extra=0,
        wall_density=0.0,
        wall_segments=0,
    )
    config = stage_config(stage, **(fields | overrides))
    world = GridWorld(config, num_envs=1, seed=0)
    r = world.r
    world.tiles[0, r : r + 8, r : r + 8] = Tile.EMPTY
    world.pos_y[0] = r
    world.pos_x[0] = r + 2 * np.arange(n_npcs)
    world.refresh()
    return world


def put(world: GridWorld, y: int, x: int, tile: Tile) -> None:
    world.tiles[0, y + world.r, x + world.r] = tile


def move_to(world: GridWorld, slot: int, y: int, x: int) -> None:
    world.pos_y[0, slot], world.pos_x[0, slot] = y + world.r, x + world.r


def act(world: GridWorld, *actions: int) -> None:
    world.step(np.array([actions], dtype=np.int64))


def test_eating_restores_lifeforce_removes_food_and_rewards():
    world = scene()
    put(world, 0, 0, Tile.FOOD)
    world.lifeforce[0, 0] = 0.5
    world.refresh()
    assert world.action_mask[0, 0, Action.INTERACT]
    act(world, Action.INTERACT, Action.STAY)
    cfg = world.config
    assert world.lifeforce[0, 0] == approx(0.5 + cfg.food_gain - cfg.lifeforce_decay)
    assert world.tiles[0, world.r, world.r] == Tile.EMPTY
    assert world.rewards[0, 0] == approx(cfg.food_gain - cfg.lifeforce_decay)
    assert world.rewards[0, 1] == approx(-cfg.lifeforce_decay)


def test_walls_block_and_npcs_block():
    world = scene()
    put(world, 1, 0, Tile.WALL)
    world.refresh()
    assert not world.action_mask[0, 0, Action.SOUTH]
    act(world, Action.SOUTH, Action.WEST)  # npc_1 at x=2 moves to x=1
    assert world.pos_y[0, 0] == world.r  # wall held npc_0
    assert world.pos_x[0, 1] == world.r + 1
    act(world, Action.EAST, Action.STAY)  # npc_0 into npc_1's cell: blocked
    assert world.pos_x[0, 0] == world.r


def test_move_conflict_lowest_slot_wins_and_no_chains():
    world = scene()  # npc_0 at x=0, npc_1 at x=2; both target x=1
    act(world, Action.EAST, Action.WEST)
    assert world.pos_x[0, 0] == world.r + 1 and world.pos_x[0, 1] == world.r + 2
    # a chain: npc_1 leaves x=2 while npc_0 tries to enter it: npc_0 stays (cell still occupied)
    act(world, Action.EAST, Action.EAST)
    assert world.pos_x[0, 0] == world.r + 1 and world.pos_x[0, 1] == world.r + 3


def test_fire_drains_and_kills():
    world = scene(fire_drain=0.6)
    put(world, 1, 0, Tile.FIRE)
    world.refresh()
    act(world, Action.SOUTH, Action.STAY)
    assert world.lifeforce[0, 0] == approx(1 - 0.6 - world.config.lifeforce_decay)
    act(world, Action.STAY, Action.STAY)
    assert not world.alive[0, 0] and world.died[0, 0] and world.terminals[0, 0]
    assert world.rewards[0, 0] < -world.config.death_penalty + 0.01
    assert world.pop_stats() == {"episodes": 0.0}  # npc_1 is alive: the episode goes on


def test_key_opens_door_and_is_used_up():
    world = scene()
    put(world, 0, 1, Tile.KEY)
    put(world, 1, 1, Tile.DOOR)
    world.refresh()
    act(world, Action.EAST, Action.STAY)  # onto the key; the door is now south of npc_0
    act(world, Action.INTERACT, Action.STAY)  # the key underfoot comes first
    assert world.has_key[0, 0]
    act(world, Action.INTERACT, Action.STAY)  # door in reach (adjacent, without turning)
    assert not world.has_key[0, 0]
    assert world.tiles[0, 1 + world.r, 1 + world.r] == Tile.EMPTY
    assert world.rewards[0, 0] == approx(world.config.goal_bonus - world.config.lifeforce_decay)


def test_door_without_key_stays_shut():
    world = scene()
    put(world, 1, 0, Tile.DOOR)
    world.refresh()
    assert not world.action_mask[0, 0, Action.INTERACT]
    act(world, Action.INTERACT, Action.STAY)
    assert world.tiles[0, 1 + world.r, world.r] == Tile.DOOR


def lock_scene(op: int, a: int, b: int) -> GridWorld:
    world = scene(stage=4, n_npcs=1, n_vaults=1, lock_fraction=1.0)
    world.tiles[0] = np.where(world.tiles[0] == Tile.WALL, Tile.WALL, Tile.EMPTY)
    world.tiles[0, world.r : world.r + 8, world.r : world.r + 8] = Tile.EMPTY
    put(world, 1, 0, Tile.LOCK)
    y, x = 1 + world.r, world.r
    world.lock_a[0, y, x], world.lock_b[0, y, x], world.lock_op[0, y, x] = a, b, op
    world.lock_phase[0, y, x] = 0
    world.refresh()
    return world


def test_lock_shows_problem_and_opens_on_right_answer():
    world = lock_scene(op=2, a=7, b=6)
    p = world.proprio[0, 0]
    assert p[Proprio.FACING_LOCK] == 1
    assert (round(p[Proprio.LOCK_A] * 10), round(p[Proprio.LOCK_B] * 10), p[Proprio.LOCK_OP]) == (7, 6, 1.0)
    # wait until the display shows 42, then answer
    for _ in range(len(LOCK_DISPLAY_OFFSETS)):
        if round(world.proprio[0, 0, Proprio.LOCK_SHOWN] * 100) == 42:
            break
        act(world, Action.STAY)
    life = world.lifeforce[0, 0]
    act(world, Action.INTERACT)
    assert world.tiles[0, 1 + world.r, world.r] == Tile.EMPTY
    assert world.lifeforce[0, 0] == approx(life - world.config.lifeforce_decay)


def test_wrong_lock_answer_costs_lifeforce():
    world = lock_scene(op=0, a=2, b=3)
    while round(world.proprio[0, 0, Proprio.LOCK_SHOWN] * 100) == 5:
        act(world, Action.STAY)
    life = world.lifeforce[0, 0]
    act(world, Action.INTERACT)
    assert world.tiles[0, 1 + world.r, world.r] == Tile.LOCK
    cfg = world.config
    assert world.lifeforce[0, 0] == approx(life - cfg.wrong_answer_cost - cfg.lifeforce_decay)


def test_battery_drains_with_moves_then_moves_cost_lifeforce():
    world = scene(stage=2, n_npcs=1, battery_drain=0.5, exhaustion_cost=0.1)
    act(world, Action.SOUTH)
    act(world, Action.SOUTH)
    assert world.battery[0, 0] == 0
    life = world.lifeforce[0, 0]
    act(world, Action.SOUTH)
    assert world.lifeforce[0, 0] == approx(life - 0.1 - world.config.lifeforce_decay)
    put(world, 3, 0, Tile.CHARGER)
    act(world, Action.INTERACT)
    assert world.battery[0, 0] == 1


def test_water_is_drunk_from_the_next_cell():
    world = scene(n_npcs=1)
    put(world, 0, 1, Tile.WATER)
    world.lifeforce[0, 0] = 0.5
    world.refresh()
    assert not world.action_mask[0, 0, Action.EAST]
    act(world, Action.INTERACT)
    cfg = world.config
    assert world.lifeforce[0, 0] == approx(0.5 + cfg.water_gain - cfg.lifeforce_decay)
    assert world.tiles[0, world.r, world.r + 1] == Tile.WATER  # water is not used up


def test_respawn_after_delay_with_full_lifeforce():
    world = scene(stage=3, n_npcs=2, respawn_delay=3, lifeforce_decay=0.0, fire_drain=1.0)
    put(world, 1, 0, Tile.FIRE)
    world.refresh()
    act(world, Action.SOUTH, Action.STAY)
    assert not world.alive[0, 0] and world.died[0, 0] and not world.terminals[0, 0]
    for _ in range(2):  # dead in exactly respawn_delay observations, the death tick's included
        act(world, Action.STAY, Action.STAY)
        assert not world.alive[0, 0]
    for _ in range(20):  # a respawn may wait for a free cell
        if world.alive[0, 0]:
            break
        act(world, Action.STAY, Action.STAY)
    assert world.alive[0, 0] and world.lifeforce[0, 0] == 1.0


def test_episode_ends_at_horizon_with_success_and_autoreset():
    world = scene(n_npcs=2, max_steps=5, lifeforce_decay=0.01)
    for _ in range(5):
        act(world, Action.STAY, Action.STAY)
    assert world.env_done[0] and world.truncations[0].all() and not world.terminals[0].any()
    stats = world.pop_stats()
    assert stats["episodes"] == 1 and stats["success"] == 1.0 and stats["length"] == 5
    assert world.t[0] == 0 and world.alive[0].all()  # autoreset


def test_extinction_ends_the_episode_with_zero_success():
    world = scene(n_npcs=2, lifeforce_decay=0.6)
    act(world, Action.STAY, Action.STAY)
    act(world, Action.STAY, Action.STAY)
    assert world.env_done[0] and world.terminals[0].all()
    assert world.pop_stats()["success"] == 0.0


def test_signal_is_seen_and_heard():
    world = scene(stage=3, n_npcs=2, signal_radius=3)
    act(world, Action.SIGNAL, Action.STAY)
    r = world.r
    assert world.views[0, 1, r, r - 2] == Tile.NPC_SIGNAL  # npc_0 is two cells west of npc_1
    assert world.proprio[0, 1, Proprio.HEARD_SIGNAL] == 1.0
    assert world.proprio[0, 0, Proprio.HEARD_SIGNAL] == 0.0
    act(world, Action.STAY, Action.STAY)
    assert world.views[0, 1, r, r - 2] == Tile.NPC


def test_night_and_fog_hide_far_cells():
    world = scene(stage=5, n_npcs=1, day_length=4, night_view_radius=1, weather=False)
    r = world.r
    assert (world.views[0, 0] != Tile.UNSEEN).all()
    act(world, Action.STAY)
    act(world, Action.STAY)  # t=2: the night half of a 4-tick day
    view = world.views[0, 0]
    assert world.proprio[0, 0, Proprio.NIGHT] == 1
    assert (view[r - 1 : r + 2, r - 1 : r + 2] != Tile.UNSEEN).all()
    assert (view[0, :] == Tile.UNSEEN).all()


def test_charge_hook_is_paid_next_tick():
    world = scene(n_npcs=2)
    world.charge(np.array([[0.25, 0.0]], dtype=np.float32))
    act(world, Action.STAY, Action.STAY)
    decay = world.config.lifeforce_decay
    assert world.lifeforce[0, 0] == approx(1 - 0.25 - decay)
    assert world.lifeforce[0, 1] == approx(1 - decay)
    act(world, Action.STAY, Action.STAY)
    assert world.lifeforce[0, 0] == approx(1 - 0.25 - 2 * decay)


def test_view_is_centred_and_pads_with_walls():
    world = scene(n_npcs=1)
    put(world, 0, 1, Tile.FOOD)
    world.refresh()
    r = world.r
    view = world.views[0, 0]
    assert view[r, r + 1] == Tile.FOOD
    assert (view[:r, :] == Tile.WALL).all() and (view[:, :r] == Tile.WALL).all()  # NPC in the corner


def vault_scene(lock_fraction: float, rearm_delay: int = 5) -> tuple[GridWorld, int, tuple[int, int]]:
    """One real vault on an empty 8x8 map, its entrance's global cell, and the padded cell before it."""
    config = stage_config(4, height=8, width=8, n_npcs=1, n_vaults=1, lock_fraction=lock_fraction,
                          n_keys_extra=0, n_food=0, food_regrow=0.0, n_fire=0, n_water=0, n_chargers=0,
                          wall_density=0.0, wall_segments=0, rearm_delay=rearm_delay)
    world = GridWorld(config, num_envs=1, seed=0)
    world.tiles[0][world.tiles[0] == Tile.KEY] = Tile.EMPTY
    entrance = int(world.vault_entrance[0, 0])
    ey, ex = divmod(entrance, world.Wp)
    cy, cx = world.vault_room_y[0, 0] + 1, world.vault_room_x[0, 0] + 1  # the room's centre
    outside = (ey + int(np.sign(ey - cy)), ex + int(np.sign(ex - cx)))
    world.pos_y[0, 0], world.pos_x[0, 0] = outside
    world.refresh()
    return world, entrance, outside


def open_lock(world: GridWorld, entrance: int) -> None:
    """Wait until the lock in reach shows its answer, then answer it."""
    answer = int(world._lock_answer(np.array([entrance]))[0])
    for _ in range(len(LOCK_DISPLAY_OFFSETS)):
        if round(world.proprio[0, 0, Proprio.LOCK_SHOWN] * 100) == answer:
            break
        act(world, Action.STAY)
    act(world, Action.INTERACT)
    assert world.tiles.reshape(-1)[entrance] == Tile.EMPTY


def test_opened_lock_rearms_with_a_problem_after_the_delay():
    world, entrance, _ = vault_scene(lock_fraction=1.0, rearm_delay=5)
    assert world.tiles.reshape(-1)[entrance] == Tile.LOCK
    open_lock(world, entrance)
    for _ in range(4):
        act(world, Action.STAY)
        assert world.tiles.reshape(-1)[entrance] == Tile.EMPTY
    act(world, Action.STAY)
    assert world.tiles.reshape(-1)[entrance] == Tile.LOCK
    assert world.proprio[0, 0, Proprio.FACING_LOCK] == 1
    open_lock(world, entrance)  # it can be opened again: one vault serves many NPCs
    assert world.ep_opened[0, 0] == 2


def test_entrance_waits_while_an_npc_is_in_it_or_in_the_room():
    world, entrance, outside = vault_scene(lock_fraction=1.0, rearm_delay=2)
    open_lock(world, entrance)
    ey, ex = divmod(entrance, world.Wp)
    step = {(-1, 0): Action.NORTH, (1, 0): Action.SOUTH, (0, 1): Action.EAST, (0, -1): Action.WEST}
    inward = step[(ey - outside[0], ex - outside[1])]
    outward = step[(outside[0] - ey, outside[1] - ex)]
    act(world, inward)  # into the entrance
    act(world, inward)  # into the room
    for _ in range(6):
        act(world, Action.STAY)
        assert world.tiles.reshape(-1)[entrance] == Tile.EMPTY
    act(world, outward)
    act(world, outward)  # back outside: now it closes
    assert world.tiles.reshape(-1)[entrance] == Tile.LOCK


def test_door_closes_again_and_a_new_key_appears():
    world, entrance, _ = vault_scene(lock_fraction=0.0, rearm_delay=3)
    world.has_key[0, 0] = True
    world.refresh()
    act(world, Action.INTERACT)
    assert world.tiles.reshape(-1)[entrance] == Tile.EMPTY and not world.has_key[0, 0]
    assert (world.tiles == Tile.KEY).sum() == 0
    for _ in range(3):
        act(world, Action.STAY)
    assert world.tiles.reshape(-1)[entrance] == Tile.DOOR
    assert (world.tiles == Tile.KEY).sum() == 1


def test_without_rearm_delay_an_opened_lock_stays_open():
    world, entrance, _ = vault_scene(lock_fraction=1.0, rearm_delay=0)
    open_lock(world, entrance)
    for _ in range(50):
        act(world, Action.STAY)
    assert world.tiles.reshape(-1)[entrance] == Tile.EMPTY
