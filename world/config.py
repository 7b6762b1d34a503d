"""WorldConfig: every knob of one curriculum stage, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass
class WorldConfig:
    """One curriculum stage of the grid world (see `world.stages` for the six presets)."""

    stage: int = 0
    """Curriculum stage index (0-5); informational, the fields below define the world."""
    name: str = "meadow"
    """Human-readable stage name."""
    height: int = 16
    """Grid rows."""
    width: int = 16
    """Grid columns."""
    n_npcs: int = 4
    """NPC slots per env."""
    view_radius: int = 3
    """r: each NPC sees a (2r+1) x (2r+1) window centred on itself."""
    max_steps: int = 200
    """Episode horizon in world ticks (truncation)."""

    # --- terrain -------------------------------------------------------------------------------
    wall_density: float = 0.0
    """Probability that a cell is a lone wall block."""
    wall_segments: int = 0
    """Random straight wall lines per env (obstacles, corridors)."""
    wall_segment_max: int = 8
    """Longest wall line, in cells."""
    n_food: int = 20
    """Food items at reset."""
    food_regrow: float = 0.5
    """Per env and tick: probability that one random empty cell grows food."""
    food_cap: int = 24
    """Regrowth stops while an env holds this much food."""
    n_water: int = 0
    """Water cells (blocking; drink while facing one)."""
    n_fire: int = 0
    """Fire cells (passable hazards)."""
    n_chargers: int = 0
    """Charging stations."""
    n_vaults: int = 0
    """Walled 3x3 food rooms entered through a door (needs a key) or a lock terminal."""
    lock_fraction: float = 0.5
    """Fraction of vault entrances that are arithmetic locks rather than doors."""
    n_keys_extra: int = 0
    """Keys beyond one per door."""
    rearm_delay: int = 0
    """Ticks an opened door or lock stays open before it closes again (0: it stays open). It waits
    while an NPC stands in the entrance or inside the room; a closed door then needs a new key, which
    appears on a free cell, and a lock shows a new problem."""

    # --- body ----------------------------------------------------------------------------------
    lifeforce_decay: float = 0.008
    """Lifeforce lost every tick alive (lifeforce lives in [0, 1])."""
    food_gain: float = 0.3
    """Lifeforce restored by eating one food."""
    water_gain: float = 0.08
    """Lifeforce restored by one drink."""
    fire_drain: float = 0.12
    """Lifeforce lost per tick stood on fire."""
    battery_drain: float = 0.0
    """Battery used per successful move (0 disables the battery)."""
    exhaustion_cost: float = 0.03
    """Lifeforce a move costs when the battery is empty."""
    wrong_answer_cost: float = 0.05
    """Lifeforce lost by entering a wrong lock answer."""
    respawn_delay: int = -1
    """Ticks an NPC stays dead (the death tick included) before it respawns; -1: death is final."""
    signal_radius: int = 0
    """Chebyshev radius within which a signal is heard (0: signals only show in views)."""

    # --- sky -----------------------------------------------------------------------------------
    day_length: int = 0
    """Ticks per day/night cycle (night is its second half); 0 means always day."""
    night_view_radius: int = 2
    """View radius at night."""
    weather: bool = False
    """Whether weather (clear, fog, rain) changes over time."""
    weather_change: float = 0.01
    """Per env and tick: probability that the weather changes."""
    fog_view_radius: int = 1
    """View radius in fog."""
    rain_battery_factor: float = 2.0
    """Battery drain multiplier in rain."""

    # --- rewards and success -------------------------------------------------------------------
    death_penalty: float = 1.0
    """Reward subtracted when an NPC dies."""
    goal_bonus: float = 1.0
    """Reward for opening a door or a lock."""
    success_needs_unlock: bool = False
    """Success also requires opening at least one door or lock (stage 4)."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def view_size(self) -> int:
        """Side of the square egocentric view, 2r+1."""
        return 2 * self.view_radius + 1

    @property
    def n_doors(self) -> int:
        """Vault entrances that are doors (the rest are locks)."""
        return self.n_vaults - self.n_locks

    @property
    def n_locks(self) -> int:
        """Vault entrances that are lock terminals."""
        return int(round(self.n_vaults * self.lock_fraction))

    @property
    def n_keys(self) -> int:
        """Keys placed at reset: one per door plus extras."""
        return self.n_doors + self.n_keys_extra

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value is out of range."""

        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"world.{field}={getattr(self, field)!r}: {why}")

        for name in ("height", "width"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 4:
                raise bad(name, "must be an integer >= 4")
        if not isinstance(self.n_npcs, int) or self.n_npcs < 1:
            raise bad("n_npcs", "must be an integer >= 1")
        if not isinstance(self.view_radius, int) or not 1 <= self.view_radius <= 8:
            raise bad("view_radius", "must be an integer in 1..8")
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise bad("max_steps", "must be an integer >= 1")
        for name in ("wall_segments", "n_food", "food_cap", "n_water", "n_fire", "n_chargers", "n_vaults",
                     "n_keys_extra", "wall_segment_max", "day_length", "rearm_delay"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("wall_density", "food_regrow", "lock_fraction", "weather_change"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise bad(name, "must be a probability in [0, 1]")
        if self.wall_density > 0.35:
            raise bad("wall_density", "must be <= 0.35 or the grid falls apart into pockets")
        for name in ("lifeforce_decay", "food_gain", "water_gain", "fire_drain", "battery_drain",
                     "exhaustion_cost", "wrong_answer_cost", "death_penalty", "goal_bonus",
                     "rain_battery_factor"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0")
        if not isinstance(self.respawn_delay, int) or self.respawn_delay < -1:
            raise bad("respawn_delay", "must be -1 (no respawn) or an integer >= 0")
        for name in ("signal_radius", "night_view_radius", "fog_view_radius"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("night_view_radius", "fog_view_radius"):
            if getattr(self, name) < 1 or getattr(self, name) > self.view_radius:
                raise bad(name, f"must be in 1..view_radius ({self.view_radius})")
        vault_slots = (self.height // 7) * (self.width // 7)
        if self.n_vaults > vault_slots:
            raise bad("n_vaults", f"at most {vault_slots} vaults fit a {self.height}x{self.width} grid")
        # Cells left for NPCs and items, assuming the walls take their expected share and every
        # vault takes its 7x7 footprint; keep half of them free so placement never runs out.
        free = self.height * self.width * (1 - self.wall_density) - self.wall_segments * self.wall_segment_max
        free -= self.n_vaults * 49
        wanted = self.n_npcs + self.n_food + self.n_water + self.n_fire + self.n_chargers + self.n_keys
        if wanted > 0.5 * free:
            field = "n_npcs" if self.n_npcs > 0.5 * free else "n_food"
            raise bad(field, f"{wanted} NPCs and items need more than half of the ~{int(free)} free cells")

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every configurable field, in declaration order."""
        return [f.name for f in fields(cls)]
