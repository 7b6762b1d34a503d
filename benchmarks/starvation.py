"""Why NPCs starve on stage 4: ``python -m benchmarks.starvation`` prints one JSON object.

The benchmark's own setting (``benchmarks.cortex``): the scripted heuristic drives every NPC under the
heuristic governor, without the cortex (``none``) and with the in-process nyx engine (``cortex``); the
same seeds and episodes. For each run, with the prefix ``<run>_``:

- ``success``, ``deaths`` (per NPC-episode), ``never_died``, ``opened_any`` (fractions of NPC-episodes);
- where lifeforce goes, per alive NPC-tick: ``drain_decay``, ``drain_exhaustion`` (moves on an empty
  battery), ``drain_thinking`` (brain calls and escalations, charged through the world's hook),
  ``drain_fire``; and what eating brings back, ``gain_food``;
- ``food_wasted`` (share of eaten food's lifeforce lost to the clip at 1.0: eaten while sated),
  ``eats_while_sated`` (share of meals at lifeforce > 1 - food_gain);
- ``regrowth_capped`` (share of env-ticks when the env's food count, vault food included, sits at
  ``food_cap`` so nothing regrows), ``food_outside_vaults`` / ``food_in_vaults`` (mean counts);
- per death, the last ``WINDOW`` ticks before it (means over deaths): ``death_battery_empty`` (share of
  those ticks with an empty battery), ``death_food_in_view``, ``death_in_vault``, ``death_on_plan``
  (following a cortex plan), ``death_ticks_since_meal``, ``death_food_steps`` (steps to the nearest
  reachable food on the true map) and ``death_tick``.

``ablation_*`` keys: success and deaths of the ``none`` and ``cortex`` runs with one world rule changed,
to size each cause: ``no_exhaustion`` (moves on an empty battery cost nothing) and ``vault_food_in_cap``
(``food_cap`` lowered by the vault food, 9 per vault: stage 4's preset before the fix, where the food
locked in the vaults filled the cap and stopped regrowth on the open map).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections import deque

import numpy as np

from governor.config import GovernorConfig
from governor.drivers import ScriptedDriver
from governor.runtime import GovernedReflex
from nervous.cells import CellBank
from nervous.config import NervousConfig
from nervous.nerves import NerveBank
from organs.config import CortexConfig
from organs.link import CortexLink
from world.config import WorldConfig
from world.core import GridWorld
from world.stages import stage_config
from world.tiles import BLOCKING, A, T

WINDOW = 50
"""Ticks before a death that its context covers."""
_WALK = ~BLOCKING.copy()
_WALK[T.FIRE] = False


def food_steps(tiles: np.ndarray, y: int, x: int) -> int:
    """Steps from (y, x) to the nearest food over walkable tiles of one padded grid (-1: none reachable)."""
    seen = {(y, x)}
    queue = deque([(y, x, 0)])
    while queue:
        cy, cx, d = queue.popleft()
        if tiles[cy, cx] == T.FOOD:
            return d
        for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
            if (ny, nx) not in seen and _WALK[tiles[ny, nx]]:
                seen.add((ny, nx))
                queue.append((ny, nx, d + 1))
    return -1


def vault_rooms(world: GridWorld) -> np.ndarray:
    """bool [B, Hp, Wp]: the cells inside the envs' vault rooms."""
    inside = np.zeros(world.tiles.shape, dtype=bool)
    for b in range(world.num_envs):
        for y, x in zip(world.vault_room_y[b], world.vault_room_x[b], strict=True):
            inside[b, y:y + 3, x:x + 3] = True
    return inside


