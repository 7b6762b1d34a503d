"""Governors side by side on the same world, brains and seeds: success, return, brain calls, CPU, escalations.

``evaluate_governor`` runs whole episodes of one governor over a driver's proposals (in-process runtime)
and returns the world's episode means with the governor's figures; ``compare_governors`` does it for
fixed, heuristic, budget and learned, and for the budget allocator once more at the learned governor's
brain calls (``budget_at_equal_calls``: its ``budget_in_ms`` bisected until its calls match);
``pareto_png`` draws return against brain calls (the Pareto table) as a PNG with pygame.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from governor.baselines import Governor, make_governor
from governor.config import GovernorConfig
from governor.costs import DEFAULT_COSTS, CostModel
from governor.drivers import Driver
from governor.runtime import Escalator, GovernedReflex
from nervous.config import NervousConfig
from nervous.nerves import NerveBank
from world import GridWorld, WorldConfig
from world.rollout import collect_episodes

#: The figures of one governor's row (besides the world's episode means).
FIGURES = ("success", "return", "brain_calls_per_npc_s", "cpu_s_per_npc_min", "escalations_per_100_ticks")


def evaluate_governor(world_config: WorldConfig, driver: Driver, config: GovernorConfig,
                      nervous: NervousConfig, episodes: int = 100, seed: int = 0, num_envs: int = 50,
                      factory: Callable[[GovernorConfig], Governor] = make_governor,
                      escalator: Escalator | None = None, costs: CostModel = DEFAULT_COSTS,
                      ) -> dict[str, float]:
    """Episode means of one governor over the driver's proposals, with its figures (unprefixed; with an
    escalator, the cortex link, also its ``cortex/`` figures); the CPU meter prices work by costs."""
    world = GridWorld(world_config, num_envs=min(num_envs, episodes), seed=seed, autoreset=True)
    nerves = NerveBank(nervous.nerves) if nervous.nerves.enabled else None
    reflex = GovernedReflex(config, nervous.lifeforce, nerves, cells=driver.bank, costs=costs,
                            governor_factory=factory, escalator=escalator)
    result = collect_episodes(world, lambda w: reflex(w, driver(w))[0], episodes)
    result.update({key.removeprefix("governor/"): value for key, value in reflex.pop_stats().items()
                   if not key.endswith(("_loss", "entropy", "approx_kl", "explained_variance"))})
    return result


def budget_at_equal_calls(world_config: WorldConfig, make_driver: Callable[[], Driver],
                          config: GovernorConfig, nervous: NervousConfig, calls: float, episodes: int,
                          seed: int, steps: int = 6,
                          make_escalator: Callable[[], Escalator | None] = lambda: None,
                          ) -> tuple[float, dict[str, float]]:
    """(budget_in_ms, row) of the budget allocator whose brain calls per NPC-second come closest to calls."""
    low, high = 0.01, 40.0
    best: tuple[float, float, dict[str, float]] | None = None
    for _ in range(steps):
        budget = (low * high) ** 0.5  # bisect on a log scale
        row = evaluate_governor(world_config, make_driver(), dataclasses.replace(config, kind="budget",
                                budget_in_ms=budget), nervous, episodes, seed, escalator=make_escalator())
        gap = row["brain_calls_per_npc_s"] - calls
        if best is None or abs(gap) < abs(best[0]):
            best = (gap, budget, row)
        low, high = (low, budget) if gap > 0 else (budget, high)
    assert best is not None
    return best[1], best[2]


def compare_governors(world_config: WorldConfig, make_driver: Callable[[], Driver], config: GovernorConfig,
                      nervous: NervousConfig, learned: Callable[[GovernorConfig], Governor] | None,
                      episodes: int = 100, seed: int = 0,
                      make_escalator: Callable[[], Escalator | None] = lambda: None,
                      equal_calls: bool = True) -> dict[str, dict[str, float]]:
    """Rows for fixed, heuristic, budget (and learned, and with equal_calls budget at its calls) on the same
    seeds (with the cortex link make_escalator gives, a new one per row)."""
    rows: dict[str, dict[str, float]] = {}
    for kind in ("fixed", "heuristic", "budget"):
        rows[kind] = evaluate_governor(world_config, make_driver(), dataclasses.replace(config, kind=kind),
                                       nervous, episodes, seed, escalator=make_escalator())
    if learned is not None:
        learned_config = dataclasses.replace(config, kind="learned")
        rows["learned"] = evaluate_governor(world_config, make_driver(), learned_config, nervous, episodes,
                                            seed, factory=learned, escalator=make_escalator())
    if learned is not None and equal_calls:
        budget, row = budget_at_equal_calls(world_config, make_driver, config, nervous,
                                            rows["learned"]["brain_calls_per_npc_s"], episodes, seed,
                                            make_escalator=make_escalator)
        rows["budget_at_learned_calls"] = row | {"budget_in_ms": budget}
    return rows


def pareto_png(rows: dict[str, dict[str, float]], path: str | os.PathLike, title: str) -> Path:
    """Return against brain calls per NPC-second, one numbered point per governor and a legend, as a PNG."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    pygame.font.init()
    plot_w, legend_w, height, margin = 620, 350, 480, 70
    surface = pygame.Surface((plot_w + legend_w, height))
    surface.fill((250, 250, 247))
    font, small = pygame.font.Font(None, 22), pygame.font.Font(None, 19)
    xs = [r["brain_calls_per_npc_s"] for r in rows.values()]
    ys = [r["return"] for r in rows.values()]
    x0, x1 = 0.0, max(xs) * 1.1 or 1.0
    pad = (max(ys) - min(ys)) * 0.15 or 0.1
    y0, y1 = min(ys) - pad, max(ys) + pad

    def at(x: float, y: float) -> tuple[int, int]:
        return (int(margin + (x - x0) / (x1 - x0) * (plot_w - 1.5 * margin)),
                int(height - margin - (y - y0) / (y1 - y0) * (height - 2 * margin)))

    ink = (40, 40, 40)
    pygame.draw.line(surface, ink, at(x0, y0), at(x1, y0), 2)
    pygame.draw.line(surface, ink, at(x0, y0), at(x0, y1), 2)
    for i in range(6):
        x, y = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
        surface.blit(small.render(f"{x:.1f}", True, ink), (at(x, y0)[0] - 12, height - margin + 8))
        surface.blit(small.render(f"{y:.2f}", True, ink), (10, at(x0, y)[1] - 7))
    colours = [(200, 60, 50), (50, 110, 200), (60, 160, 80), (150, 80, 190), (220, 150, 30), (90, 90, 90)]
    legend_x = plot_w + 10
    surface.blit(font.render("governor: success, return, calls/s", True, ink), (legend_x, margin - 30))
    for k, ((name, row), colour) in enumerate(zip(rows.items(), colours * 2, strict=False)):
        point = at(row["brain_calls_per_npc_s"], row["return"])
        pygame.draw.circle(surface, colour, point, 8)
        number = small.render(str(k + 1), True, (255, 255, 255))
        surface.blit(number, number.get_rect(center=point))
        y = margin + 28 * k
        pygame.draw.circle(surface, colour, (legend_x + 8, y + 7), 8)
        surface.blit(small.render(str(k + 1), True, (255, 255, 255)), (legend_x + 4, y + 1))
        text = f"{name}: {row['success']:.2f}, {row['return']:.2f}, {row['brain_calls_per_npc_s']:.1f}"
        surface.blit(small.render(text, True, colour), (legend_x + 22, y))
    surface.blit(font.render(title, True, ink), (margin, 14))
    surface.blit(font.render("brain calls per NPC-second", True, ink), (plot_w // 2 - 90, height - 28))
    surface.blit(small.render("mean return", True, ink), (10, margin - 30))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pygame.image.save(surface, str(path))
    return path
