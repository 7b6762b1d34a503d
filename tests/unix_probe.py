"""A child for tests/test_unix_identity.py: reports who it runs as and whether it can read a file."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def child_main(config: dict[str, Any]) -> int:
    """Write {uid, gid, groups, read} to config["out"]: the file's text, or the error reading it."""
    try:
        with open(config["path"]) as f:
            read = f.read()
    except OSError as exc:
        read = type(exc).__name__
    found = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "read": read}
    with open(config["out"], "w") as f:
        json.dump(found, f)
    return 0


def sleep_main(config: dict[str, Any]) -> int:
    """Sleep for config["seconds"] (a child that lives until something ends it)."""
    time.sleep(float(config["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(child_main(json.loads(sys.argv[1])))
