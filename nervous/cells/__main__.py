"""``python -m nervous.cells <name>``: run one cell as a bus service."""

from nervous.cells.service import main

raise SystemExit(main())
