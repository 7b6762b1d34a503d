"""An NPC's numbers read straight from the batched world (in-process runtime): seen maps, situations, views.

``SeenMaps`` remembers, per env and NPC slot, every cell each NPC has seen in its views (the grid's
frame, unpadded; ``Tile.UNSEEN`` where it has seen nothing); ``update(world)`` after every world step.
``npc_numbers`` builds the boundary's ``NpcNumbers`` of one NPC for a collapse, and ``npc_view`` the
plan follower's ``NpcView``; both read the world's arrays and change nothing.
"""

from __future__ import annotations

import numpy as np

from nervous.messages import REGIONS, CollapseEvent
from organs.boundary.encoder import NpcNumbers
from organs.plan import NpcView
from world.core import GridWorld
from world.tiles import P, Tile


class SeenMaps:
    """What each NPC of a batched world has seen: uint8 [B, N, H, W] tile codes."""

    def __init__(self, world: GridWorld) -> None:
        self.maps = np.full((world.num_envs, world.num_npcs, world.H, world.W), Tile.UNSEEN, dtype=np.uint8)
        self.update(world)

    def forget(self, env: int) -> None:
        """Forget everything seen in one env (its episode restarted)."""
        self.maps[env] = Tile.UNSEEN

    def update(self, world: GridWorld) -> None:
        """Write every live NPC's current view into its map (NPCs in view read as what they stand on)."""
        envs, npcs = np.nonzero(world.alive)
        if not len(envs):
            return
        r, V = world.r, world.V
        offsets = np.arange(V) - r
        rows = (world.pos_y[envs, npcs] - r)[:, None] + offsets  # unpadded rows of each view's rows [K, V]
        cols = (world.pos_x[envs, npcs] - r)[:, None] + offsets
        views = world.views[envs, npcs]  # [K, V, V]
        tiles = world.tiles[envs[:, None, None], rows[:, :, None] + r, cols[:, None, :] + r]
        seen = np.where((views == Tile.NPC) | (views == Tile.NPC_SIGNAL), tiles, views)
        keep = ((views != Tile.UNSEEN) & ((rows >= 0) & (rows < world.H))[:, :, None]
                & ((cols >= 0) & (cols < world.W))[:, None, :])
        k, i, j = np.nonzero(keep)
        self.maps[envs[k], npcs[k], rows[k, i], cols[k, j]] = seen[k, i, j]

def npc_numbers(
    world: GridWorld,
    env: int,
    seen: SeenMaps,
    event: CollapseEvent,
    confidence: np.ndarray | None = None,
    value: np.ndarray | None = None,
) -> NpcNumbers:
    """The boundary's numbers of NPC ``event.npc`` in one env at a collapse (waves per region optional)."""
    n, r = event.npc, world.r
    if not 0 <= n < world.num_npcs:
        raise ValueError(f"event.npc={n}: no such NPC slot (world has {world.num_npcs})")
    return NpcNumbers(
        npc=n, tick=int(world.t[env]), x=int(world.pos_x[env, n]) - r, y=int(world.pos_y[env, n]) - r,
        proprio=world.proprio[env, n].copy(), seen=seen.maps[env, n].copy(), region=event.region,
        collapse_confidence=event.confidence, collapse_cells=list(event.cells),
        confidence=np.zeros(len(REGIONS), np.float32) if confidence is None else confidence,
        value=np.zeros(len(REGIONS), np.float32) if value is None else value,
        opened=int(world.ep_opened[env, n]),
    )  # fmt: skip


def npc_view(world: GridWorld, env: int, npc: int, seen: SeenMaps) -> NpcView:
    """The plan follower's view of one NPC now."""
    r, proprio = world.r, world.proprio[env, npc]
    lock_shown = int(round(float(proprio[P.LOCK_SHOWN]) * 100)) if proprio[P.FACING_LOCK] > 0.5 else None
    return NpcView(
        x=int(world.pos_x[env, npc]) - r,
        y=int(world.pos_y[env, npc]) - r,
        facing=int(world.facing[env, npc]),
        has_key=bool(world.has_key[env, npc]),
        seen=seen.maps[env, npc],
        lock_shown=lock_shown,
    )
