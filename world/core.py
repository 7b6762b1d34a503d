"""GridWorld: B independent envs x N NPC slots, stepped together in numpy over preallocated buffers.

Layout
    Grids are padded by the view radius r with WALL, so every view gather and neighbour lookup is
    in bounds; positions are stored in padded coordinates. Per-cell layers: ``tiles`` (codes from
    `world.tiles.Tile`) and, for lock terminals, ``lock_a``, ``lock_b``, ``lock_op``, ``lock_phase``.
    NPCs live in fixed slots: ``pos_y``/``pos_x``, ``alive``, ``lifeforce``, ``battery``,
    ``has_key``, ``facing``; a dead slot keeps its place until it respawns or the episode ends.

One tick (`step`)
    1. Dead NPCs do not act (their action is replaced by STAY); moves set ``facing``.
    2. Moves: an NPC moves unless the target is blocking, holds another NPC (even one that is
       leaving: no chains, no swaps) or is claimed by a lower slot index this tick (lowest wins).
       With a battery, a move uses ``battery_drain`` (x rain factor); on an empty battery it
       costs ``exhaustion_cost`` lifeforce instead.
    3. Interact: on the own cell eat FOOD, charge at CHARGER, pick up a KEY; else, on the cell in
       reach (the faced cell if it holds water, a door or a lock, else the first such neighbour in
       N, S, E, W order: no need to turn, which masked moves could not do) drink WATER, open a
       DOOR with a key (the key is used up) or answer a LOCK: it opens
       when its display shows the right answer, else the NPC pays ``wrong_answer_cost``. Two NPCs
       facing the same door or lock: the lower slot acts.
    4. Fire drains, lifeforce decays, costs charged through the hook are paid; at 0 an NPC dies.
    5. Dead NPCs respawn after ``respawn_delay`` ticks on a random free cell (if the stage does).
    6. Food regrows; vault entrances open for ``rearm_delay`` ticks close again when nobody stands in
       them or in their room (a lock poses a new problem, a closed door puts a new key on a free
       cell); sky (day/night, weather) advances; episodes end at ``max_steps``, or when
       every NPC is dead in a stage without respawn; finished envs reset when ``autoreset``.
    7. Observations, proprio and action masks are rebuilt.

Rewards (per NPC and tick)
    reward = change in lifeforce (eating, drinking and charging costs included)
             + goal_bonus per door or lock opened - death_penalty on death. Dead NPCs get 0.

Success (per NPC and episode)
    The NPC never died during the episode (and, with ``success_needs_unlock``, opened at least
    one door or lock). An env's success is the mean over its NPC slots.

Lifeforce hook
    ``charge(cost)`` adds a float32[B, N] lifeforce cost that is paid at the next tick: later parts
    use it to charge brain invocations, organ calls and escalations to the cortex.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from world.config import WorldConfig
from world.tiles import (
    BLOCKING,
    MOVE_DX,
    MOVE_DY,
    NUM_ACTIONS,
    PROPRIO_SIZE,
    A,
    P,
    T,
    Tile,
)

#: Tiles INTERACT can act on from a neighbouring cell.
REACHABLE = np.zeros(len(Tile), dtype=bool)
REACHABLE[[T.WATER, T.DOOR, T.LOCK]] = True
#: What a lock terminal displays, relative to its answer, as ticks go by (right 1 tick in 6).
LOCK_DISPLAY_OFFSETS = np.array([0, 2, 1, 4, 3, 5], dtype=np.int64)
VAULT_FOOTPRINT = 7  # a 5x5 walled room with a 1-cell margin
WEATHER_CLEAR, WEATHER_FOG, WEATHER_RAIN = 0, 1, 2

STAT_KEYS = ("episodes", "success", "return", "length", "deaths", "deaths_fire", "deaths_starved",
             "opened", "food_eaten")


def checked_actions(actions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Actions as an integer array of `shape` (B, N) within the action space; ValueError otherwise."""
    actions = np.asarray(actions)
    if actions.shape != shape:
        raise ValueError(f"actions: shape {actions.shape} != (num_envs, n_npcs) {shape}")
    if actions.dtype.kind not in "iu":
        raise ValueError(f"actions: dtype {actions.dtype} is not an integer type")
    if actions.size and (actions.min() < 0 or actions.max() >= NUM_ACTIONS):
        raise ValueError(f"actions: values must be in 0..{NUM_ACTIONS - 1}, "
                         f"got {actions.min()}..{actions.max()}")
    return actions


