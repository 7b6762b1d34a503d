"""``python -m organs.trails serve|query``: the trail writer service and the trail query."""

from organs.trails.cli import main

raise SystemExit(main())
