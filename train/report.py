"""Stage-sweep summary: `python -m train.report <multirun dir>` (also run by Hydra after a sweep)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

COLUMNS = ("job", "world", "stage", "success", "return", "agent_steps", "wall_s")


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder under the sweep folder that holds a summary.json."""
    rows = []
    for path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        summary = json.loads(path.read_text())
        rows.append({"job": path.parent.name} | {key: summary.get(key) for key in COLUMNS[1:]})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def write_report(sweep_dir: str | Path) -> Path:
    """Write summary.md and summary.json into the sweep folder; return the Markdown file's path."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"sweep_dir={str(sweep_dir)!r}: no such folder")
    rows = collect(sweep_dir)
    if not rows:
        raise ValueError(f"sweep_dir={str(sweep_dir)!r}: no job folder with a summary.json")
    table = format_rows(rows)
    (sweep_dir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    path = sweep_dir / "summary.md"
    path.write_text(table + "\n")
    return path


class SweepReport(Callback):
    """Hydra callback: write the sweep's summary table when a multirun ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            path = write_report(sweep_dir)
        except ValueError as error:
            print(f"sweep report: {error}", file=sys.stderr)
            return
        print(path.read_text(), end="")
        print(f"saved {path}")


def main(argv: list[str] | None = None) -> int:
    """CLI: print and save the summary table of a multirun folder."""
    parser = argparse.ArgumentParser(prog="python -m train.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a multirun folder (multirun/<date>/<time>), one job a folder")
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2, already printed)
        return int(done.code or 0)
    try:
        path = write_report(args.sweep_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path.read_text(), end="")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
