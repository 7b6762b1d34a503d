"""``python -m organs.vision``: train the vision network, or evaluate a weight file on held-out frames."""

from organs.vision.cli import main

raise SystemExit(main())
