"""Viewer drawing: one frame (arrays) onto a pygame Surface in the seed's visual language.

Layout (fixed window, ``WINDOW`` pixels): the grid viewport top left, a side panel to its right (one
row per NPC: lifeforce, battery, stage, tick rate, CPU use, a violet dot when a gate is open; below it
the selected NPC's last escalations from the decision trails (``ViewState.trail_lines``, tab-separated
cells at ``TRAIL_TABS``), the legend, and the inspector of the selected NPC, with the governor's tick
rate, CPU quota, open gates and LLM priority), and the oscilloscope pane along the bottom (confidence
waveform of the selected NPC's regions over recent frames). Everything sits on the environment's
background colour.

Colours (seed, "Visual Language"):

| property                | represents  | here                                                       |
|-------------------------|-------------|------------------------------------------------------------|
| background / container  | environment | ``ENV_BACKGROUND``: dev green, staging amber, prod blue    |
| node / edge colour      | domain      | ``DOMAIN_COLOURS``: cognitive violet, nervous cyan, organs coral |
| line style              | direction   | ``draw_line``: solid primary, dashed async, dotted tentative |
| separate pane           | confidence  | the oscilloscope                                           |

NPC bodies are nervous cyan (as cells are), dimmer as lifeforce falls, drawn as MiniGrid draws its
agent: a triangle pointing the way the NPC faces, with its id on it once cells are large enough.

Kinds of tile carry a shape as well as a colour (``draw_glyph``: food a dot, fire a flame, water
waves, a charger a bolt, a key a key, a door planks and a knob, a lock a padlock), so they read
without colour (colour-blind safe); the side panel's legend shows each shape with its name.

On the grid: waves are ripples (one ring per region, ``REGION_COLOURS``, ring k at
``ripple_radius(k, ...)``, thicker with confidence; tentative waves below 0.5 are dotted rings);
a signalling NPC gets a dashed white ring (an async broadcast); a nerve override is a magenta
notch in the NPC's top-right corner; an NPC whose gate opened within the last second (``gate_flash``)
gets a solid violet ring (the way to the cortex, cognitive violet).

The frame is a ``GridWorld.frame`` / ``Replay.frame`` dict; optional keys: ``waves`` float [N, R]
(with ``regions`` names given to the drawer), ``overrides`` bool [N], ``actions`` int [N],
``tick_rate`` [N] and ``cpu_use`` [N] (cores, shown as % of one core), and the governor's as the
live organism applied them: ``cpu_quota`` [N] (% of a core), ``llm_priority`` [N] (-1: none yet),
``gates`` [N] (bit k: ``nervous.messages.REGIONS[k]`` open) and ``gate_flash`` bool [N]; each shown
as "-" when absent; and the cortex's: ``escalations`` [N] (count), ``escalation_ago`` [N] (seconds
since the last one, -1 none), ``escalation_outcome`` [N] (its outcome, ``ESCALATION_OUTCOMES`` index)
and ``planning`` bool [N] (following a plan), shown when present. A frame-wide ``organs`` dict (organ name
-> lifecycle state: UNLOADED, LOADING, READY, PROCESSING) is shown as one line in organs coral under
the panel's header (``organ_line``), when present.

Speed: the tile layer is a palette-indexed 8-bit surface (one byte per cell) scaled with
``pygame.transform.scale`` and cached until tiles, night or the view change; text surfaces are cached
by string. ``python -m benchmarks.viewer`` measures the whole frame. pygame is imported here, so
import this module only where a display (or ``SDL_VIDEODRIVER=dummy``) is wanted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's banner stays out of the user's terminal
import pygame  # noqa: E402

from world.render import PALETTE, npc_shade  # noqa: E402
from world.tiles import Action, Tile  # noqa: E402

WINDOW = (964, 822)
MARGIN = 8
GRID_PX = 640
PANEL_W = WINDOW[0] - GRID_PX - 3 * MARGIN
SCOPE_H = WINDOW[1] - GRID_PX - 3 * MARGIN

ENV_BACKGROUND: dict[str, tuple[int, int, int]] = {
    "dev": (46, 125, 50),  # green
    "staging": (214, 140, 20),  # amber
    "prod": (30, 85, 170),  # blue
}
DOMAIN_COLOURS: dict[str, tuple[int, int, int]] = {
    "cognitive": (148, 87, 235),  # violet
    "nervous": tuple(int(v) for v in PALETTE[Tile.NPC]),  # cyan: NPC bodies are nervous-domain nodes
    "organs": (255, 127, 80),  # coral
}
REGION_COLOURS: dict[str, tuple[int, int, int]] = {
    "food": (170, 255, 60),
    "hazard": (255, 50, 50),
    "collision": (255, 165, 0),
    "math": (230, 110, 255),
    "social": (90, 170, 255),
    "energy": (255, 245, 90),
}
OVERRIDE_COLOUR = (255, 0, 200)
#: A gate opening (escalation towards the cortex): cognitive violet.
GATE_COLOUR = DOMAIN_COLOURS["cognitive"]
#: The organs' line in the side panel: organs coral.
ORGAN_COLOUR = DOMAIN_COLOURS["organs"]
#: Gate bits of the frame's ``gates`` column, in order (``nervous.messages.REGIONS``; world imports no bus).
GATE_REGIONS = ("food", "hazard", "collision", "math", "social", "energy")
#: Outcomes of the frame's ``escalation_outcome`` column, in order (``organs.link.OUTCOMES``).
ESCALATION_OUTCOMES = ("planned", "invalid_answer", "stale", "queue_full", "breaker_open", "failed")
SIGNAL_COLOUR = (255, 255, 255)
TEXT = (235, 235, 235)
DIM_TEXT = (150, 150, 150)
PANEL_BG = (18, 18, 22)
#: Layers the viewer can toggle, in key order (keys 1-6).
LAYERS = ("tiles", "npcs", "waves", "signals", "overrides", "sky")
#: Frames the oscilloscope shows.
SCOPE_FRAMES = 120
_FACING = {Action.NORTH: "N", Action.SOUTH: "S", Action.EAST: "E", Action.WEST: "W"}
#: Tiles drawn with a shape on top of their colour, and their legend names, in legend order.
GLYPHS: dict[Tile, str] = {Tile.FOOD: "food", Tile.FIRE: "fire", Tile.WATER: "water", Tile.CHARGER: "charger",
                           Tile.KEY: "key", Tile.DOOR: "door", Tile.LOCK: "lock"}
#: Ink of the shapes: dark on light tiles, light on water.
GLYPH_INK = (25, 25, 25)
WATER_INK = (225, 235, 255)
#: Smallest cell (pixels) that gets shapes; NPC ids need a larger one.
MIN_GLYPH_CELL, MIN_ID_CELL = 7, 18
#: Height of the legend in the side panel.
LEGEND_H = 6 * 16 + 8
#: Height of one line of the selected NPC's trail list (``ViewState.trail_lines``).
TRAIL_ROW_H = 13
#: Pixel offsets of a trail line's tab-separated cells: tick, region, call, outcome, latency, reward.
TRAIL_TABS = (0, 44, 94, 170, 222, 252)
_NIGHT_PALETTE = (PALETTE.astype(np.float32) * 0.55).astype(np.uint8)


def region_colour(name: str) -> tuple[int, int, int]:
    """The ripple / waveform colour of a wave region (grey for unknown names)."""
    return REGION_COLOURS.get(name, (200, 200, 200))


def ripple_radius(k: int, t: int, cell: int) -> int:
    """Pixel radius of region k's ripple ring at tick t: rings nest by region and breathe with t."""
    return max(2, round(cell * (0.7 + 0.45 * k) + (t % 3) * cell / 10))


