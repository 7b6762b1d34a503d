"""``python -m governor``: the governor process on the bus (``governor.service``)."""

import sys

from governor.service import main

sys.exit(main())