def checked_cost(cost: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A lifeforce cost as float32 of `shape` (B, N), finite and >= 0; ValueError otherwise."""
    cost = np.asarray(cost, dtype=np.float32)
    if cost.shape != shape:
        raise ValueError(f"cost: shape {cost.shape} != (num_envs, n_npcs) {shape}")
    if not np.all(np.isfinite(cost)) or cost.min(initial=0.0) < 0:
        raise ValueError("cost: must be finite and >= 0")
    return cost


class GridWorld:
    """B envs x N NPCs of one stage; all state in preallocated numpy arrays."""

    #: Output arrays a caller may provide (e.g. in shared memory), written in place every tick.
    BUFFERS = ("views", "proprio", "action_mask", "rewards", "terminals", "truncations", "died", "env_done",
               "alive", "lifeforce", "last_success")

    def __init__(self, config: WorldConfig, num_envs: int = 1, seed: int | None = None,
                 autoreset: bool = True, buffers: dict[str, np.ndarray] | None = None) -> None:
        config.validate()
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r}: must be an integer >= 1")
        self.config = config
        self.num_envs = B = num_envs
        self.num_npcs = N = config.n_npcs
        self.autoreset = autoreset
        self.r = r = config.view_radius
        self.V = V = config.view_size
        self.H, self.W = config.height, config.width
        self.Hp, self.Wp = Hp, Wp = config.height + 2 * r, config.width + 2 * r
        self.cells = Hp * Wp

        buffers = dict(buffers or {})
        unknown = sorted(set(buffers) - set(self.BUFFERS))
        if unknown:
            raise ValueError(f"buffers[{unknown[0]!r}]: not an output buffer; choose from {self.BUFFERS}")

        def array(name: str, shape: tuple[int, ...], dtype: type, fill: float = 0) -> np.ndarray:
            """A zeroed output array, or the caller's buffer of that name (checked, then filled)."""
            given = buffers.get(name)
            if given is None:
                return np.full(shape, fill, dtype=dtype)
            if given.shape != shape or given.dtype != np.dtype(dtype) or not given.flags.c_contiguous:
                raise ValueError(f"buffers[{name!r}]: need a C-contiguous {np.dtype(dtype)} array of shape "
                                 f"{shape}, got {given.dtype} {given.shape}")
            given.fill(fill)
            return given

        # --- world layers --------------------------------------------------------------------
        self.tiles = np.full((B, Hp, Wp), T.WALL, dtype=np.uint8)
        #: windows[i] is the V x V window whose corner is flat cell i: an NPC's view is one index
        #: into a read-only strided view of the tiles (so never rebind self.tiles)
        flat = self.tiles.reshape(-1)
        self._windows = as_strided(flat, shape=(flat.size - (V - 1) * (Wp + 1), V, V), strides=(1, Wp, 1),
                                   writeable=False)
        self._corner = -r * Wp - r  # flat offset from an NPC's cell to its window's corner
        has_locks = config.n_locks > 0
        lock_shape = (B, Hp, Wp) if has_locks else (1, 1, 1)
        self.lock_a = np.zeros(lock_shape, dtype=np.int64)
        self.lock_b = np.zeros(lock_shape, dtype=np.int64)
        self.lock_op = np.zeros(lock_shape, dtype=np.int64)
        self.lock_phase = np.zeros(lock_shape, dtype=np.int64)
        #: vaults: each entrance's global flat cell, its room's padded interior corner (3x3), whether
        #: it is a lock, and the tick it was last opened (-1: closed), for `rearm_delay`
        n_vaults = config.n_vaults
        self.vault_entrance = np.full((B, n_vaults), -1, dtype=np.int64)
        self.vault_room_y = np.zeros((B, n_vaults), dtype=np.int64)
        self.vault_room_x = np.zeros((B, n_vaults), dtype=np.int64)
        self.vault_is_lock = np.arange(n_vaults) < config.n_locks
        self.vault_opened_at = np.full((B, n_vaults), -1, dtype=np.int64)
        self.food_count = np.zeros(B, dtype=np.int64)
        self.t = np.zeros(B, dtype=np.int64)
        self.weather = np.zeros(B, dtype=np.int64)

        # --- NPC slots -----------------------------------------------------------------------
        self.pos_y = np.zeros((B, N), dtype=np.int64)
        self.pos_x = np.zeros((B, N), dtype=np.int64)
        self.alive = array("alive", (B, N), bool)
        self.lifeforce = array("lifeforce", (B, N), np.float32)
        self.battery = np.zeros((B, N), dtype=np.float32)
        self.has_key = np.zeros((B, N), dtype=bool)
        self.facing = np.full((B, N), A.NORTH, dtype=np.int64)
        self.signalling = np.zeros((B, N), dtype=bool)
        self.dead_ticks = np.zeros((B, N), dtype=np.int64)
        self.pending_cost = np.zeros((B, N), dtype=np.float32)

        # --- per-episode accounting ----------------------------------------------------------
        self.ep_return = np.zeros((B, N), dtype=np.float64)
        self.ep_deaths = np.zeros((B, N), dtype=np.int64)
        self.ep_opened = np.zeros((B, N), dtype=np.int64)
        self.ep_food = np.zeros((B, N), dtype=np.int64)
        self.ep_deaths_fire = np.zeros((B, N), dtype=np.int64)
        self._stats = dict.fromkeys(STAT_KEYS, 0.0)
        #: Success of each env's last finished episode (NaN before the first one).
        self.last_success = array("last_success", (B,), np.float64, np.nan)

        # --- outputs (rebuilt every tick, in place) ------------------------------------------
        self.views = array("views", (B, N, V, V), np.uint8)
        self.proprio = array("proprio", (B, N, PROPRIO_SIZE), np.float32)
        self.action_mask = array("action_mask", (B, N, NUM_ACTIONS), bool)
        #: Tile of the cell each NPC's INTERACT reaches besides its own (see `_reach`).
        self.reach_tile = np.zeros((B, N), dtype=np.uint8)
        self.rewards = array("rewards", (B, N), np.float32)
        #: NPC slot ended this tick: it died in a stage without respawn, or its env ended.
        self.terminals = array("terminals", (B, N), bool)
        self.truncations = array("truncations", (B, N), bool)
        #: NPC died this tick (also in stages with respawn, where death does not end the slot).
        self.died = array("died", (B, N), bool)
        #: Env's episode ended this tick (it was reset already when ``autoreset``).
        self.env_done = array("env_done", (B,), bool)

        # --- constants -----------------------------------------------------------------------
        self._env_base = (np.arange(B, dtype=np.int64) * self.cells)[:, None]
        self._slot = np.broadcast_to(np.arange(N, dtype=np.int64), (B, N))
        self._claim = np.full(B * self.cells, N, dtype=np.int64)
        self._neighbour_offsets = MOVE_DY[1:5] * Wp + MOVE_DX[1:5]  # N, S, E, W
        self._move_flat = MOVE_DY * Wp + MOVE_DX
        self._proprio_rows = np.arange(B * N, dtype=np.int64) * PROPRIO_SIZE
        self._nb_rows = np.array([r - 1, r + 1, r, r])  # view cells of the N, S, E, W neighbours
        self._nb_cols = np.array([r, r, r + 1, r - 1])
        dist = np.maximum(*np.abs(np.mgrid[-r:r + 1, -r:r + 1]))
        #: hidden_by_radius[k] masks view cells farther than k (Chebyshev) from the centre.
        self._hidden_by_radius = np.stack([dist > k for k in range(r + 1)])
        self._sky = config.day_length > 0 or config.weather
        #: Ticks stepped since the last reset() (all envs together); lets observers cache per tick.
        self.ticks = 0
        self.rng = np.random.default_rng(seed)
        self.reset(seed)

    # ======================================================================================
    # public API
    # ======================================================================================
    def reset(self, seed: int | None = None) -> None:
        """Reset every env; with a seed, reseed the single generator all randomness comes from."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._stats = dict.fromkeys(STAT_KEYS, 0.0)
        self.last_success[:] = np.nan
        self.ticks = 0
        self._reset_envs(np.arange(self.num_envs))
        self.rewards[:] = 0.0
        self.terminals[:] = False
        self.truncations[:] = False
        self.died[:] = False
        self.env_done[:] = False
        self._observe()

    def charge(self, cost: np.ndarray) -> None:
        """Add a lifeforce cost per NPC (float32[B, N], >= 0) to be paid at the next tick."""
        self.pending_cost += checked_cost(cost, (self.num_envs, self.num_npcs))

    def step(self, actions: np.ndarray) -> None:
        """Advance every env by one tick; results land in the output buffers in place."""
        cfg = self.config
        actions = checked_actions(actions, (self.num_envs, self.num_npcs))
        # 1. dead NPCs do not act
        N = self.num_npcs
        alive0 = self.alive.copy()
        act = np.where(alive0, actions, A.STAY).astype(np.int64)
        act_flat = act.reshape(-1)
        life0 = self.lifeforce.copy()
        lifeforce = self.lifeforce.reshape(-1)
        battery = self.battery.reshape(-1)
        has_key = self.has_key.reshape(-1)
        moving = (act >= A.NORTH) & (act <= A.WEST)
        np.copyto(self.facing, act, where=moving)
        np.equal(act, A.SIGNAL, out=self.signalling)

        # 2. moves (sparse: only the NPCs that try to move)
        flat_tiles = self.tiles.reshape(-1)
        here = (self._env_base + self.pos_y * self.Wp + self.pos_x).reshape(-1)
        movers = np.flatnonzero(moving)
        if movers.size:
            move = act_flat[movers]
            target = here[movers] + self._move_flat[move]
            # paint live NPCs into the grid so BLOCKING also covers occupied cells (a leaving NPC
            # still blocks: no chains, no swaps), then restore what lay under them
            occupied = here[alive0.reshape(-1)]
            under = flat_tiles[occupied]
            flat_tiles[occupied] = T.NPC
            ok = ~BLOCKING[flat_tiles[target]]
            flat_tiles[occupied] = under
            # several NPCs claiming one cell: the lowest slot wins
            cells, slots = target[ok], movers[ok] % N
            np.minimum.at(self._claim, cells, slots)
            ok[ok] = self._claim[cells] == slots
            self._claim[cells] = N
            moved, move = movers[ok], move[ok]
            self.pos_y.reshape(-1)[moved] += MOVE_DY[move]
            self.pos_x.reshape(-1)[moved] += MOVE_DX[move]
            here[moved] = target[ok]
            if cfg.battery_drain > 0:
                drain = np.full(len(moved), cfg.battery_drain, dtype=np.float32)
                if cfg.weather:
                    drain[self.weather[moved // N] == WEATHER_RAIN] *= cfg.rain_battery_factor
                exhausted = moved[battery[moved] <= 0]
                battery[moved] = np.maximum(battery[moved] - drain, 0)
                lifeforce[exhausted] -= np.float32(cfg.exhaustion_cost)

        # 3. interact (sparse)
        opened = np.zeros((self.num_envs, N), dtype=bool)
        eats = np.zeros((self.num_envs, N), dtype=bool)
        users = np.flatnonzero(act_flat == A.INTERACT)
        if users.size:
            own = flat_tiles[here[users]]
            eat = own == T.FOOD
            charge = own == T.CHARGER
            pick = (own == T.KEY) & ~has_key[users]
            lifeforce[users[eat]] += np.float32(cfg.food_gain)
            battery[users[charge]] = 1.0
            has_key[users[pick]] = True
            flat_tiles[here[users[eat | pick]]] = T.EMPTY
            eats.reshape(-1)[users[eat]] = True
            self.food_count -= np.bincount(users[eat] // N, minlength=self.num_envs)
            # the cell in reach: drink, open a door, answer a lock
            rest = users[~(eat | charge | pick)]
            if rest.size:
                reach = self._reach(here[rest], self.facing.reshape(-1)[rest])
                tile = flat_tiles[reach]
                lifeforce[rest[tile == T.WATER]] += np.float32(cfg.water_gain)
                contest = ((tile == T.DOOR) & has_key[rest]) | (tile == T.LOCK)
                if contest.any():
                    who, cells = rest[contest], reach[contest]
                    np.minimum.at(self._claim, cells, who % N)
                    first = self._claim[cells] == who % N
                    self._claim[cells] = N
                    who, cells = who[first], cells[first]
                    tile = flat_tiles[cells]
                    door, lock = tile == T.DOOR, tile == T.LOCK
                    right = np.zeros(len(who), dtype=bool)
                    if lock.any():
                        right[lock] = self._lock_shown(cells[lock]) == self._lock_answer(cells[lock])
                        lifeforce[who[lock & ~right]] -= np.float32(cfg.wrong_answer_cost)
                    has_key[who[door]] = False
                    opens = door | right
                    opened.reshape(-1)[who[opens]] = True
                    flat_tiles[cells[opens]] = T.EMPTY
                    if cfg.rearm_delay > 0:
                        self._mark_opened(cells[opens])
        here = here.reshape(self.num_envs, N)

        # 4. hazards, decay, hook costs, death
        on_fire = alive0 & (flat_tiles[here] == T.FIRE)
        drain = np.float32(cfg.lifeforce_decay) + self.pending_cost
        drain += np.where(on_fire, np.float32(cfg.fire_drain), np.float32(0))
        self.pending_cost[:] = 0.0
        self.lifeforce[:] = np.where(alive0, np.clip(self.lifeforce - drain, 0.0, 1.0), 0.0)
        died = alive0 & (self.lifeforce <= 0.0)
        self.alive &= ~died
        self.dead_ticks += 1
        self.dead_ticks[self.alive] = 0

        # rewards and episode accounting
        reward = (self.lifeforce - life0) + cfg.goal_bonus * opened - cfg.death_penalty * died
        self.rewards[:] = np.where(alive0, reward, 0.0)
        self.ep_return += self.rewards
        self.ep_deaths += died
        self.ep_deaths_fire += died & on_fire
        self.ep_opened += opened
        self.ep_food += eats
        self.died[:] = died

        # 5. respawn
        if cfg.respawn_delay >= 0:
            self._respawn()

        # 6. food, sky, episode ends
        self._regrow()
        if cfg.rearm_delay > 0:
            self._rearm()
        self.t += 1
        if cfg.weather:
            change = self.rng.random(self.num_envs) < cfg.weather_change
            self.weather = np.where(change, self.rng.integers(0, 3, self.num_envs), self.weather)
        truncated = self.t >= cfg.max_steps
        if cfg.respawn_delay < 0:
            extinct = ~self.alive.any(axis=1)
        else:
            extinct = np.zeros(self.num_envs, dtype=bool)
        self.env_done[:] = truncated | extinct
        self.truncations[:] = (truncated & ~extinct)[:, None]
        self.terminals[:] = extinct[:, None] | (died & (cfg.respawn_delay < 0))
        if self.env_done.any():
            done_ids = np.flatnonzero(self.env_done)
            self._record_episodes(done_ids)
            if self.autoreset:
                self._reset_envs(done_ids)

        # 7. observe
        self.ticks += 1
        self._observe()

    def refresh(self) -> None:
        """Rebuild views, proprio and masks after state was edited by hand (tests, scenario builders)."""
        self._observe()

    def pop_stats(self) -> dict[str, float]:
        """Means over the episodes finished since the last call (per NPC slot where it applies)."""
        stats = self._stats
        self._stats = dict.fromkeys(STAT_KEYS, 0.0)
        episodes = stats["episodes"]
        if episodes == 0:
            return {"episodes": 0.0}
        out = {key: value / episodes for key, value in stats.items() if key != "episodes"}
        out["episodes"] = episodes
        return out

    def frame(self, env: int = 0) -> dict[str, np.ndarray]:
        """A snapshot of one env for drawing: unpadded tiles and NPC slots (copies)."""
        r = self.r
        return {
            "tiles": self.tiles[env, r:r + self.H, r:r + self.W].copy(),
            "npc_y": self.pos_y[env] - r,
            "npc_x": self.pos_x[env] - r,
            "alive": self.alive[env].copy(),
            "lifeforce": self.lifeforce[env].copy(),
            "battery": self.battery[env].copy(),
            "has_key": self.has_key[env].copy(),
            "signalling": self.signalling[env].copy(),
            "facing": self.facing[env].copy(),
            "t": np.int64(self.t[env]),
            "night": np.bool_(self._night()[env]),
            "weather": np.int64(self.weather[env]),
            "stage": np.int64(self.config.stage),
        }

    # ======================================================================================
    # internals
    # ======================================================================================
    def _reach(self, here: np.ndarray, facing: np.ndarray) -> np.ndarray:
        """The cell an NPC's INTERACT acts on besides its own: the faced cell when it holds water, a
        door or a lock, else the first neighbour (N, S, E, W) that does, else the faced cell."""
        neighbours = here[:, None] + self._neighbour_offsets  # here, facing: flat [K]
        slot = self._reach_slot(REACHABLE[self.tiles.reshape(-1)[neighbours]], facing)
        return neighbours[np.arange(len(here)), slot]

    @staticmethod
    def _reach_slot(usable: np.ndarray, facing: np.ndarray) -> np.ndarray:
        """Which of the 4 neighbours (0=N, 1=S, 2=E, 3=W) is in reach, given which are REACHABLE."""
        faced = facing - A.NORTH
        if not usable.any():
            return faced
        flat = usable.reshape(-1, 4)
        faced_usable = flat[np.arange(len(flat)), faced.reshape(-1)].reshape(faced.shape)
        return np.where(faced_usable | ~usable.any(axis=-1), faced, usable.argmax(axis=-1))

    def _lock_answer(self, flat: np.ndarray) -> np.ndarray:
        a, b = self.lock_a.reshape(-1)[flat], self.lock_b.reshape(-1)[flat]
        op = self.lock_op.reshape(-1)[flat]
        return np.where(op == 0, a + b, np.where(op == 1, a - b, a * b))

    def _lock_shown(self, flat: np.ndarray) -> np.ndarray:
        phase = self.lock_phase.reshape(-1)[flat]
        t = self.t[flat // self.cells]
        return self._lock_answer(flat) + LOCK_DISPLAY_OFFSETS[(t + phase) % len(LOCK_DISPLAY_OFFSETS)]

    def _night(self) -> np.ndarray:
        if self.config.day_length <= 0:
            return np.zeros(self.num_envs, dtype=bool)
        return (self.t % self.config.day_length) >= self.config.day_length // 2

    def _record_episodes(self, ids: np.ndarray) -> None:
        success = self.ep_deaths[ids] == 0
        if self.config.success_needs_unlock:
            success &= self.ep_opened[ids] > 0
        env_success = success.mean(axis=1)
        self.last_success[ids] = env_success
        s = self._stats
        s["episodes"] += len(ids)
        s["success"] += float(env_success.sum())
        s["return"] += float(self.ep_return[ids].mean(axis=1).sum())
        s["length"] += float(self.t[ids].sum())
        s["deaths"] += float(self.ep_deaths[ids].mean(axis=1).sum())
        s["deaths_fire"] += float(self.ep_deaths_fire[ids].mean(axis=1).sum())
        s["deaths_starved"] += float((self.ep_deaths[ids] - self.ep_deaths_fire[ids]).mean(axis=1).sum())
        s["opened"] += float(self.ep_opened[ids].mean(axis=1).sum())
        s["food_eaten"] += float(self.ep_food[ids].mean(axis=1).sum())

    def _free_cells(self, ids: np.ndarray, count: int) -> np.ndarray:
        """Pick `count` distinct EMPTY, unoccupied cells per env in ids: flat padded indices [k, count]."""
        tiles = self.tiles[ids].reshape(len(ids), -1)
        keys = self.rng.random(tiles.shape)
        keys[tiles != T.EMPTY] = 2.0
        if count == 0:
            return np.zeros((len(ids), 0), dtype=np.int64)
        chosen = np.argpartition(keys, count - 1, axis=1)[:, :count]
        if (np.take_along_axis(keys, chosen, axis=1) >= 2.0).any():
            raise RuntimeError(f"stage {self.config.stage}: ran out of free cells while placing items; "
                               "lower wall_density or item counts")
        return chosen

    def _reset_envs(self, ids: np.ndarray) -> None:
        cfg, r, k, rng = self.config, self.r, len(ids), self.rng
        H, W, Wp = self.H, self.W, self.Wp
        tiles = np.full((k, self.Hp, Wp), T.WALL, dtype=np.uint8)
        inner = tiles[:, r:r + H, r:r + W]
        inner[:] = T.EMPTY
        if cfg.wall_density > 0:
            inner[rng.random((k, H, W)) < cfg.wall_density] = T.WALL
        if cfg.wall_segments > 0:
            S, L = cfg.wall_segments, cfg.wall_segment_max
            y0 = rng.integers(0, H, (k, S, 1))
            x0 = rng.integers(0, W, (k, S, 1))
            length = rng.integers(2, L + 1, (k, S, 1))
            vertical = rng.random((k, S, 1)) < 0.5
            steps = np.arange(L)[None, None, :]
            ys = np.where(vertical, y0 + steps, y0)
            xs = np.where(vertical, x0, x0 + steps)
            keep = (steps < length) & (ys < H) & (xs < W)
            env_idx = np.broadcast_to(np.arange(k)[:, None, None], keep.shape)
            inner[env_idx[keep], ys[keep], xs[keep]] = T.WALL
        if cfg.n_locks > 0:
            self.lock_a[ids] = 0
            self.lock_b[ids] = 0
            self.lock_op[ids] = 0
            self.lock_phase[ids] = 0
        if cfg.n_vaults > 0:
            self._place_vaults(ids, inner)
        self.tiles[ids] = tiles

        # items and NPCs on distinct free cells, drawn at once
        counts = [(T.FOOD, cfg.n_food), (T.WATER, cfg.n_water), (T.FIRE, cfg.n_fire),
                  (T.CHARGER, cfg.n_chargers), (T.KEY, cfg.n_keys)]
        n_items = sum(c for _, c in counts)
        chosen = self._free_cells(ids, n_items + self.num_npcs)
        tiles_flat = tiles.reshape(k, -1)
        start = 0
        for code, count in counts:
            cells = chosen[:, start:start + count]
            tiles_flat[np.arange(k)[:, None], cells] = code
            start += count
        self.tiles[ids] = tiles
        npc_cells = chosen[:, n_items:]
        self.pos_y[ids] = npc_cells // Wp
        self.pos_x[ids] = npc_cells % Wp
        self.food_count[ids] = (tiles_flat == T.FOOD).sum(axis=1)

        self.alive[ids] = True
        self.lifeforce[ids] = 1.0
        self.battery[ids] = 1.0
        self.has_key[ids] = False
        self.facing[ids] = A.NORTH
        self.signalling[ids] = False
        self.dead_ticks[ids] = 0
        self.pending_cost[ids] = 0.0
        self.t[ids] = 0
        self.weather[ids] = WEATHER_CLEAR
        for acc in (self.ep_return, self.ep_deaths, self.ep_opened, self.ep_food, self.ep_deaths_fire):
            acc[ids] = 0

    def _place_vaults(self, ids: np.ndarray, inner: np.ndarray) -> None:
        """Stamp 5x5 walled food rooms (with a door or lock entrance) onto a lattice of 7x7 slots."""
        cfg, k, rng, r = self.config, len(ids), self.rng, self.r
        slots_y, slots_x = self.H // VAULT_FOOTPRINT, self.W // VAULT_FOOTPRINT
        n = cfg.n_vaults
        pick = np.argsort(rng.random((k, slots_y * slots_x)), axis=1)[:, :n]
        oy = (pick // slots_x) * VAULT_FOOTPRINT  # footprint corner, unpadded
        ox = (pick % slots_x) * VAULT_FOOTPRINT
        env = np.broadcast_to(np.arange(k)[:, None, None], (k, n, 49))
        fy, fx = np.divmod(np.arange(49), 7)
        inner[env, oy[..., None] + fy, ox[..., None] + fx] = T.EMPTY  # margin
        room = np.full((5, 5), T.WALL, dtype=np.uint8)
        room[1:4, 1:4] = T.FOOD
        ry, rx = np.divmod(np.arange(25), 5)
        env25 = env[..., :25]
        inner[env25, oy[..., None] + 1 + ry, ox[..., None] + 1 + rx] = room.reshape(-1)
        # entrance: middle of a random side; locks first (n_locks of them), then doors
        side = rng.integers(0, 4, (k, n))
        ey = np.choose(side, [np.zeros_like(side), np.full_like(side, 4), np.full_like(side, 2),
                              np.full_like(side, 2)]) + oy + 1
        ex = np.choose(side, [np.full_like(side, 2), np.full_like(side, 2), np.zeros_like(side),
                              np.full_like(side, 4)]) + ox + 1
        is_lock = self.vault_is_lock[None, :]
        env2 = np.broadcast_to(np.arange(k)[:, None], (k, n))
        inner[env2, ey, ex] = np.where(is_lock, T.LOCK, T.DOOR).astype(np.uint8)
        self.vault_entrance[ids] = ids[:, None] * self.cells + (ey + r) * self.Wp + ex + r
        self.vault_room_y[ids] = oy + 2 + r
        self.vault_room_x[ids] = ox + 2 + r
        self.vault_opened_at[ids] = -1
        if cfg.n_locks > 0:
            sel = np.broadcast_to(is_lock, (k, n))
            self._pose_problems(ids[env2[sel]] * self.cells + (ey[sel] + r) * self.Wp + ex[sel] + r)

    def _pose_problems(self, flat: np.ndarray) -> None:
        """Give the lock terminals at global flat cells a fresh problem (a op b, single digits)."""
        m, rng = len(flat), self.rng
        op = rng.integers(0, 3, m)
        a = rng.integers(1, 10, m)
        b = rng.integers(1, 10, m)
        a, b = np.where(op == 1, np.maximum(a, b), a), np.where(op == 1, np.minimum(a, b), b)
        self.lock_a.reshape(-1)[flat] = a
        self.lock_b.reshape(-1)[flat] = b
        self.lock_op.reshape(-1)[flat] = op
        self.lock_phase.reshape(-1)[flat] = rng.integers(0, len(LOCK_DISPLAY_OFFSETS), m)

    def _mark_opened(self, flat: np.ndarray) -> None:
        """Remember the tick at which the vault entrances at global flat cells were opened."""
        env = flat // self.cells
        match = self.vault_entrance[env] == flat[:, None]
        hit = match.any(axis=1)  # a hand-placed door or lock belongs to no vault
        self.vault_opened_at[env[hit], match[hit].argmax(axis=1)] = self.t[env[hit]]

    def _rearm(self) -> None:
        """Close the entrances open for `rearm_delay` ticks whose cell and room hold no living NPC."""
        opened_at = self.vault_opened_at
        due = (opened_at >= 0) & (self.t[:, None] - opened_at >= self.config.rearm_delay)
        if not due.any():
            return
        flat_tiles = self.tiles.reshape(-1)
        here = np.where(self.alive, self._env_base + self.pos_y * self.Wp + self.pos_x, -1)
        dy = self.pos_y[:, None, :] - self.vault_room_y[:, :, None]
        dx = self.pos_x[:, None, :] - self.vault_room_x[:, :, None]
        inside = (dy >= 0) & (dy < 3) & (dx >= 0) & (dx < 3) & self.alive[:, None, :]
        in_entrance = here[:, None, :] == self.vault_entrance[:, :, None]
        due &= ~(inside | in_entrance).any(axis=2)
        due &= flat_tiles[self.vault_entrance] == T.EMPTY  # food that regrew there is eaten first
        if not due.any():
            return
        env, vault = np.nonzero(due)
        cells, lock = self.vault_entrance[env, vault], self.vault_is_lock[vault]
        flat_tiles[cells] = np.where(lock, T.LOCK, T.DOOR).astype(np.uint8)
        self.vault_opened_at[env, vault] = -1
        if lock.any():
            self._pose_problems(cells[lock])
        for e in env[~lock]:  # a door needs a key again: one appears on a free cell
            free = self.tiles[e].reshape(-1) == T.EMPTY
            free[here[e][here[e] >= 0] - e * self.cells] = False
            spots = np.flatnonzero(free)
            if spots.size:
                flat_tiles[e * self.cells + spots[self.rng.integers(spots.size)]] = T.KEY

    def _respawn(self) -> None:
        due = ~self.alive & (self.dead_ticks > self.config.respawn_delay)
        if not due.any():
            return
        b, n = np.nonzero(due)
        cell = self.rng.integers(0, self.H * self.W, len(b))
        y, x = cell // self.W + self.r, cell % self.W + self.r
        flat = b * self.cells + y * self.Wp + x
        occupied = np.zeros(self.num_envs * self.cells, dtype=bool)
        occupied[(self._env_base + self.pos_y * self.Wp + self.pos_x)[self.alive]] = True
        ok = (self.tiles.reshape(-1)[flat] == T.EMPTY) & ~occupied[flat]
        # two respawns drawing the same cell: the first (lowest env, then slot) wins
        _, first = np.unique(flat, return_index=True)
        unique = np.zeros(len(flat), dtype=bool)
        unique[first] = True
        ok &= unique
        b, n, y, x = b[ok], n[ok], y[ok], x[ok]
        self.pos_y[b, n], self.pos_x[b, n] = y, x
        self.alive[b, n] = True
        self.lifeforce[b, n] = 1.0
        self.battery[b, n] = 1.0
        self.dead_ticks[b, n] = 0

    def _regrow(self) -> None:
        cfg = self.config
        if cfg.food_regrow <= 0:
            return
        grow = (self.rng.random(self.num_envs) < cfg.food_regrow) & (self.food_count < cfg.food_cap)
        cell = self.rng.integers(0, self.H * self.W, self.num_envs)
        flat = (np.arange(self.num_envs) * self.cells + (cell // self.W + self.r) * self.Wp
                + cell % self.W + self.r)
        flat_tiles = self.tiles.reshape(-1)
        grow &= flat_tiles[flat] == T.EMPTY
        flat_tiles[flat[grow]] = T.FOOD
        self.food_count += grow

    def _observe(self) -> None:
        cfg, r, N = self.config, self.r, self.num_npcs
        flat_tiles = self.tiles.reshape(-1)
        here = self._env_base + self.pos_y * self.Wp + self.pos_x  # [B, N]
        # views: paint live NPCs into the grid, gather each window, restore what lay under them
        occupied = here[self.alive]
        under = flat_tiles[occupied]
        flat_tiles[occupied] = np.where(self.signalling[self.alive], T.NPC_SIGNAL, T.NPC)
        views = self.views
        views[:] = self._windows[here + self._corner]
        flat_tiles[occupied] = under
        own_tile = flat_tiles[here]
        views[:, :, r, r] = own_tile
        p = self.proprio
        if cfg.signal_radius > 0 and N > 1:  # heard, not seen: counted before night and fog hide cells
            if self.signalling.any():
                k = min(cfg.signal_radius, r)
                near = views[:, :, r - k:r + k + 1, r - k:r + k + 1] == T.NPC_SIGNAL
                p[..., P.HEARD_SIGNAL] = near.sum(axis=(2, 3)) / (N - 1)
            else:
                p[..., P.HEARD_SIGNAL] = 0.0
        neighbours = views[:, :, self._nb_rows, self._nb_cols]  # [B, N, 4]: N, S, E, W
        night = self._night()
        if self._sky:
            radius = np.full(self.num_envs, r)
            radius = np.where(night, np.minimum(radius, cfg.night_view_radius), radius)
            radius = np.where(self.weather == WEATHER_FOG, np.minimum(radius, cfg.fog_view_radius), radius)
            hidden = self._hidden_by_radius[radius]  # [B, V, V]
            np.copyto(views, np.uint8(T.UNSEEN), where=hidden[:, None])

        # the cell in reach (tiles there never hold NPCs, so the view's codes are the tiles')
        usable = REACHABLE[neighbours]
        slot = self._reach_slot(usable, self.facing)
        if usable.any():
            flat = neighbours.reshape(-1, 4)
            reach_tile = flat[np.arange(len(flat)), slot.reshape(-1)].reshape(slot.shape)
        else:  # nothing to drink, open or answer next to anyone: the tile in reach does not matter
            reach_tile = np.zeros_like(self.reach_tile)
        self.reach_tile[:] = reach_tile
        facing_lock = reach_tile == T.LOCK

        # proprio
        p[..., P.LIFEFORCE] = self.lifeforce
        p[..., P.BATTERY] = self.battery
        p[..., P.HAS_KEY] = self.has_key
        p[..., P.LAST_REWARD] = self.rewards
        if cfg.day_length > 0:
            phase = 2 * np.pi * (self.t % cfg.day_length) / cfg.day_length
            p[..., P.DAY_SIN] = np.sin(phase)[:, None]
            p[..., P.DAY_COS] = np.cos(phase)[:, None]
        else:
            p[..., P.DAY_SIN] = 0.0
            p[..., P.DAY_COS] = 1.0
        p[..., P.NIGHT] = night[:, None]
        p[..., P.FOG] = (self.weather == WEATHER_FOG)[:, None]
        p[..., P.RAIN] = (self.weather == WEATHER_RAIN)[:, None]
        p[..., P.FACING_LOCK] = facing_lock
        p[..., P.LOCK_A:P.LOCK_SHOWN + 1] = 0.0
        if cfg.n_locks > 0 and facing_lock.any():
            who = np.flatnonzero(facing_lock)
            cells = here.reshape(-1)[who] + self._neighbour_offsets[slot.reshape(-1)[who]]
            lock = p.reshape(-1, PROPRIO_SIZE)
            lock[who, P.LOCK_A] = self.lock_a.reshape(-1)[cells] / 10
            lock[who, P.LOCK_B] = self.lock_b.reshape(-1)[cells] / 10
            lock[who, P.LOCK_OP] = self.lock_op.reshape(-1)[cells] / 2
            lock[who, P.LOCK_SHOWN] = self._lock_shown(cells) / 100
        p[..., P.TIME] = (self.t / cfg.max_steps)[:, None]
        p[..., P.FACING_N:P.FACING_W + 1] = 0.0
        p.reshape(-1)[self._proprio_rows + P.FACING_N - A.NORTH + self.facing.reshape(-1)] = 1.0
        p[~self.alive] = 0.0

        # action masks
        m = self.action_mask
        m[..., A.STAY] = True
        m[..., A.NORTH:A.WEST + 1] = ~BLOCKING[neighbours]
        m[..., A.INTERACT] = (
            (own_tile == T.FOOD) | (own_tile == T.CHARGER) | ((own_tile == T.KEY) & ~self.has_key)
            | (reach_tile == T.WATER) | facing_lock | ((reach_tile == T.DOOR) & self.has_key))
        m[..., A.SIGNAL] = True
        m[~self.alive] = False
        m[..., A.STAY] = True
