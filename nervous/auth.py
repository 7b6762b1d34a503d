"""Identities on the bus: the roles, what each may publish and subscribe to, and the nats-server config.

Every process connects with its own identity; the server refuses what its role does not allow (the
client's error callback gets ``permissions violation for publish to "..."``, nothing is delivered).

Role: publishes / subscribes to (every subject in the identity's own env).

- npc (one user per id): its own ``npc.{id}.action``, ``.state``, ``.heartbeat`` / its own
  ``npc.{id}.obs`` and ``.command``. Its cells and nerves run batched in the world server, so an NPC
  publishes no waves (and cannot spoof another NPC's).
- world: every NPC's ``obs``; frames; ``world.*.heartbeat``; cell requests (it holds every NPC's
  senses); the cell bank's one wave batch per tick / every NPC's ``action``, ``state`` and
  ``command``; gate openings; organ charges (paid from the asking NPC's lifeforce); trail events
  (it publishes escalations and outcomes, and hears the governor's gate decisions to measure theirs).
- supervisor: every NPC's ``command``; ``supervisor.*.heartbeat`` / every heartbeat; allocations.
- governor: ``thalamus.>`` (it alone); organ gates; cortex requests (escalations through open
  gates); trail events / every NPC's ``state``; waves.
- cell: cells' ``wave``, ``response``, ``heartbeat``; replies / cells' ``request``.
- organ (the organ host): organs' ``event``, ``charge``; its heartbeat; replies / every organ subject.
- cortex: trail events; organ requests (denied: their control verbs); its heartbeat; replies /
  ``cortex.nyx.request``; organ gates and lifecycle events (the live cortex link looks through the
  organ host as this identity and asks only for NPCs whose gate is open).
- trails (the writer): the trails stream's JetStream API and acks; its heartbeat / its inbox.
- viewer: nothing (read-only) / frames; waves.

Every identity may subscribe to its own reply inbox (``_INBOX.{env}.{name}.>``, ``nervous.subjects``);
services that answer requests get ``allow_responses`` (they may publish one reply to an inbox they
were asked from, nowhere else). Publishers of trail events may use the trails stream's JetStream API.
The organism process runs the world server and the supervisor in one address space: its identity
``organism`` holds both roles (two connections there would be no boundary).

Environments are separate NATS accounts (``DEV``, ``STAGING``, ``PROD``): a subject of one env is a
different subject in another account, so a dev identity cannot see or publish a prod subject even by
name (its permissions name only its own env's subjects besides). User names carry the env
(``dev-npc-3``, ``prod-governor``).

Authentication is user/password: nats-server config files have no per-user permission templates
(``{{name()}}`` is expanded only for JWT users; measured on nats-server 2.15: taken literally), so
each NPC is its own user, and passwords need no dependency and cost nothing per connect (nkeys would
add the ``nkeys`` package for a signature, bcrypt hashes ~0.1 s of server CPU per connect). The
embedded server's config (plain passwords) is written with mode 0600; the passwords of one run live
in a ``Credentials`` file (mode 0600). A child gets only its own password, in its environment
(``NIMMERVERSE_BUS_USER``, ``NIMMERVERSE_BUS_PASSWORD``), never on a command line.

``python -m nervous.auth config --env prod --npcs 16 [--credentials FILE] > nats.conf`` prints the
configuration for an external bus (creating FILE with fresh passwords, mode 0600, when it is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nervous import subjects

ROLES = ("npc", "world", "cell", "governor", "cortex", "organ", "trails", "viewer", "supervisor")
"""Every role on the bus."""

MODES = ("roles", "none")
"""``bus.auth``: roles (every identity its permissions) or none (a bare bus, everyone may do anything)."""

USER_VAR = "NIMMERVERSE_BUS_USER"
PASSWORD_VAR = "NIMMERVERSE_BUS_PASSWORD"
CREDENTIALS_VAR = "NIMMERVERSE_BUS_CREDENTIALS"
"""Path of a credentials file (for a supervisor on an external bus: it hands each child its own)."""

@dataclass
class BusSettings:
    """How ``python -m train`` runs the bus (``bus.*``)."""

    auth: str = "roles"
    """roles: every process connects with its own identity and permissions; none: a bare bus."""

    def __post_init__(self) -> None:
        if self.auth not in MODES:
            raise ValueError(f"bus.auth={self.auth!r}: must be one of {', '.join(MODES)}")


#: Identities made of several roles: one process, one identity.
COMPOSITES = {"organism": ("world", "supervisor")}


@dataclass(frozen=True)
class Permissions:
    """What one identity may publish and subscribe to (nats-server allow/deny lists)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    deny_publish: tuple[str, ...] = ()
    responses: bool = False
    """allow_responses: may reply once to the inbox of a request it received."""

    def __or__(self, other: Permissions) -> Permissions:
        """The union of two roles' permissions (denials of either stay)."""
        return Permissions(_unique(self.publish + other.publish), _unique(self.subscribe + other.subscribe),
                           _unique(self.deny_publish + other.deny_publish), self.responses or other.responses)

    def in_env(self, env: str) -> Permissions:
        """The same permissions for another env's subjects."""
        stream_env = f"_{subjects.env().upper()}_"

        def move(items: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(s.replace(stream_env, f"_{env.upper()}_") if s.startswith("$JS.") or s == ">"
                         else subjects.in_env(s, env) for s in items)

        return Permissions(move(self.publish), move(self.subscribe), move(self.deny_publish), self.responses)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _trails_api() -> tuple[str, ...]:
    """The trails stream's JetStream API (info, create, update, consumers, next) and acks."""
    from nervous.trail_stream import stream_name  # imports the bus, which imports this module

    name = stream_name()
    return ("$JS.API.INFO", f"$JS.API.STREAM.*.{name}", f"$JS.API.CONSUMER.*.{name}.>",
            f"$JS.API.CONSUMER.*.*.{name}.>", f"$JS.ACK.{name}.>")


def _trail_publisher(name: str) -> Permissions:
    """May publish trail events (JetStream publish: the ack comes to its inbox) and make the stream."""
    return Permissions(publish=(subjects.trails_pattern(), *_trails_api()[:2]),
                       subscribe=(subjects.inbox_pattern(name),))


def identity_name(role: str, npc: int | None = None) -> str:
    """The identity (bus client name) of a role: ``npc-3`` for NPC 3, else the role itself."""
    if role == "npc":
        if npc is None:
            raise ValueError("identity npc: needs an NPC id")
        return f"npc-{int(npc)}"
    if role not in ROLES and role not in COMPOSITES:
        raise ValueError(f"role {role!r} is not one of {', '.join((*ROLES, *COMPOSITES))}")
    return role


def permissions(role: str, npc: int | None = None) -> Permissions:
    """The permissions of one role in the current env (``npc`` needs the NPC id)."""
    if role in COMPOSITES:
        out = Permissions()
        for part in COMPOSITES[role]:
            out |= permissions(part)
        return out | Permissions(subscribe=(subjects.inbox_pattern(role),))
    name = identity_name(role, npc)
    inbox = subjects.inbox_pattern(name)
    match role:
        case "npc":
            return Permissions(
                publish=(subjects.npc_action(npc), subjects.npc_state(npc),  # type: ignore[arg-type]
                         subjects.heartbeat("npc", str(npc))),
                subscribe=(subjects.npc_obs(npc), subjects.npc_command(npc), inbox))  # type: ignore[arg-type]
        case "world":
            return Permissions(
                publish=(subjects.npc_pattern("obs"), subjects.world_frames_pattern(),
                         subjects.service_heartbeats_pattern("world"), subjects.cells_pattern("request"),
                         subjects.cell_wave("bank")),
                subscribe=(subjects.npc_pattern("action"), subjects.npc_pattern("state"),
                           subjects.npc_pattern("command"), subjects.gate_open(),
                           subjects.organs_pattern("charge"), subjects.trail_event(), inbox),
            ) | _trail_publisher(name)
        case "supervisor":
            return Permissions(
                publish=(subjects.npc_pattern("command"), subjects.service_heartbeats_pattern("supervisor")),
                subscribe=(subjects.heartbeats_pattern(), subjects.cells_pattern("heartbeat"),
                           subjects.governor_allocate(), inbox))
        case "governor":
            return Permissions(
                publish=(subjects.domain_pattern("thalamus"), subjects.organs_pattern("gate"),
                         subjects.cortex_request()),
                subscribe=(subjects.npc_pattern("state"), subjects.all_cell_waves_pattern(), inbox),
            ) | _trail_publisher(name)
        case "cell":
            return Permissions(
                publish=(subjects.all_cell_waves_pattern(), subjects.cells_pattern("response"),
                         subjects.cells_pattern("heartbeat")),
                subscribe=(subjects.cells_pattern("request"), inbox), responses=True)
        case "organ":
            return Permissions(
                publish=(subjects.organs_pattern("event"), subjects.organs_pattern("charge"),
                         subjects.organ_host_heartbeat()),
                subscribe=(subjects.organs_pattern(), inbox), responses=True)
        case "cortex":
            return Permissions(
                publish=(subjects.organs_pattern(), subjects.heartbeat("cortex", "nyx")),
                subscribe=(subjects.cortex_request(), subjects.organs_pattern("gate"),
                           subjects.organs_pattern("event"), inbox),
                deny_publish=tuple(subjects.organs_pattern(verb) for verb in subjects.ORGAN_CONTROL),
                responses=True,
            ) | _trail_publisher(name)
        case "trails":
            return Permissions(publish=(*_trails_api(), subjects.trails_heartbeat()), subscribe=(inbox,))
        case "viewer":
            return Permissions(publish=(), subscribe=(subjects.world_frames_pattern(),
                                                      subjects.all_cell_waves_pattern()),
                               deny_publish=(">",))
    raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")  # pragma: no cover


def identities(npcs: int) -> dict[str, Permissions]:
    """Every identity of an organism of ``npcs`` NPCs (current env): name -> permissions."""
    if not isinstance(npcs, int) or npcs < 0:
        raise ValueError(f"npcs={npcs!r}: must be an integer >= 0")
    out = {identity_name("npc", i): permissions("npc", i) for i in range(npcs)}
    for role in (*ROLES, *COMPOSITES):
        if role != "npc":
            out[role] = permissions(role)
    return out


def user_name(env: str, identity: str) -> str:
    """The NATS user of an identity in one env, e.g. ``prod-npc-3``."""
    return f"{env}-{subjects.token(identity, 'identity')}"


@dataclass
class Credentials:
    """Passwords of every user of one bus (user -> password), and how to log in with them."""

    passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def generate(cls, npcs: int, envs: Sequence[str] = subjects.ENVS) -> Credentials:
        """Fresh random passwords for every identity of every env."""
        names = identities(npcs)
        return cls({user_name(env, name): secrets.token_urlsafe(24) for env in envs for name in names})

    @classmethod
    def load(cls, path: str | Path) -> Credentials:
        """Read a credentials file; ValueError naming the file when it is not one."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"credentials file {path}: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError(f"credentials file {path}: must be a JSON object of user -> password")
        return cls(dict(data))

    def save(self, path: str | Path) -> Path:
        """Write the file with mode 0600 (created so: never readable by others, not even briefly)."""
        path = Path(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.passwords, f)
        os.chmod(path, 0o600)
        return path

    def login(self, identity: str, env: str | None = None) -> tuple[str, str]:
        """(user, password) of an identity in env (the current one by default)."""
        user = user_name(env or subjects.env(), identity)
        if user not in self.passwords:
            raise ValueError(f"bus identity {identity!r}: no user {user} in the credentials")
        return user, self.passwords[user]

    def child_env(self, identity: str) -> dict[str, str]:
        """Environment variables that give a child process its own login (and only its own)."""
        user, password = self.login(identity)
        return {USER_VAR: user, PASSWORD_VAR: password}

    def envs(self) -> list[str]:
        """The envs these credentials have users in."""
        return [env for env in subjects.ENVS if any(u.startswith(f"{env}-") for u in self.passwords)]


def login_from_env() -> tuple[str, str] | None:
    """(user, password) handed to this process in its environment, or None."""
    user = os.environ.get(USER_VAR, "")
    return (user, os.environ.get(PASSWORD_VAR, "")) if user else None


def _quote(value: str) -> str:
    return json.dumps(value)


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(s) for s in items) + "]"


def _user_block(user: str, password: str, perms: Permissions) -> str:
    pub = f"allow: {_list(perms.publish)}"
    if perms.deny_publish:
        pub += f", deny: {_list(perms.deny_publish)}"
    lines = [f"publish: {{{pub}}}", f"subscribe: {{allow: {_list(perms.subscribe)}}}"]
    if perms.responses:
        lines.append("allow_responses: true")
    return (f"      {{user: {_quote(user)}, password: {_quote(password)}, permissions: {{\n        "
            + "\n        ".join(lines) + "\n      }}")


def server_config(credentials: Credentials, npcs: int, envs: Sequence[str] | None = None) -> str:
    """The ``accounts`` section of a nats-server config: one account per env, one user per identity."""
    current = subjects.env()
    names = identities(npcs)
    blocks = ["accounts {"]
    for env in envs or credentials.envs():
        users = []
        for name, perms in names.items():
            user = user_name(env, name)
            if user not in credentials.passwords:
                raise ValueError(f"credentials: no password for user {user}")
            moved = perms if env == current else perms.in_env(env)
            users.append(_user_block(user, credentials.passwords[user], moved))
        blocks.append(f"  {env.upper()} {{\n    jetstream: enabled\n    users: [\n" + "\n".join(users)
                      + "\n    ]\n  }")
    blocks.append("}")
    return "\n".join(blocks) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nervous.auth config``: print the nats-server configuration of one env."""
    parser = argparse.ArgumentParser(prog="python -m nervous.auth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="print the nats-server accounts, users and permissions")
    config.add_argument("--env", action="append", default=None,
                        help=f"environment ({', '.join(subjects.ENVS)}); repeatable (default: all)")
    config.add_argument("--npcs", type=int, default=16, help="NPC users to make (npc-0 .. npc-N-1)")
    config.add_argument("--credentials", default="",
                        help="passwords file (JSON, mode 0600): read, or made when missing "
                             "(default: fresh passwords, printed only in the config)")
    args = parser.parse_args(argv)
    try:
        envs = args.env or list(subjects.ENVS)
        for env in envs:
            if env not in subjects.ENVS:
                raise ValueError(f"--env {env!r}: must be one of {', '.join(subjects.ENVS)}")
        if args.npcs < 0:
            raise ValueError(f"--npcs {args.npcs}: must be >= 0")
        path = Path(args.credentials) if args.credentials else None
        if path is not None and path.exists():
            credentials = Credentials.load(path)
        else:
            credentials = Credentials.generate(args.npcs, envs)
            if path is not None:
                credentials.save(path)
        text = server_config(credentials, args.npcs, envs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(f"# nimmerverse bus identities ({', '.join(envs)}), from python -m nervous.auth\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
