"""world.draw: pixels of the background per environment, NPCs, ripples, overrides and line styles."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from nervous.messages import REGIONS as GATE_ORDER  # noqa: E402
from world.draw import (  # noqa: E402
    DOMAIN_COLOURS,
    ENV_BACKGROUND,
    GATE_COLOUR,
    GATE_REGIONS,
    GLYPH_INK,
    GLYPHS,
    MARGIN,
    OVERRIDE_COLOUR,
    REGION_COLOURS,
    WINDOW,
    Drawer,
    ViewState,
    control_lines,
    draw_glyph,
    draw_line,
    empty_tile_colour,
    ripple_radius,
)
from world.render import PALETTE  # noqa: E402
from world.tiles import Action, Tile  # noqa: E402

REGIONS = ["food", "hazard", "collision", "math", "social", "energy"]


@pytest.fixture
def surface() -> pygame.Surface:
    pygame.display.init()
    return pygame.Surface(WINDOW)


def make_frame(n: int = 2, size: int = 16) -> dict:
    """A hand-made frame: empty grid, NPC 0 at (4, 5), NPC 1 at (10, 12)."""
    return {
        "tiles": np.zeros((size, size), dtype=np.uint8),
        "npc_y": np.array([4, 10][:n]),
        "npc_x": np.array([5, 12][:n]),
        "alive": np.ones(n, dtype=bool),
        "lifeforce": np.ones(n, dtype=np.float32),
        "battery": np.ones(n, dtype=np.float32),
        "has_key": np.zeros(n, dtype=bool),
        "signalling": np.zeros(n, dtype=bool),
        "facing": np.ones(n, dtype=np.int8),
        "t": 0,
        "night": False,
        "weather": 0,
        "stage": 0,
    }


def pixel(surface: pygame.Surface, xy: tuple[float, float]) -> tuple[int, int, int]:
    return tuple(surface.get_at((int(xy[0]), int(xy[1]))))[:3]


def body_point(drawer: Drawer, y: int, x: int) -> tuple[float, float]:
    """A pixel inside a north-facing NPC's triangle, near its base and clear of its id label."""
    cx, cy = drawer.cell_centre(y, x)
    return cx, cy + 0.34 * drawer.cell


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_background_colour_is_the_environment(surface: pygame.Surface, env: str) -> None:
    Drawer(REGIONS).draw(surface, make_frame(), ViewState(env=env))
    assert pixel(surface, (2, 2)) == ENV_BACKGROUND[env]
    assert pixel(surface, (WINDOW[0] - 3, WINDOW[1] - 3)) == ENV_BACKGROUND[env]


def test_npc_is_nervous_cyan_at_its_cell_and_dims_with_lifeforce(surface: pygame.Surface) -> None:
    drawer, frame = Drawer(REGIONS), make_frame()
    frame["lifeforce"][1] = 0.0
    drawer.draw(surface, frame, ViewState())
    assert pixel(surface, body_point(drawer, 4, 5)) == DOMAIN_COLOURS["nervous"]
    dim = pixel(surface, body_point(drawer, 10, 12))
    assert dim == tuple(int(c * 0.35) for c in DOMAIN_COLOURS["nervous"])
    assert pixel(surface, drawer.cell_centre(0, 0)) == empty_tile_colour()


def test_wave_ripple_in_region_colour(surface: pygame.Surface) -> None:
    drawer, frame = Drawer(REGIONS), make_frame()
    frame["waves"] = np.zeros((2, 6), dtype=np.float32)
    frame["waves"][0, 1] = 1.0  # hazard, confident: a solid ring
    drawer.draw(surface, frame, ViewState())
    cx, cy = drawer.cell_centre(4, 5)
    radius = ripple_radius(1, 0, drawer.cell)
    assert pixel(surface, (cx + radius - 1, cy)) == REGION_COLOURS["hazard"]
    assert pixel(surface, (cx, cy - radius + 1)) == REGION_COLOURS["hazard"]
    other_cx, other_cy = drawer.cell_centre(10, 12)  # NPC 1 has no waves: no ring
    assert pixel(surface, (other_cx + radius - 1, other_cy)) == empty_tile_colour()


