"""nimmerverse grid world — PettingZoo ParallelEnv over one env of the batched core.

    from world import parallel_env
    env = parallel_env(stage=3, render_mode="rgb_array")

## Description
NPCs forage, avoid hazards, recharge, open doors with keys and crack arithmetic locks on a grid
whose richness grows over six curriculum stages (`world.stages`):

| stage | name    | grid  | NPCs | adds                                                                 |
|-------|---------|-------|------|----------------------------------------------------------------------|
| 0     | meadow  | 16x16 | 4    | food; survive by foraging                                            |
| 1     | walls   | 24x24 | 4    | random walls, obstacles and corridors                                |
| 2     | hazards | 24x24 | 4    | fire, water, charging stations; battery drains with movement         |
| 3     | crowd   | 32x32 | 16   | scarcer food, NPC-NPC blocking, signals heard by neighbours, respawn  |
| 4     | locks   | 32x32 | 16   | food vaults behind doors (keys) and arithmetic locks; maze walls     |
| 5     | full    | 64x64 | 32   | all of the above, plus day/night and weather (fog, rain)             |

## Agents
`possible_agents = ["npc_0", ..., "npc_{N-1}"]`, N from the stage.

## Action space
`Discrete(7)`: 0 stay, 1 north, 2 south, 3 east, 4 west, 5 interact, 6 signal (`world.tiles.Action`).
Interact eats food / charges / picks up a key on the NPC's own cell, else drinks water, opens a door
(with a key) or answers a lock in reach (faced cell, else the first adjacent one). A lock's display
cycles through candidate answers; interacting while it shows the right one opens it, otherwise it
costs lifeforce. Moves into blocking cells fail. Illegal but in-range actions are no-ops; the
observation's `action_mask` marks the useful ones.

## Observation space
`Dict(view=Box(0, 11, (2r+1, 2r+1), uint8), proprio=Box(-inf, inf, (20,), float32),
action_mask=Box(0, 1, (7,), int8))`. `view` holds cell codes (`world.tiles.Tile`) centred on the
NPC (r = 3, or 4 in stage 5; the centre shows the tile underfoot; night and fog hide far cells as
UNSEEN). `proprio` is laid out by `world.tiles.Proprio`: lifeforce, battery, key, last reward,
day phase, night, fog, rain, heard signals, the lock in reach (a, b, op, shown), time, facing.

With `obs="flat"` each observation is instead one `Box(shape=(V*V + 20 + 7,), float32)` vector, the
form vectorising wrappers and Stable-Baselines3 take: `obs[:V*V]` the view's cell codes (row-major,
as floats 0-11), `obs[V*V:V*V+20]` the proprio vector, `obs[-7:]` the action mask (1 = useful; SB3's
plain PPO ignores it, a masking policy can slice it off). `flat_layout(V)` gives the three slices.

## Stable-Baselines3 (PettingZoo's SuperSuit recipe; `pip install -e ".[sb3]"`)
    import supersuit as ss
    from stable_baselines3 import PPO
    env = parallel_env(stage=2, obs="flat")
    env = ss.black_death_v3(env)  # stages 0-2: dead NPCs see zeros and their actions are ignored
    vec = ss.pettingzoo_env_to_vec_env_v1(env)  # one gym VecEnv slot per NPC
    vec = ss.concat_vec_envs_v1(vec, 4, num_cpus=1, base_class="stable_baselines3")  # 4 copies
    model = PPO("MlpPolicy", vec, n_steps=256, verbose=0).learn(total_timesteps=100_000)
All NPCs share one policy there (parameter sharing); per-NPC brains are `python -m train`'s own
route. Seed with `stable_baselines3.common.utils.set_random_seed`, not `PPO(seed=...)`: SuperSuit's
vec env has no `seed()` for SB3 to call. Stages 3-5 respawn, so NPCs never leave and black_death
changes nothing there. `tests/test_world_sb3.py` runs this recipe.

## Rewards
Per tick: the change in lifeforce (lifeforce decays every tick; food, water and charging restore;
fire, exhaustion and wrong lock answers drain) + 1 per door or lock opened - 1 on death.

## Episode end and death
Episodes truncate at the stage's `max_steps`. Stages 0-2 (no respawn): death is final — the agent
is terminated and leaves `agents`; the episode also ends when every NPC is dead. Stages 3-5
(respawn after `respawn_delay` ticks): PettingZoo's API does not allow an agent back into `agents`
after termination (PettingZoo issue 530), so death there is *not* a termination: the agent stays,
`infos[agent]["dead"]` is True while it waits, `infos[agent]["died"]` is True on the tick it died,
its actions are ignored (its mask allows only stay) and it comes back with full lifeforce.
Stepping a finished episode (no agents left) with no actions returns empty dicts and changes
nothing, as PettingZoo's own environments do; an action for any agent then raises `ValueError`.

## Success (per stage, used by the curriculum)
An NPC succeeds if it never died during the episode (stage 4: and opened at least one door or
lock). Measured over 200 episodes each (seed 0, `world.rollout.evaluate`):

| stage | uniform random | heuristic (`world.heuristics`) |
|-------|----------------|--------------------------------|
| 0     | 0.003          | 0.960                          |
| 1     | 0.000          | 0.740                          |
| 2     | 0.004          | 0.734                          |
| 3     | 0.001          | 0.604                          |
| 4     | 0.000          | 0.193                          |
| 5     | 0.000          | 0.233                          |

## Rendering
`metadata["render_modes"] = ["human", "rgb_array"]`, `metadata["render_fps"] = 20`; the mode is
chosen once, `parallel_env(..., render_mode=...)`. `rgb_array`: `render()` returns the grid as an
HWC uint8 image (8 pixels a cell). `human`: `reset()` and every `step()` draw the frame in the
viewer's window (`world.viewer_app`: legend, NPC panel, its keys; click an NPC to inspect it) at
`render_fps`, and `render()` returns None; space pauses the caller until space or `.` again, and
closing the window stops drawing until the next `reset()`. `close()` closes the window. Without a
display (Linux with neither DISPLAY nor WAYLAND_DISPLAY) `render_mode="human"` raises `RuntimeError`
saying so, unless `SDL_VIDEODRIVER` is set: with `SDL_VIDEODRIVER=dummy` it draws off screen without
waiting (what the tests do). pygame is imported only for `human`, without its banner.

## Arguments
`parallel_env(stage=0, render_mode=None, obs="dict", **overrides)`: `stage` is an index 0-5 or a
name; `obs` is "dict" (view, proprio, action_mask) or "flat" (one Box); any
`world.config.WorldConfig` field can be overridden (e.g. `n_npcs=8`). Unknown stages, unknown
fields and invalid values raise `ValueError` naming the field.

## Version history
- v0: initial release; `obs="flat"` added for SuperSuit / Stable-Baselines3; `human` mode draws
  with the viewer (it showed a bare image before); stage 4's `food_cap` 56 -> 110, so its vaults'
  54 food items no longer stop regrowth on the open map (heuristic success unchanged: 0.193); stage 5's
  170 -> 314 for its 144 (heuristic 0.228 -> 0.233).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from world.core import GridWorld
from world.render import frame_rgb, no_display_reason
from world.stages import stage_config
from world.tiles import NUM_ACTIONS, NUM_CODES, PROPRIO_SIZE, Action, Tile

#: The observation forms `parallel_env(obs=...)` offers.
OBS_FORMS = ("dict", "flat")


def flat_layout(view_size: int) -> dict[str, slice]:
    """Where the view codes, the proprio vector and the action mask sit in a flat observation."""
    v = view_size * view_size
    return {"view": slice(0, v), "proprio": slice(v, v + PROPRIO_SIZE),
            "action_mask": slice(v + PROPRIO_SIZE, v + PROPRIO_SIZE + NUM_ACTIONS)}


class NimmerverseEnv(ParallelEnv):
    """PettingZoo ParallelEnv view of one env of `GridWorld`."""

    metadata = {"render_modes": ["human", "rgb_array"], "name": "nimmerverse_v0", "is_parallelizable": True,
                "render_fps": 20}

    def __init__(self, stage: int | str = 0, render_mode: str | None = None, obs: str = "dict",
                 **overrides: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: choose one of {self.metadata['render_modes']}")
        if obs not in OBS_FORMS:
            raise ValueError(f"obs={obs!r}: choose one of {', '.join(OBS_FORMS)}")
        self.obs = obs
        self.config = stage_config(stage, **overrides)
        if render_mode == "human" and (reason := no_display_reason()):
            raise RuntimeError(f"render_mode='human': {reason}; use render_mode='rgb_array', "
                               "or set SDL_VIDEODRIVER=dummy to draw off screen")
        self.render_mode = render_mode
        self.core = GridWorld(self.config, num_envs=1, autoreset=False)
        self.possible_agents = [f"npc_{i}" for i in range(self.config.n_npcs)]
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        V = self.config.view_size
        obs_space: spaces.Space = spaces.Dict({
            "view": spaces.Box(0, NUM_CODES - 1, (V, V), np.uint8),
            "proprio": spaces.Box(-np.inf, np.inf, (PROPRIO_SIZE,), np.float32),
            "action_mask": spaces.Box(0, 1, (NUM_ACTIONS,), np.int8),
        })
        if obs == "flat":
            low = np.concatenate([np.zeros(V * V), np.full(PROPRIO_SIZE, -np.inf), np.zeros(NUM_ACTIONS)])
            high = np.concatenate([np.full(V * V, NUM_CODES - 1), np.full(PROPRIO_SIZE, np.inf),
                                   np.ones(NUM_ACTIONS)])
            obs_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self._observation_spaces = {agent: obs_space for agent in self.possible_agents}
        self._action_spaces = {agent: spaces.Discrete(NUM_ACTIONS) for agent in self.possible_agents}
        self.agents: list[str] = []
        self._viewer: Any = None  # world.viewer_app.Viewer once human mode has drawn
        self._closed_by_user = False
        self._actions = np.zeros((1, self.config.n_npcs), dtype=np.int64)

    def observation_space(self, agent: str) -> spaces.Space:
        """The observation space of an agent (the same object every call)."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        """The action space of an agent (the same object every call)."""
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode; the same seed gives the same episode."""
        self.core.reset(seed)
        self.agents = list(self.possible_agents)
        self._actions[:] = Action.STAY
        self._closed_by_user = False
        if self.render_mode == "human":
            self.render()
        return self._observations(self.agents), self._infos(self.agents)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Apply one action per live agent (missing ones stay) and advance one tick."""
        if not self.agents:  # a finished episode: nothing happens (SuperSuit's black_death relies on it)
            if actions:
                agent = next(iter(actions))
                raise ValueError(f"actions[{agent!r}]: the episode is over (no agents left); call reset()")
            return {}, {}, {}, {}, {}
        self._actions[:] = Action.STAY
        for agent, action in actions.items():
            index = self._index.get(agent)
            if index is None:
                raise ValueError(f"actions[{agent!r}]: unknown agent")
            if agent not in self.agents:
                raise ValueError(f"actions[{agent!r}]: agent is terminated and cannot act")
            if isinstance(action, bool) or not isinstance(action, int | np.integer) and not (
                    isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu"):
                raise ValueError(f"actions[{agent!r}]={action!r}: must be an integer action")
            if not 0 <= int(action) < NUM_ACTIONS:
                raise ValueError(f"actions[{agent!r}]={action!r}: out of range 0..{NUM_ACTIONS - 1}")
            self._actions[0, index] = int(action)
        core = self.core
        core.step(self._actions)
        acting = self.agents
        observations = self._observations(acting)
        index = self._index
        reward, term = core.rewards[0].tolist(), core.terminals[0].tolist()
        trunc = core.truncations[0].tolist()
        rewards = {a: reward[index[a]] for a in acting}
        terminations = {a: term[index[a]] for a in acting}
        truncations = {a: trunc[index[a]] for a in acting}
        infos = self._infos(acting)
        self.agents = [a for a in acting if not (terminations[a] or truncations[a])]
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def render(self) -> np.ndarray | None:
        """rgb_array: an HWC uint8 frame; human: draw the frame in the viewer's window (None)."""
        if self.render_mode is None:
            return None
        frame = self.core.frame(0)
        if self.render_mode == "rgb_array":
            return frame_rgb(frame)
        if self._closed_by_user:
            return None
        if self._viewer is None:
            self._viewer = self._open_viewer()
        frame["actions"] = self._actions[0].copy()
        if not self._viewer.show(frame):
            self.close()
            self._closed_by_user = True
        return None

    def close(self) -> None:
        """Close the window, if any."""
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    def _open_viewer(self) -> Any:
        from world import viewer_app  # pygame (without its banner) only for human mode

        name = f"env stage {self.config.stage} ({self.config.name})"
        try:
            return viewer_app.Viewer(viewer_app.PushedFrames(name), speed=float(self.metadata["render_fps"]))
        except viewer_app.pygame.error as error:
            raise RuntimeError(f"render_mode='human': cannot open a window ({error}); use render_mode="
                               "'rgb_array', or set SDL_VIDEODRIVER=dummy to draw off screen") from None

    def state(self) -> np.ndarray:
        """The global state: the unpadded tile grid with NPCs painted on (uint8 [H, W])."""
        frame = self.core.frame(0)
        grid = frame["tiles"].copy()
        alive = frame["alive"]
        grid[frame["npc_y"][alive], frame["npc_x"][alive]] = Tile.NPC
        return grid

    # --------------------------------------------------------------------------------------
    def _observations(self, agents: list[str]) -> dict[str, Any]:
        # one copy per buffer and tick; each agent gets slices of it (the core rewrites its buffers)
        core = self.core
        index = self._index
        if self.obs == "flat":
            n = self.config.n_npcs
            parts = [core.views[0].reshape(n, -1), core.proprio[0], core.action_mask[0]]
            flat = np.concatenate(parts, axis=1, dtype=np.float32)
            return {a: flat[index[a]] for a in agents}
        views, proprio = core.views[0].copy(), core.proprio[0].copy()
        masks = core.action_mask[0].astype(np.int8)
        return {a: {"view": views[index[a]], "proprio": proprio[index[a]], "action_mask": masks[index[a]]}
                for a in agents}

    def _infos(self, agents: list[str]) -> dict[str, dict[str, Any]]:
        core, index = self.core, self._index
        alive, died, life = core.alive[0].tolist(), core.died[0].tolist(), core.lifeforce[0].tolist()
        return {a: {"dead": not alive[index[a]], "died": died[index[a]], "lifeforce": life[index[a]]}
                for a in agents}


def parallel_env(stage: int | str = 0, render_mode: str | None = None, obs: str = "dict",
                 **overrides: Any) -> NimmerverseEnv:
    """Create the PettingZoo ParallelEnv for a stage (index 0-5 or name), with field overrides."""
    return NimmerverseEnv(stage=stage, render_mode=render_mode, obs=obs, **overrides)
