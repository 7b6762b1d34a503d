"""Run tracking: wandb (offline files in the run folder by default), metrics.jsonl and a progress bar."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from train.config import LoggerConfig


class Tracker:
    """Writes metric rows to wandb and ``metrics.jsonl`` and shows progress."""

    def __init__(self, config: LoggerConfig, run_dir: Path, run_config: dict[str, Any], total: int,
                 initial: int = 0, run_id: str | None = None, name: str | None = None,
                 progress: bool = True) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        #: metrics.jsonl, opened at the first row written (a run that logs none leaves no empty file).
        self._jsonl: Any = None
        self.wandb_run = None
        self.run_id = run_id
        if config.mode != "disabled":
            # no banner, footer or adverts in the user's terminal (the run's own summary says where its
            # files are); WANDB_SILENT=false brings them back. Weave would take our `agents` package for
            # the OpenAI Agents SDK and advertise itself.
            os.environ.setdefault("WANDB_SILENT", "true")
            os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
            import wandb  # imported lazily: it takes a second or two

            self.wandb_run = wandb.init(project=config.project, entity=config.entity, mode=config.mode,
                                        dir=str(self.run_dir), config=run_config, id=run_id, name=name,
                                        resume="allow", settings=wandb.Settings(silent=True))
            self.run_id = self.wandb_run.id
        self.bar = tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True,
                        disable=not (config.progress and progress), file=sys.stderr)
        self._last_step = initial

    def log(self, metrics: dict[str, float], step: int, write: bool = True) -> None:
        """Record one row of metrics at agent step `step` and move the progress bar."""
        if self.bar.total is not None and step > self.bar.total:  # the last update ends past the budget
            self.bar.total = step
        self.bar.update(max(0, step - self._last_step))
        self._last_step = step
        success = metrics.get("charts/success", math.nan)
        sps, stage = metrics.get("charts/SPS", 0.0), metrics.get("charts/stage", 0.0)
        self.bar.set_postfix_str(f"SPS={sps:,.0f} stage={stage:.0f} success={success:.3f}", refresh=False)
        if not write:
            return
        row = {"step": step} | {key: _plain(value) for key, value in metrics.items()}
        if self._jsonl is None:
            self._jsonl = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def message(self, text: str) -> None:
        """Print a line without breaking the progress bar (stage changes, checkpoints)."""
        self.bar.write(text, file=sys.stderr)

    def summary(self, values: dict[str, Any]) -> None:
        """Set the run's summary values in wandb."""
        if self.wandb_run is not None:
            self.wandb_run.summary.update(values)

    def close(self) -> None:
        """Flush and close everything."""
        self.bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _plain(value: Any) -> Any:
    """A JSON-safe number (NaN and infinities become null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
