"""``python -m organs.host --organs vision``: run the organ host as a bus service."""

from organs.host.service import main

raise SystemExit(main())
