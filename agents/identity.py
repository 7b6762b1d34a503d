"""Unix identities of supervised children: the seed's "switch user = switch context".

With ``runtime.organism.user=<name>`` every NPC process runs as that unprivileged user and its
primary group (no supplementary groups): the supervisor drops it after fork (after the child joined
its cgroup and opened its log, both as the supervisor) and before its brain is loaded, so an NPC
cannot read what another identity keeps with mode 0600 (the cortex's weights, the bus passwords).
What the NPC must write (its checkpoint folder) is handed to that user by ``grant``.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path


def lookup(name: str) -> tuple[int, int]:
    """(uid, gid) of a Unix user; ValueError naming it when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"runtime.organism.user={name!r}: no such Unix user") from None
    return entry.pw_uid, entry.pw_gid


def check_can_switch(name: str) -> None:
    """ValueError when this process may not become that user (only root may switch to another one)."""
    uid, _ = lookup(name)
    if os.geteuid() not in (0, uid):
        raise ValueError(f"runtime.organism.user={name!r}: switching users needs root (this is uid "
                         f"{os.geteuid()})")


def drop_ids(uid: int, gid: int) -> None:
    """Become uid:gid for good: no supplementary groups, group first (setuid ends the right to it)."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def drop_to(name: str) -> None:
    """Become the named user and its primary group for good (HOME and USER follow)."""
    uid, gid = lookup(name)
    drop_ids(uid, gid)
    os.environ["HOME"] = pwd.getpwuid(uid).pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = name


def group_name(name: str) -> str:
    """The primary group's name of a user."""
    return grp.getgrgid(lookup(name)[1]).gr_name


def grant(path: str | Path, name: str) -> None:
    """Hand a folder (and what is in it, one level) to the user, so its processes can write there."""
    uid, gid = lookup(name)
    path = Path(path)
    os.chown(path, uid, gid)
    for child in path.iterdir():
        os.chown(child, uid, gid)