def diagnose(config: WorldConfig, cortex: bool, episodes: int, seed: int,
             num_envs: int = 50) -> dict[str, float]:
    """Run whole episodes (no autoreset: one batch after another) and measure where lifeforce went."""
    nervous = NervousConfig()
    cfg = config
    totals: dict[str, float] = {}
    deaths: list[dict[str, float]] = []
    npc_episodes = 0
    batches = -(-episodes // num_envs)
    link = CortexLink(CortexConfig(backend="engine")) if cortex else None
    try:
        for batch in range(batches):
            world = GridWorld(cfg, num_envs=num_envs, seed=seed + batch, autoreset=False)
            driver = ScriptedDriver(CellBank(nervous.cell), seed=seed + batch)
            reflex = GovernedReflex(GovernorConfig(kind="heuristic"), nervous.lifeforce,
                                    NerveBank(nervous.nerves) if nervous.nerves.enabled else None,
                                    cells=driver.bank, escalator=link)
            _run_batch(world, driver, reflex, totals, deaths)
            npc_episodes += world.num_envs * world.num_npcs
    finally:
        if link is not None:
            link.close()
    ticks = totals.pop("alive_ticks")
    env_ticks = totals.pop("env_ticks")
    eaten = max(totals.pop("eats"), 1.0)
    out = {
        "success": totals.pop("success") / npc_episodes,
        "deaths": totals.pop("deaths") / npc_episodes,
        "never_died": totals.pop("never_died") / npc_episodes,
        "opened_any": totals.pop("opened_any") / npc_episodes,
        "food_wasted": totals["wasted"] / max(totals["gain_food"] + totals.pop("wasted"), 1e-9),
        "eats_while_sated": totals.pop("sated_eats") / eaten,
        "regrowth_capped": totals.pop("capped") / env_ticks,
        "food_outside_vaults": totals.pop("food_outside") / env_ticks,
        "food_in_vaults": totals.pop("food_inside") / env_ticks,
    }
    out |= {key: value / ticks for key, value in totals.items()}
    for key in deaths[0] if deaths else ():
        out[f"death_{key}"] = float(np.mean([d[key] for d in deaths]))
    out["death_count"] = float(len(deaths))
    return out


def _run_batch(world: GridWorld, driver: ScriptedDriver, reflex: GovernedReflex, totals: dict[str, float],
               deaths: list[dict[str, float]]) -> None:
    """One batch of whole episodes, adding to totals and deaths."""
    cfg = world.config
    B, N = world.num_envs, world.num_npcs
    rows = np.arange(B)[:, None]
    inside = vault_rooms(world)
    history = {name: np.zeros((cfg.max_steps, B, N), dtype=bool)
               for name in ("battery_empty", "food_in_view", "in_vault", "on_plan")}
    last_meal = np.zeros((B, N), dtype=np.int64)

    def add(key: str, value: float) -> None:
        totals[key] = totals.get(key, 0.0) + float(value)

    for t in range(cfg.max_steps):
        alive = world.alive.copy()
        food = world.tiles == T.FOOD
        add("capped", (world.food_count >= cfg.food_cap).sum())
        add("food_outside", (food & ~inside).sum())
        add("food_inside", (food & inside).sum())
        add("env_ticks", B)
        actions = reflex(world, driver(world))[0]
        history["battery_empty"][t] = world.battery <= 0
        history["food_in_view"][t] = (world.views == T.FOOD).any(axis=(2, 3))
        history["in_vault"][t] = inside[rows, world.pos_y, world.pos_x]
        history["on_plan"][t] = reflex.following
        # what this tick will cost or bring, read before the step changes it
        own = world.tiles[rows, world.pos_y, world.pos_x]
        eats = alive & (actions == A.INTERACT) & (own == T.FOOD)
        life, battery = world.lifeforce.copy(), world.battery.copy()
        y0, x0 = world.pos_y.copy(), world.pos_x.copy()
        thinking = world.pending_cost.copy()
        world.step(actions)
        moved = (world.pos_y != y0) | (world.pos_x != x0)
        exhausted = alive & moved & (battery <= 0)
        add("alive_ticks", alive.sum())
        add("drain_decay", cfg.lifeforce_decay * alive.sum())
        add("drain_exhaustion", cfg.exhaustion_cost * exhausted.sum())
        add("drain_thinking", thinking[alive].sum())
        on_fire = alive & (world.tiles[rows, world.pos_y, world.pos_x] == T.FIRE)
        add("drain_fire", cfg.fire_drain * on_fire.sum())
        kept = np.minimum(cfg.food_gain, 1.0 - life)
        add("gain_food", kept[eats].sum())
        add("wasted", (cfg.food_gain - kept)[eats].sum())
        add("eats", eats.sum())
        add("sated_eats", (eats & (life > 1.0 - cfg.food_gain)).sum())
        last_meal[eats] = t
        for b, n in zip(*np.nonzero(world.died), strict=True):
            lo = max(0, t - WINDOW + 1)
            context = {name: float(h[lo:t + 1, b, n].mean()) for name, h in history.items()}
            context |= {"ticks_since_meal": float(t - last_meal[b, n]), "tick": float(t),
                        "food_steps": float(food_steps(world.tiles[b], world.pos_y[b, n], world.pos_x[b, n]))}
            deaths.append(context)
        last_meal[world.died] = t
    died, opened = world.ep_deaths > 0, world.ep_opened > 0
    add("success", (~died & (opened | (not cfg.success_needs_unlock))).sum())
    add("deaths", world.ep_deaths.sum())
    add("never_died", (~died).sum())
    add("opened_any", opened.sum())


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    """Run the diagnosis and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", type=int, default=4)
    parser.add_argument("--no-ablations", action="store_true")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes={args.episodes}: must be >= 1")
    start = time.perf_counter()
    config = stage_config(args.stage)
    out: dict[str, float | int] = {"cores": len(os.sched_getaffinity(0)), "stage": args.stage,
                                   "episodes": args.episodes, "seed": args.seed}
    for name, cortex in (("none", False), ("cortex", True)):
        for key, value in diagnose(config, cortex, args.episodes, args.seed).items():
            out[f"{name}_{key}"] = round(value, 5)
    if not args.no_ablations:
        ablations = {"no_exhaustion": {"exhaustion_cost": 0.0},
                     "vault_food_in_cap": {"food_cap": max(config.food_cap - 9 * config.n_vaults, 0)}}
        for name, change in ablations.items():
            for run, cortex in (("none", False), ("cortex", True)):
                res = diagnose(dataclasses.replace(config, **change), cortex, args.episodes, args.seed)
                out[f"ablation_{name}_{run}_success"] = round(res["success"], 4)
                out[f"ablation_{name}_{run}_deaths"] = round(res["deaths"], 4)
                out[f"ablation_{name}_{run}_regrowth_capped"] = round(res["regrowth_capped"], 4)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["benchmark_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
