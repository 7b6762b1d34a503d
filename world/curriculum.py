"""Curriculum: advance through stages when the rolling success rate passes a threshold."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CurriculumConfig:
    """How the curriculum moves through stages."""

    stages: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    """Stages in the order they are taught."""
    threshold: float = 0.8
    """Rolling success rate that advances to the next stage."""
    window: int = 200
    """Episodes in the rolling success window."""
    min_episodes: int = 100
    """Episodes a stage must run before it can be passed."""

    def __post_init__(self) -> None:
        if not self.stages or any(not isinstance(s, int) or not 0 <= s <= 5 for s in self.stages):
            raise ValueError(f"curriculum.stages={self.stages!r}: must be a non-empty list of stages 0-5")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"curriculum.threshold={self.threshold!r}: must be in (0, 1]")
        if self.window < 1:
            raise ValueError(f"curriculum.window={self.window!r}: must be >= 1")
        if not 1 <= self.min_episodes:
            raise ValueError(f"curriculum.min_episodes={self.min_episodes!r}: must be >= 1")


class Curriculum:
    """Tracks rolling success on the current stage and says when to advance."""

    def __init__(self, config: CurriculumConfig) -> None:
        self.config = config
        self.index = 0
        self.episodes_on_stage = 0
        self._recent: deque[float] = deque(maxlen=config.window)
        #: (stage, episodes it took) for each stage passed.
        self.passed: list[tuple[int, int]] = []

    @property
    def stage(self) -> int:
        """The stage being taught."""
        return self.config.stages[self.index]

    @property
    def finished(self) -> bool:
        """Whether the last stage has been passed."""
        return len(self.passed) == len(self.config.stages)

    @property
    def success(self) -> float:
        """Rolling success rate on the current stage (0 before any episode)."""
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def record(self, successes: list[float] | Any) -> bool:
        """Add finished episodes' success rates; return True if the current stage was just passed."""
        for value in successes:
            self._recent.append(float(value))
            self.episodes_on_stage += 1
        cfg = self.config
        if (self.finished or self.episodes_on_stage < cfg.min_episodes
                or len(self._recent) < min(cfg.window, cfg.min_episodes) or self.success < cfg.threshold):
            return False
        self.passed.append((self.stage, self.episodes_on_stage))
        if self.index + 1 < len(cfg.stages):
            self.index += 1
            self.episodes_on_stage = 0
            self._recent.clear()
        return True

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume."""
        return {"index": self.index, "episodes_on_stage": self.episodes_on_stage,
                "recent": list(self._recent), "passed": [list(p) for p in self.passed]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict`."""
        self.index = int(state["index"])
        self.episodes_on_stage = int(state["episodes_on_stage"])
        self._recent = deque((float(v) for v in state["recent"]), maxlen=self.config.window)
        self.passed = [(int(s), int(n)) for s, n in state["passed"]]