def draw_line(surface: pygame.Surface, colour: Sequence[int], start: Sequence[float],
              end: Sequence[float], style: str = "solid", width: int = 1) -> None:
    """A line in a direction style: solid (primary), dashed (async) or dotted (tentative)."""
    if style == "solid":
        pygame.draw.line(surface, colour, start, end, width)
        return
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    if length < 1:
        return
    on, period = (6, 10) if style == "dashed" else (1, 4)
    dx, dy = (x1 - x0) / length, (y1 - y0) / length
    for s in range(0, int(length), period):
        e = min(s + on, length)
        a = (x0 + dx * s, y0 + dy * s)
        if style == "dotted":
            surface.fill(colour, (round(a[0] - width // 2), round(a[1] - width // 2), width, width))
        else:
            pygame.draw.line(surface, colour, a, (x0 + dx * e, y0 + dy * e), width)


def draw_ring(surface: pygame.Surface, colour: Sequence[int], centre: Sequence[float], radius: int,
              style: str = "solid", width: int = 1) -> None:
    """A circle outline in a direction style (see `draw_line`)."""
    if style == "solid":
        pygame.draw.circle(surface, colour, centre, radius, width)
        return
    steps = max(8, int(2 * math.pi * radius / (10 if style == "dashed" else 4)))
    cx, cy = centre
    for i in range(steps):
        a0 = 2 * math.pi * i / steps
        p0 = (cx + radius * math.cos(a0), cy + radius * math.sin(a0))
        if style == "dotted":
            surface.fill(colour, (round(p0[0] - width // 2), round(p0[1] - width // 2), width, width))
        else:
            a1 = a0 + 2 * math.pi * 0.6 / steps
            pygame.draw.line(surface, colour, p0, (cx + radius * math.cos(a1), cy + radius * math.sin(a1)),
                             width)


def draw_glyph(surface: pygame.Surface, kind: int, rect: pygame.Rect) -> None:
    """The shape of a tile kind inside `rect` (one grid cell); nothing for kinds without one."""
    c, x, y = rect.width, rect.x, rect.y
    if kind not in GLYPHS or c < MIN_GLYPH_CELL:
        return
    w = max(1, c // 10)
    cx, cy = x + c / 2, y + c / 2

    def at(u: float, v: float) -> tuple[float, float]:  # cell-relative coordinates in [0, 1]
        return x + u * c, y + v * c

    if kind == Tile.FOOD:  # a berry with a stalk
        pygame.draw.circle(surface, GLYPH_INK, (cx, cy + c * 0.08), max(2, c * 0.22))
        pygame.draw.line(surface, GLYPH_INK, (cx, cy - c * 0.12), at(0.62, 0.18), w)
    elif kind == Tile.FIRE:  # a flame
        flame = [at(0.5, 0.12), at(0.78, 0.62), at(0.62, 0.86), at(0.38, 0.86), at(0.22, 0.62)]
        pygame.draw.polygon(surface, GLYPH_INK, flame)
    elif kind == Tile.WATER:  # two waves
        for v in (0.38, 0.66):
            pygame.draw.lines(surface, WATER_INK, False, [at(0.12, v), at(0.31, v - 0.1), at(0.5, v),
                                                          at(0.69, v - 0.1), at(0.88, v)], w)
    elif kind == Tile.CHARGER:  # a lightning bolt
        pygame.draw.polygon(surface, GLYPH_INK, [at(0.58, 0.1), at(0.26, 0.56), at(0.48, 0.56), at(0.4, 0.9),
                                                 at(0.74, 0.42), at(0.52, 0.42)])
    elif kind == Tile.KEY:  # a ring and a bit
        pygame.draw.circle(surface, GLYPH_INK, at(0.3, 0.5), max(2, c * 0.17), w + 1)
        pygame.draw.line(surface, GLYPH_INK, at(0.45, 0.5), at(0.88, 0.5), w + 1)
        pygame.draw.line(surface, GLYPH_INK, at(0.76, 0.5), at(0.76, 0.7), w + 1)
    elif kind == Tile.DOOR:  # planks and a knob
        pygame.draw.rect(surface, GLYPH_INK, (*at(0.18, 0.1), c * 0.64, c * 0.8), w)
        pygame.draw.line(surface, GLYPH_INK, at(0.5, 0.1), at(0.5, 0.9), w)
        pygame.draw.circle(surface, GLYPH_INK, at(0.64, 0.52), max(1, c * 0.06))
    elif kind == Tile.LOCK:  # a padlock
        pygame.draw.rect(surface, GLYPH_INK, (*at(0.24, 0.46), c * 0.52, c * 0.42))
        pygame.draw.arc(surface, GLYPH_INK, (*at(0.32, 0.14), c * 0.36, c * 0.56), 0, math.pi, w + 1)


def gate_names(bits: int) -> list[str]:
    """The regions whose gate bit is set in a frame's ``gates`` value."""
    return [name for k, name in enumerate(GATE_REGIONS) if int(bits) >> k & 1]


def control_lines(frame: dict[str, Any], n: int) -> list[str]:
    """What steers NPC n: tick rate, CPU use and quota; open gates and LLM priority ("-": not in the frame,
    or no allocation yet); with cortex fields, its escalations (how many, the last one's age, on a plan)."""
    def column(name: str) -> Any:
        values = frame.get(name)
        return values[n] if values is not None and n < len(values) else None

    rate, cpu, quota = column("tick_rate"), column("cpu_use"), column("cpu_quota")
    priority, gates = column("llm_priority"), column("gates")
    heard = priority is not None and int(priority) >= 0  # an allocation reached this NPC
    pace = [
        f"tick {float(rate):g} Hz" if rate is not None else "tick -",
        f"cpu {100 * float(cpu):.0f} %" if cpu is not None else "cpu -",  # cores, as % of one core
        f"quota {float(quota):.3g} %" if quota is not None else "quota -",
    ]
    access = [
        f"gates {','.join(gate_names(gates)) or 'closed'}" if gates is not None and heard else "gates -",
        f"prio {int(priority)}" if heard else "prio -",
    ]
    lines = ["  ".join(pace), "  ".join(access)]
    count, ago, planning = column("escalations"), column("escalation_ago"), column("planning")
    if count is not None:  # the cortex: how often this NPC escalated, when last, and whether on a plan
        last = f", last {float(ago):.1f} s ago" if ago is not None and float(ago) >= 0 else ""
        outcome = column("escalation_outcome")
        if last and outcome is not None and 0 <= int(outcome) < len(ESCALATION_OUTCOMES):
            last += f" ({ESCALATION_OUTCOMES[int(outcome)]})"
        plan = "  on a plan" if planning is not None and planning else ""
        lines.append(f"cortex {int(count)} escalations{last}{plan}")
    return lines


def organ_line(frame: dict[str, Any]) -> str:
    """The organs' lifecycle states of a frame as one line ("" when the frame carries none)."""
    organs = frame.get("organs")
    if not organs:
        return ""
    return "organs  " + "  ".join(f"{name} {state}" for name, state in sorted(organs.items()))


def npc_triangle(left: float, top: float, size: float, facing: int) -> list[tuple[float, float]]:
    """Corners of an NPC's body in the cell at (left, top): a triangle whose tip points where it faces."""
    a, b = 0.1, 0.9
    corners = {  # (tip, base end, base end) in cell-relative coordinates
        Action.NORTH: ((0.5, a), (b, b), (a, b)),
        Action.SOUTH: ((0.5, b), (a, a), (b, a)),
        Action.EAST: ((b, 0.5), (a, a), (a, b)),
        Action.WEST: ((a, 0.5), (b, b), (b, a)),
    }.get(facing, ((0.5, a), (b, b), (a, b)))
    return [(left + u * size, top + v * size) for u, v in corners]


@dataclass
class ViewState:
    """What the viewer shows besides the frame: environment, selection, layers, status."""

    env: str = "dev"
    selected: int | None = None
    follow: bool = False
    layers: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(LAYERS, True))
    scope_regions: set[str] | None = None  # None: every region
    paused: bool = False
    speed: float = 10.0
    message: str = ""
    source: str = ""
    trail_lines: list[str] = field(default_factory=list)
    """The selected NPC's last escalations from the decision trails (a head line, then rows)."""


class Drawer:
    """Draws frames onto a surface of size ``WINDOW``; keeps caches between frames."""

    def __init__(self, regions: Sequence[str] = (), cells: Sequence[str] = ()) -> None:
        pygame.font.init()
        self.regions = list(regions)
        self.cells = list(cells)
        self.font = pygame.font.Font(None, 16)
        self.big_font = pygame.font.Font(None, 22)
        self._text_cache: dict[tuple[str, tuple[int, ...], bool], pygame.Surface] = {}
        self._tile_key: tuple[Any, ...] | None = None
        self._tile_surface: pygame.Surface | None = None
        self._tiles: np.ndarray | None = None
        self._sky_cache: dict[tuple[int, int, int], pygame.Surface] = {}
        self.grid_rect = pygame.Rect(MARGIN, MARGIN, GRID_PX, GRID_PX)
        #: Legend entries (tile kinds, NPC, signal, override) and their rectangles in the side panel.
        self.tile_legend_rects: dict[str, pygame.Rect] = {}
        self.panel_rect = pygame.Rect(2 * MARGIN + GRID_PX, MARGIN, PANEL_W, GRID_PX)
        self.scope_rect = pygame.Rect(MARGIN, 2 * MARGIN + GRID_PX, WINDOW[0] - 2 * MARGIN, SCOPE_H)
        self.view = (0, 0, 1, 1)  # y0, x0, rows, cols of the grid shown
        self.cell = 1
        self.row_h = 13
        self.legend_rects: dict[str, pygame.Rect] = {}
        self.row_rects: dict[int, pygame.Rect] = {}
        #: The selected NPC's control lines (``control_lines``) as last drawn (empty: none selected).
        self.control_text: list[str] = []
        #: The organs' line (``organ_line``) as last drawn (empty: the frame carried no organ states).
        self.organ_text = ""
        #: The selected NPC's trail lines (``ViewState.trail_lines``) as last drawn (empty: none shown).
        self.trail_text: list[str] = []

    # -- coordinates ------------------------------------------------------------------------------

    def view_for(self, shape: tuple[int, int], state: ViewState, frame: dict[str, Any] | None) -> None:
        """Choose the grid window (all of it, or zoomed on the followed NPC) and the cell size."""
        H, W = shape
        y0, x0, rows, cols = 0, 0, H, W
        n = state.selected
        if state.follow and frame is not None and n is not None and n < len(frame["npc_y"]):
            rows, cols = min(H, max(8, math.ceil(H / 2))), min(W, max(8, math.ceil(W / 2)))
            y0 = int(np.clip(int(frame["npc_y"][n]) - rows // 2, 0, H - rows))
            x0 = int(np.clip(int(frame["npc_x"][n]) - cols // 2, 0, W - cols))
        self.view = (y0, x0, rows, cols)
        self.cell = max(1, GRID_PX // max(rows, cols))
        # the grid is centred in its square: what the cell size leaves over is background, not a black strip
        width, height = cols * self.cell, rows * self.cell
        self.grid_rect = pygame.Rect(MARGIN + (GRID_PX - width) // 2, MARGIN + (GRID_PX - height) // 2,
                                     width, height)

    def cell_centre(self, y: int, x: int) -> tuple[float, float]:
        """Pixel centre (x, y) of grid cell (y, x) in the current view."""
        y0, x0, _, _ = self.view
        return (self.grid_rect.x + (x - x0 + 0.5) * self.cell, self.grid_rect.y + (y - y0 + 0.5) * self.cell)

    def cell_at(self, pos: tuple[int, int]) -> tuple[int, int] | None:
        """Grid cell (y, x) under a pixel, or None outside the grid."""
        y0, x0, rows, cols = self.view
        px, py = pos[0] - self.grid_rect.x, pos[1] - self.grid_rect.y
        if px < 0 or py < 0 or px >= cols * self.cell or py >= rows * self.cell:
            return None
        return y0 + py // self.cell, x0 + px // self.cell

    def npc_at(self, frame: dict[str, Any], pos: tuple[int, int]) -> int | None:
        """Slot of the alive NPC drawn under a pixel (grid or panel row), or None."""
        for n, rect in self.row_rects.items():
            if rect.collidepoint(pos):
                return n
        cell = self.cell_at(pos)
        if cell is None:
            return None
        hits = np.flatnonzero((frame["npc_y"] == cell[0]) & (frame["npc_x"] == cell[1]) & frame["alive"])
        return int(hits[0]) if len(hits) else None

    # -- drawing ----------------------------------------------------------------------------------

    def draw(self, surface: pygame.Surface, frame: dict[str, Any] | None, state: ViewState,
             scope: np.ndarray | None = None) -> None:
        """Draw one frame (or only the message when there is none); scope is confidence [K, R]."""
        background = ENV_BACKGROUND.get(state.env, ENV_BACKGROUND["dev"])
        surface.fill(background)
        surface.fill(PANEL_BG, self.panel_rect)
        surface.fill(PANEL_BG, self.scope_rect)
        if frame is not None:
            tiles = frame["tiles"]
            self.view_for(tiles.shape, state, frame)
            surface.fill((0, 0, 0), self.grid_rect)
            clip = surface.get_clip()
            surface.set_clip(self.grid_rect)
            if state.layers["tiles"]:
                surface.blit(self._tile_layer(tiles, bool(frame.get("night", False))), self.grid_rect)
            if state.layers["sky"]:
                self._sky(surface, int(frame.get("weather", 0)), bool(frame.get("night", False)))
            self._npcs(surface, frame, state)
            surface.set_clip(clip)
            self._panel(surface, frame, state)
            self._scope(surface, state, scope)
        else:
            surface.fill((0, 0, 0), self.grid_rect)
        if state.message:
            self._message(surface, state.message)

    def grid_image(self, frame: dict[str, Any], cell: int, state: ViewState | None = None) -> np.ndarray:
        """The whole grid of a frame as the viewer draws it, ``cell`` pixels per grid cell: HWC uint8.

        Tiles with their shapes (night palette at night), the sky (fog veil, rain streaks) and NPCs with
        their rings, as in ``draw`` but without zoom, panel or scope; what the vision organ reads.
        """
        if cell < 1:
            raise ValueError(f"cell={cell!r}: must be >= 1 pixel")
        state = state or ViewState()
        rows, cols = np.asarray(frame["tiles"]).shape
        self.view, self.cell = (0, 0, rows, cols), cell
        self.grid_rect = pygame.Rect(0, 0, cols * cell, rows * cell)
        surface = pygame.Surface(self.grid_rect.size)
        if state.layers["tiles"]:
            surface.blit(self._tile_layer(frame["tiles"], bool(frame.get("night", False))), (0, 0))
        if state.layers["sky"]:
            self._sky(surface, int(frame.get("weather", 0)), bool(frame.get("night", False)))
        self._npcs(surface, frame, state)
        return np.ascontiguousarray(pygame.surfarray.pixels3d(surface).transpose(1, 0, 2))

    def _text(self, text: str, colour: Sequence[int] = TEXT, big: bool = False) -> pygame.Surface:
        key = (text, tuple(colour), big)
        surf = self._text_cache.get(key)
        if surf is None:
            if len(self._text_cache) > 4096:
                self._text_cache.clear()
            surf = (self.big_font if big else self.font).render(text, True, colour)
            self._text_cache[key] = surf
        return surf

    def _tile_layer(self, tiles: np.ndarray, night: bool) -> pygame.Surface:
        key = (self.view, self.cell, night, tiles.shape)
        if self._tile_key != key or self._tiles is None or not np.array_equal(self._tiles, tiles):
            small = pygame.surfarray.make_surface(np.ascontiguousarray(tiles.T, dtype=np.uint8))
            small.set_palette([tuple(int(v) for v in c) for c in (_NIGHT_PALETTE if night else PALETTE)])
            y0, x0, rows, cols = self.view
            part = small.subsurface((x0, y0, cols, rows))
            self._tile_surface = pygame.transform.scale(part, (cols * self.cell, rows * self.cell))
            if self.cell >= MIN_GLYPH_CELL:  # shapes in their own inks: leave the 8-bit palette surface
                indexed = self._tile_surface
                self._tile_surface = pygame.Surface(indexed.get_size())
                self._tile_surface.blit(indexed, (0, 0))
                window = tiles[y0:y0 + rows, x0:x0 + cols]
                for gy, gx in np.argwhere(np.isin(window, list(GLYPHS))).tolist():
                    draw_glyph(self._tile_surface, int(window[gy, gx]),
                               pygame.Rect(gx * self.cell, gy * self.cell, self.cell, self.cell))
            self._tile_key, self._tiles = key, tiles.copy()
        assert self._tile_surface is not None
        return self._tile_surface

    def _sky(self, surface: pygame.Surface, weather: int, night: bool) -> None:
        if weather not in (1, 2):
            return
        key = (weather, self.cell, self.view[2] * 1000 + self.view[3])
        layer = self._sky_cache.get(key)
        if layer is None:
            size = (self.view[3] * self.cell, self.view[2] * self.cell)
            layer = pygame.Surface(size, pygame.SRCALPHA)
            if weather == 1:  # fog: a grey veil
                layer.fill((200, 200, 210, 90))
            else:  # rain: blue streaks
                for i in range(0, size[0] + size[1], 14):
                    pygame.draw.line(layer, (120, 160, 255, 110), (i, 0), (i - size[1] // 3, size[1]), 1)
            self._sky_cache[key] = layer
        surface.blit(layer, self.grid_rect)

    def _npcs(self, surface: pygame.Surface, frame: dict[str, Any], state: ViewState) -> None:
        alive = np.asarray(frame["alive"], dtype=bool)
        ys, xs = np.asarray(frame["npc_y"]), np.asarray(frame["npc_x"])
        life = np.clip(np.asarray(frame["lifeforce"], dtype=np.float32), 0, 1)
        cell, t = self.cell, int(frame.get("t", 0))
        y0, x0, rows, cols = self.view
        visible = alive & (ys >= y0 - 4) & (ys < y0 + rows + 4) & (xs >= x0 - 4) & (xs < x0 + cols + 4)
        waves = frame.get("waves") if state.layers["waves"] else None
        if waves is not None and len(waves):
            for n in np.flatnonzero(visible):
                centre = self.cell_centre(int(ys[n]), int(xs[n]))
                for k, conf in enumerate(np.asarray(waves[n]).tolist()):
                    if conf < 0.05:
                        continue
                    name = self.regions[k] if k < len(self.regions) else str(k)
                    draw_ring(surface, region_colour(name), centre, ripple_radius(k, t, cell),
                              "solid" if conf >= 0.5 else "dotted", 1 + int(conf * 2.5))
        inset = max(1, cell // 6)
        signalling = np.asarray(frame.get("signalling", np.zeros_like(alive)), dtype=bool)
        overrides = frame.get("overrides")
        flash = frame.get("gate_flash")
        for n in np.flatnonzero(visible):
            cx, cy = self.cell_centre(int(ys[n]), int(xs[n]))
            left, top = int(cx - cell / 2), int(cy - cell / 2)
            if state.layers["npcs"]:
                colour = npc_shade(life[n]).astype(int).tolist()
                facing = int(frame["facing"][n]) if "facing" in frame else int(Action.NORTH)
                body = npc_triangle(left, top, cell, facing)
                pygame.draw.polygon(surface, colour, body)
                if cell >= MIN_ID_CELL:  # the id at the triangle's centroid
                    label = self._text(str(n), GLYPH_INK)
                    centroid = (sum(p[0] for p in body) / 3, sum(p[1] for p in body) / 3)
                    surface.blit(label, label.get_rect(center=centroid))
                if n == state.selected:
                    pygame.draw.rect(surface, DOMAIN_COLOURS["cognitive"], (left, top, cell, cell), 2)
            if state.layers["npcs"] and flash is not None and flash[n]:
                pygame.draw.circle(surface, GATE_COLOUR, (cx, cy), max(4, round(cell * 1.2)), 2)
            if state.layers["signals"] and signalling[n]:
                draw_ring(surface, SIGNAL_COLOUR, (cx, cy), max(3, round(cell * 0.9)), "dashed", 1)
            if state.layers["overrides"] and overrides is not None and overrides[n]:
                notch = max(3, cell // 3)
                right = left + cell - inset
                pygame.draw.polygon(surface, OVERRIDE_COLOUR,
                                    [(right - notch, top + inset), (right, top + inset),
                                     (right, top + inset + notch)])

    def _panel(self, surface: pygame.Surface, frame: dict[str, Any], state: ViewState) -> None:
        rect = self.panel_rect
        x, y = rect.x + 6, rect.y + 4
        weather = ("clear", "fog", "rain")[int(frame.get("weather", 0)) % 3]
        head = (f"{state.env}  stage {int(frame.get('stage', -1))}  t {int(frame.get('t', 0))}  "
                f"{'night' if frame.get('night', False) else 'day'}  {weather}")
        surface.blit(self._text(head, TEXT, big=True), (x, y))
        y += 20
        mode = "paused" if state.paused else f"{state.speed:g} fps"
        surface.blit(self._text(f"{state.source}  {mode}{'  follow' if state.follow else ''}", DIM_TEXT),
                     (x, y))
        y += 16
        self.organ_text = organ_line(frame)
        if self.organ_text:  # the organ host's lifecycle: which organs are loaded, loading or at work
            surface.blit(self._text(self.organ_text, ORGAN_COLOUR), (x, y))
            y += 16
        cols = (0, 34, 130, 172, 214, 256)
        for cx, title in zip(cols, ("npc", "lifeforce", "batt", "stage", "tick", "cpu"), strict=True):
            surface.blit(self._text(title, DIM_TEXT), (x + cx, y))
        y += self.row_h
        n_npcs = len(frame["alive"])
        inspector_h = 172
        selected = state.selected is not None and state.selected < n_npcs
        self.trail_text = list(state.trail_lines) if selected else []
        trails_h = TRAIL_ROW_H * len(self.trail_text) + 6 if self.trail_text else 0
        capacity = max(1, (rect.bottom - inspector_h - LEGEND_H - trails_h - y) // self.row_h)
        first = 0
        if state.selected is not None and state.selected >= capacity:
            first = min(state.selected - capacity // 2, n_npcs - capacity)
        self.row_rects = {}
        life = np.asarray(frame["lifeforce"], dtype=np.float32)
        battery = np.asarray(frame.get("battery", np.zeros_like(life)), dtype=np.float32)
        tick_rate, cpu = frame.get("tick_rate"), frame.get("cpu_use")
        gates = frame.get("gates")
        stages = frame.get("npc_stage")
        for n in range(first, min(n_npcs, first + capacity)):
            alive = bool(frame["alive"][n])
            colour = TEXT if alive else DIM_TEXT
            row = pygame.Rect(rect.x, y, rect.width, self.row_h)
            self.row_rects[n] = row
            if n == state.selected:
                surface.fill((50, 40, 80), row)
            surface.blit(self._text(str(n), colour), (x + cols[0], y))
            if gates is not None and gates[n]:  # a gate is open: a violet dot after the id
                pygame.draw.circle(surface, GATE_COLOUR, (x + cols[0] + 24, y + self.row_h // 2), 3)
            bar = pygame.Rect(x + cols[1], y + 3, 60, self.row_h - 6)
            surface.fill((60, 60, 60), bar)
            width = int(60 * np.clip(life[n], 0, 1))
            surface.fill(npc_shade(life[n]).astype(int).tolist(), (bar.x, bar.y, width, bar.h))
            surface.blit(self._text(f"{life[n]:.2f}" if alive else "dead", colour), (x + cols[1] + 64, y))
            surface.blit(self._text(f"{battery[n]:.2f}", colour), (x + cols[2], y))
            stage = int(stages[n]) if stages is not None else int(frame.get("stage", -1))
            surface.blit(self._text(str(stage), colour), (x + cols[3], y))
            tr = f"{float(tick_rate[n]):g}Hz" if tick_rate is not None else "-"
            surface.blit(self._text(tr, colour), (x + cols[4], y))
            cu = f"{100 * float(cpu[n]):.0f}%" if cpu is not None else "-"  # cores, as % of one core
            surface.blit(self._text(cu, colour), (x + cols[5], y))
            y += self.row_h
        if self.trail_text:
            self._trails(surface, pygame.Rect(rect.x, rect.bottom - inspector_h - LEGEND_H - trails_h,
                                              rect.width, trails_h))
        self._legend(surface, pygame.Rect(rect.x, rect.bottom - inspector_h - LEGEND_H, rect.width, LEGEND_H),
                     bool(frame.get("night", False)))
        self._inspector(surface, frame, state, pygame.Rect(rect.x, rect.bottom - inspector_h, rect.width,
                                                           inspector_h))

    def _trails(self, surface: pygame.Surface, rect: pygame.Rect) -> None:
        """The selected NPC's last escalations: the head line in cognitive violet, rows below it (cells
        separated by tabs line up at ``TRAIL_TABS``)."""
        pygame.draw.line(surface, DIM_TEXT, rect.topleft, rect.topright)
        clip = surface.get_clip()
        surface.set_clip(rect)
        for i, line in enumerate(self.trail_text):
            colour = GATE_COLOUR if i == 0 else TEXT
            y = rect.y + 4 + TRAIL_ROW_H * i
            cells = line.split("\t")
            if len(cells) == 1:  # a line of its own (head, no store, an error)
                surface.blit(self._text(line, colour), (rect.x + 6, y))
                continue
            ends = (*TRAIL_TABS[1:], rect.width)
            for cell, x, end in zip(cells, TRAIL_TABS, ends, strict=False):  # cut at the next column
                text = self._text(cell, colour)
                surface.blit(text, (rect.x + 6 + x, y), pygame.Rect(0, 0, end - x - 4, text.get_height()))
        surface.set_clip(clip)

    def _legend(self, surface: pygame.Surface, rect: pygame.Rect, night: bool) -> None:
        """What each shape on the grid is: tile kinds, an NPC and its facing, signals, overrides."""
        pygame.draw.line(surface, DIM_TEXT, rect.topleft, rect.topright)
        palette = _NIGHT_PALETTE if night else PALETTE
        entries: list[tuple[str, Any]] = [(name, kind) for kind, name in GLYPHS.items()]
        entries += [("wall", Tile.WALL), ("NPC, tip = facing", "npc"), ("signalling", "signal"),
                    ("nerve override", "override"), ("gate opened", "gate")]
        self.tile_legend_rects = {}
        size, rows = 13, 6
        for i, (name, kind) in enumerate(entries):
            col, row = divmod(i, rows)
            x, y = rect.x + 6 + col * (rect.width // 2), rect.y + 6 + row * 16
            swatch = pygame.Rect(x, y, size, size)
            self.tile_legend_rects[name] = swatch
            if isinstance(kind, Tile):
                surface.fill(tuple(int(v) for v in palette[kind]), swatch)
                draw_glyph(surface, int(kind), swatch)
            elif kind == "npc":
                pygame.draw.polygon(surface, DOMAIN_COLOURS["nervous"], npc_triangle(x, y, size, Action.EAST))
            elif kind == "signal":
                draw_ring(surface, SIGNAL_COLOUR, swatch.center, size // 2, "dashed", 1)
            elif kind == "gate":
                pygame.draw.circle(surface, GATE_COLOUR, swatch.center, size // 2, 2)
            else:
                notch = [swatch.topleft, swatch.topright, swatch.bottomright]
                pygame.draw.polygon(surface, OVERRIDE_COLOUR, notch)
            surface.blit(self._text(name, TEXT), (x + size + 5, y))

    def _inspector(self, surface: pygame.Surface, frame: dict[str, Any], state: ViewState,
                   rect: pygame.Rect) -> None:
        pygame.draw.line(surface, DIM_TEXT, rect.topleft, rect.topright)
        x, y = rect.x + 6, rect.y + 4
        n = state.selected
        self.control_text = []
        if n is None or n >= len(frame["alive"]):
            surface.blit(self._text("click an NPC to see its cells", DIM_TEXT), (x, y))
            for i, line in enumerate(("space pause  . step  +/- speed  f follow",
                                      "tab next NPC  1-6 layers  esc quit")):
                surface.blit(self._text(line, DIM_TEXT), (x, y + 18 + 16 * i))
            return
        actions, overrides = frame.get("actions"), frame.get("overrides")
        facing = _FACING.get(int(frame["facing"][n]), "?") if "facing" in frame else "?"
        action = Action(int(actions[n])).name.lower() if actions is not None else "-"
        over = "override" if overrides is not None and overrides[n] else ""
        key = "key" if frame.get("has_key") is not None and frame["has_key"][n] else ""
        head = f"NPC {n}  {'alive' if frame['alive'][n] else 'dead'}  facing {facing}  {action} {over} {key}"
        surface.blit(self._text(head, TEXT, big=True), (x, y))
        y += 20
        self.control_text = control_lines(frame, n)
        for line in self.control_text:
            surface.blit(self._text(line, DIM_TEXT), (x, y))
            y += 14
        waves = frame.get("waves")
        if waves is None or not self.regions:
            surface.blit(self._text("no waves in this feed", DIM_TEXT), (x, y))
            return
        brain = (rect.right - 40, rect.y + 110)
        pygame.draw.circle(surface, DOMAIN_COLOURS["cognitive"], brain, 12)
        surface.blit(self._text("brain", DIM_TEXT), (brain[0] - 14, brain[1] + 14))
        organ = (rect.right - 40, rect.y + 40)
        pygame.draw.circle(surface, DOMAIN_COLOURS["organs"], organ, 8)
        surface.blit(self._text("organs", DIM_TEXT), (organ[0] - 16, organ[1] - 22))
        draw_line(surface, DOMAIN_COLOURS["organs"], organ, brain, "dashed", 2)  # organ results are async
        for k, region in enumerate(self.regions):
            conf = float(waves[n][k]) if k < len(waves[n]) else 0.0
            cell = self.cells[k] if k < len(self.cells) else region
            surface.blit(self._text(f"{cell}", TEXT), (x, y))
            bar = pygame.Rect(x + 78, y + 3, 100, 9)
            surface.fill((60, 60, 60), bar)
            surface.fill(region_colour(region), (bar.x, bar.y, int(100 * min(max(conf, 0.0), 1.0)), bar.h))
            surface.blit(self._text(f"{conf:.2f}", TEXT), (x + 184, y))
            node = (x + 222, y + 7)
            pygame.draw.circle(surface, DOMAIN_COLOURS["nervous"], node, 4)
            if conf > 0:  # a firing cell feeds the brain: solid when confident, dotted when tentative
                style = "solid" if conf >= 0.5 else "dotted"
                draw_line(surface, DOMAIN_COLOURS["nervous"], node, brain, style)
            y += 16
        if over:
            draw_line(surface, OVERRIDE_COLOUR, (x + 222, rect.bottom - 14), (brain[0], rect.bottom - 14),
                      "solid", 2)
            surface.blit(self._text("nerve override", OVERRIDE_COLOUR), (x, rect.bottom - 20))

    def _scope(self, surface: pygame.Surface, state: ViewState, scope: np.ndarray | None) -> None:
        rect = self.scope_rect
        surface.blit(self._text(f"confidence  NPC {state.selected if state.selected is not None else 0}"
                                f"  last {SCOPE_FRAMES} frames", DIM_TEXT), (rect.x + 6, rect.y + 4))
        plot = pygame.Rect(rect.x + 6, rect.y + 22, rect.width - 130, rect.height - 30)
        for level in (0.0, 0.5, 1.0):
            yy = plot.bottom - level * plot.height
            style = "dotted" if level == 0.5 else "solid"
            draw_line(surface, (70, 70, 70), (plot.x, yy), (plot.right, yy), style)
        self.legend_rects = {}
        for k, region in enumerate(self.regions):
            on = state.scope_regions is None or region in state.scope_regions
            legend = pygame.Rect(plot.right + 10, plot.y + 16 * k, 110, 15)
            self.legend_rects[region] = legend
            surface.fill(region_colour(region) if on else (70, 70, 70), (legend.x, legend.y + 4, 10, 8))
            surface.blit(self._text(region, TEXT if on else DIM_TEXT), (legend.x + 14, legend.y))
        if scope is None or len(scope) < 2:
            return
        step = plot.width / (SCOPE_FRAMES - 1)
        start = plot.right - (len(scope) - 1) * step
        xs = start + np.arange(len(scope)) * step
        for k, region in enumerate(self.regions[: scope.shape[1]]):
            if state.scope_regions is not None and region not in state.scope_regions:
                continue
            ys = plot.bottom - np.clip(scope[:, k], 0, 1) * plot.height
            pygame.draw.lines(surface, region_colour(region), False, np.stack([xs, ys], axis=1).tolist(), 2)

    def _message(self, surface: pygame.Surface, message: str) -> None:
        text = self._text(message, (255, 255, 255), big=True)
        box = text.get_rect(center=self.grid_rect.center).inflate(24, 16)
        surface.fill((120, 20, 20), box)
        pygame.draw.rect(surface, (255, 255, 255), box, 1)
        surface.blit(text, text.get_rect(center=box.center))


def empty_tile_colour(night: bool = False) -> tuple[int, int, int]:
    """Colour of an EMPTY tile as drawn (for tests and legends)."""
    return tuple(int(v) for v in (_NIGHT_PALETTE if night else PALETTE)[Tile.EMPTY])  # type: ignore[return-value]