def test_override_mark_and_layer_toggle(surface: pygame.Surface) -> None:
    drawer, frame = Drawer(REGIONS), make_frame()
    frame["overrides"] = np.array([True, False])
    state = ViewState()
    drawer.draw(surface, frame, state)
    cx, cy = drawer.cell_centre(4, 5)
    corner = (cx + drawer.cell / 2 - drawer.cell // 6 - 2, cy - drawer.cell / 2 + drawer.cell // 6 + 1)
    assert pixel(surface, corner) == OVERRIDE_COLOUR
    state.layers["npcs"] = state.layers["overrides"] = False
    drawer.draw(surface, frame, state)
    assert pixel(surface, (cx, cy)) == empty_tile_colour()
    assert pixel(surface, corner) == empty_tile_colour()


def test_tiles_use_the_palette_and_the_layer_is_cached(surface: pygame.Surface) -> None:
    drawer, frame = Drawer(REGIONS), make_frame()
    frame["tiles"][2, 3] = Tile.FIRE
    drawer.draw(surface, frame, ViewState())
    from world.render import PALETTE

    cx, cy = drawer.cell_centre(2, 3)
    corner = (cx - 0.4 * drawer.cell, cy - 0.4 * drawer.cell)  # outside the flame drawn on it
    assert pixel(surface, corner) == tuple(PALETTE[Tile.FIRE])
    assert pixel(surface, (cx, cy)) == GLYPH_INK
    cached = drawer._tile_surface
    drawer.draw(surface, frame, ViewState())
    assert drawer._tile_surface is cached
    frame["tiles"][2, 3] = Tile.EMPTY
    drawer.draw(surface, frame, ViewState())
    assert drawer._tile_surface is not cached
    assert pixel(surface, drawer.cell_centre(2, 3)) == empty_tile_colour()


def test_follow_zooms_on_the_selected_npc(surface: pygame.Surface) -> None:
    drawer, frame = Drawer(REGIONS), make_frame(size=32)
    drawer.draw(surface, frame, ViewState())
    whole = drawer.cell
    drawer.draw(surface, frame, ViewState(selected=1, follow=True))
    assert drawer.cell == 2 * whole
    assert drawer.cell_at(tuple(int(v) for v in drawer.cell_centre(10, 12))) == (10, 12)
    assert pixel(surface, body_point(drawer, 10, 12)) == DOMAIN_COLOURS["nervous"]


@pytest.mark.parametrize(("style", "lit"), [("solid", 100), ("dashed", (50, 70)), ("dotted", (20, 40))])
def test_line_styles(style: str, lit: int | tuple[int, int]) -> None:
    surface = pygame.Surface((120, 5))
    draw_line(surface, (255, 255, 255), (0, 2), (100, 2), style)
    count = sum(surface.get_at((x, 2))[0] == 255 for x in range(100))
    if isinstance(lit, int):
        assert count == lit
    else:
        assert lit[0] <= count <= lit[1]


def test_no_frame_draws_only_the_message(surface: pygame.Surface) -> None:
    drawer = Drawer()
    drawer.draw(surface, None, ViewState(env="prod", message="no frames on dev.world.x.frame"))
    assert pixel(surface, (2, 2)) == ENV_BACKGROUND["prod"]
    assert pixel(surface, (drawer.grid_rect.centerx - 100, drawer.grid_rect.centery - 9)) == (120, 20, 20)


def test_every_tile_kind_has_its_own_shape_so_colour_is_not_needed() -> None:
    grey = (128, 128, 128)
    masks = {}
    for kind in GLYPHS:
        cell = pygame.Surface((24, 24))
        cell.fill(grey)
        draw_glyph(cell, int(kind), pygame.Rect(0, 0, 24, 24))
        masks[kind] = (pygame.surfarray.array3d(cell) != grey).any(axis=2)
        assert 0.05 < masks[kind].mean() < 0.6, kind  # a visible shape, not a filled cell
    kinds = list(masks)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            differ = (masks[a] != masks[b]).mean()
            assert differ > 0.05, (a, b)  # told apart by shape alone


@pytest.mark.parametrize(
    ("facing", "tip"),
    [
        (Action.NORTH, (0.5, 0.15)),
        (Action.SOUTH, (0.5, 0.85)),
        (Action.EAST, (0.85, 0.5)),
        (Action.WEST, (0.15, 0.5)),
    ],
)
def test_an_npc_is_a_triangle_pointing_where_it_faces(surface: pygame.Surface, facing: Action, tip) -> None:
    drawer, frame = Drawer(REGIONS), make_frame()
    frame["facing"][:] = facing
    drawer.draw(surface, frame, ViewState())
    cx, cy = drawer.cell_centre(4, 5)
    left, top = cx - drawer.cell / 2, cy - drawer.cell / 2
    at = lambda u, v: (left + u * drawer.cell, top + v * drawer.cell)  # noqa: E731
    assert pixel(surface, at(*tip)) == DOMAIN_COLOURS["nervous"]
    corners = [(0.12, 0.12), (0.88, 0.12), (0.12, 0.88), (0.88, 0.88)]
    beside_tip = [c for c in corners if np.hypot(c[0] - tip[0], c[1] - tip[1]) < 0.6]
    beside_base = [c for c in corners if c not in beside_tip]
    assert len(beside_tip) == 2
    assert all(
        pixel(surface, at(*c)) == empty_tile_colour() for c in beside_tip
    )  # the triangle narrows there
    inner = [(0.2 if u < 0.5 else 0.8, 0.2 if v < 0.5 else 0.8) for u, v in beside_base]  # off the edges
    assert all(pixel(surface, at(*c)) == DOMAIN_COLOURS["nervous"] for c in inner)


def test_npcs_carry_their_id_when_cells_are_large_enough(surface: pygame.Surface) -> None:
    drawer, frame = Drawer(REGIONS), make_frame()
    drawer.draw(surface, frame, ViewState())
    cx, cy = drawer.cell_centre(4, 5)
    box = pygame.Rect(int(cx - drawer.cell / 2), int(cy - drawer.cell / 2), drawer.cell, drawer.cell)
    pixels = pygame.surfarray.array3d(surface.subsurface(box)).reshape(-1, 3)
    body_or_ground = (pixels == DOMAIN_COLOURS["nervous"]).all(axis=1) | (pixels == empty_tile_colour()).all(
        axis=1
    )
    assert (~body_or_ground).sum() > 10  # the "0" written in ink on NPC 0's body
    frame = make_frame(size=64)  # 10-pixel cells: too small for a legible id, none is written
    drawer.draw(surface, frame, ViewState())
    cx, cy = drawer.cell_centre(4, 5)
    box = pygame.Rect(int(cx - drawer.cell / 2), int(cy - drawer.cell / 2), drawer.cell, drawer.cell)
    pixels = pygame.surfarray.array3d(surface.subsurface(box)).reshape(-1, 3)
    body_or_ground = (pixels == DOMAIN_COLOURS["nervous"]).all(axis=1) | (pixels == empty_tile_colour()).all(
        axis=1
    )
    assert body_or_ground.all()


def test_the_legend_names_every_shape_with_its_tile_colour(surface: pygame.Surface) -> None:
    drawer = Drawer(REGIONS)
    drawer.draw(surface, make_frame(), ViewState())
    for kind, name in GLYPHS.items():
        swatch = drawer.tile_legend_rects[name]
        assert drawer.panel_rect.contains(swatch)
        assert pixel(surface, (swatch.x, swatch.y)) == tuple(
            PALETTE[kind]
        )  # its colour, with its shape on it
        inked = (pygame.surfarray.array3d(surface.subsurface(swatch)) != PALETTE[kind]).any(axis=2)
        assert inked.any()
    assert {"wall", "NPC, tip = facing", "signalling", "nerve override"} <= set(drawer.tile_legend_rects)


@pytest.mark.parametrize("size", [16, 24, 32, 64])
def test_the_grid_leaves_no_black_strips(surface: pygame.Surface, size: int) -> None:
    Drawer(REGIONS).draw(surface, make_frame(size=size), ViewState(env="prod"))
    square = pygame.surfarray.array3d(surface.subsurface((MARGIN, MARGIN, 640, 640))).reshape(-1, 3)
    assert not (square == 0).all(axis=1).any()


def governed(frame: dict) -> dict:
    """The frame with the governor's columns: NPC 0 told 2 Hz, 10 %, math and hazard open, priority 5;
    NPC 1 never told anything (priority -1)."""
    frame["tick_rate"] = np.array([2.0, 20.0], dtype=np.float32)
    frame["cpu_use"] = np.array([0.09, 0.031], dtype=np.float32)  # cores
    frame["cpu_quota"] = np.array([10.0, 12.5], dtype=np.float32)
    frame["llm_priority"] = np.array([5, -1], dtype=np.int8)
    frame["gates"] = np.array([0b1010, 0], dtype=np.uint8)  # bits 1 and 3: hazard, math
    frame["gate_flash"] = np.array([True, False])
    return frame


def test_gate_bits_follow_the_bus_regions() -> None:
    assert GATE_REGIONS == tuple(r.value for r in GATE_ORDER)


def test_the_inspector_shows_tick_rate_quota_gates_and_priority(surface: pygame.Surface) -> None:
    drawer = Drawer(REGIONS)
    frame = governed(make_frame())
    drawer.draw(surface, frame, ViewState(selected=0))
    assert drawer.control_text == ["tick 2 Hz  cpu 9 %  quota 10 %", "gates hazard,math  prio 5"]
    drawn = pygame.surfarray.array3d(surface).copy()
    drawer.draw(surface, frame, ViewState(selected=1))
    assert drawer.control_text == ["tick 20 Hz  cpu 3 %  quota 12.5 %", "gates -  prio -"]
    inspector = (slice(drawer.panel_rect.x, drawer.panel_rect.right), slice(drawer.panel_rect.bottom - 146,
                                                                           drawer.panel_rect.bottom - 120))
    assert (pygame.surfarray.array3d(surface)[inspector] != drawn[inspector]).any()  # the lines are drawn
    drawer.draw(surface, make_frame(), ViewState(selected=0))  # a feed without the governor's columns
    assert drawer.control_text == ["tick -  cpu -  quota -", "gates -  prio -"]
    frame["gates"][0] = 0
    assert control_lines(frame, 0)[1] == "gates closed  prio 5"


def test_the_inspector_shows_an_npcs_escalations_when_the_cortex_fields_are_there(
        surface: pygame.Surface) -> None:
    frame = governed(make_frame())
    n = len(frame["alive"])
    frame["escalations"] = np.array([3] + [0] * (n - 1), dtype=np.uint16)
    frame["escalation_ago"] = np.array([2.45] + [-1.0] * (n - 1), dtype=np.float32)
    frame["planning"] = np.array([True] + [False] * (n - 1))
    assert control_lines(frame, 0)[2] == "cortex 3 escalations, last 2.5 s ago  on a plan"
    frame["escalation_outcome"] = np.array([0] + [-1] * (n - 1), dtype=np.int8)
    assert control_lines(frame, 0)[2] == "cortex 3 escalations, last 2.5 s ago (planned)  on a plan"
    assert control_lines(frame, 1)[2] == "cortex 0 escalations"
    drawer = Drawer(REGIONS)
    drawer.draw(surface, frame, ViewState(selected=0))
    assert drawer.control_text[2].startswith("cortex 3 escalations")


def test_a_gate_opening_rings_the_npc_and_an_open_gate_dots_its_row(surface: pygame.Surface) -> None:
    drawer = Drawer(REGIONS)
    frame = governed(make_frame())
    drawer.draw(surface, frame, ViewState())
    radius = max(4, round(drawer.cell * 1.2))
    for n, (y, x) in enumerate(((4, 5), (10, 12))):
        cx, cy = drawer.cell_centre(y, x)
        ring = pixel(surface, (cx + radius - 1, cy))
        assert (ring == GATE_COLOUR) == (n == 0), n  # NPC 0's gate opened just now; NPC 1's did not
        row = drawer.row_rects[n]
        dot = pixel(surface, (row.x + 6 + 24, row.y + drawer.row_h // 2))
        assert (dot == GATE_COLOUR) == (n == 0), n


def test_the_viewers_escalation_outcomes_are_the_cortex_links() -> None:
    from organs.link import OUTCOMES
    from world.draw import ESCALATION_OUTCOMES

    assert ESCALATION_OUTCOMES == OUTCOMES


def test_the_panel_shows_the_organs_lifecycle_states_in_organs_coral(surface: pygame.Surface) -> None:
    from world.draw import ORGAN_COLOUR, organ_line

    drawer = Drawer(REGIONS)
    drawer.draw(surface, make_frame(), ViewState())
    assert drawer.organ_text == ""  # a frame without organs draws no organ line
    plain = pygame.surfarray.array3d(surface).copy()
    frame = make_frame() | {"organs": {"vision": "PROCESSING", "speech": "UNLOADED"}}
    drawer.draw(surface, frame, ViewState())
    assert drawer.organ_text == organ_line(frame) == "organs  speech UNLOADED  vision PROCESSING"
    line = pygame.surfarray.array3d(surface)[drawer.panel_rect.x:drawer.panel_rect.right,
                                             drawer.panel_rect.y + 36:drawer.panel_rect.y + 52]
    coral = (np.abs(line.astype(int) - np.array(ORGAN_COLOUR)).sum(axis=-1) < 30).sum()
    assert coral > 20  # the line's glyphs are in organs coral
    assert drawer.row_rects[0].y > 0 and (pygame.surfarray.array3d(surface) != plain).any()
    drawer.draw(surface, make_frame() | {"organs": {"vision": "READY"}}, ViewState())
    assert drawer.organ_text == "organs  vision READY"
