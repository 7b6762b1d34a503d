"""``python -m organs.boundary export --store trails.sqlite --out sft.jsonl``: the boundary's SFT data.

The recorded (numbers -> report_situation) pairs of the decision trails, as ``python -m organs.trails
export --kinds boundary`` writes them (``organs.trails.export`` documents the format and the selection
rule; ``--outcome paid`` keeps only escalations that paid off, ``--run/--since/--until`` narrow them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from organs.trails.cli import main as trails_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``export`` of the trails, boundary examples unless ``--kinds`` says otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["export"]:
        print("error: usage: python -m organs.boundary export --store PATH --out FILE [options]; "
              "see python -m organs.trails export --help", file=sys.stderr)
        return 2
    if "--kinds" not in args:
        args += ["--kinds", "boundary"]
    return trails_main(args, prog="python -m organs.boundary")


if __name__ == "__main__":
    raise SystemExit(main())
