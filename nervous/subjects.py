"""NATS subject names: the only module that builds them.

Every subject is ``{env}.{domain}.{service}.{detail}`` (some details have two tokens, e.g.
``dev.nervous.cells.math.wave``). ``env`` comes from ``NIMMERVERSE_ENV`` (``dev``, ``staging`` or
``prod``; default ``dev``) and is read on every call, so a process that changes the variable sees the
new prefix. Tokens are validated: empty tokens, whitespace, the wildcards ``*`` and ``>`` and dots
inside one token raise ``ValueError`` naming the token. Patterns for subscriptions (with wildcards)
are built only by the ``*_pattern`` functions here.
"""

from __future__ import annotations

import os
import re

ENV_VAR = "NIMMERVERSE_ENV"
ENVS = ("dev", "staging", "prod")

# A token is printable ASCII without whitespace, '.', '*' or '>' (NATS' own rules, stricter on spaces).
_TOKEN = re.compile(r"[!-)+-\-/-=?-~]+")


def env() -> str:
    """The environment prefix from NIMMERVERSE_ENV (dev, staging or prod)."""
    value = os.environ.get(ENV_VAR, "dev")
    if value not in ENVS:
        raise ValueError(f"{ENV_VAR}={value!r} is not one of {', '.join(ENVS)}")
    return value


def token(value: object, name: str = "token") -> str:
    """One validated subject token (ints are formatted, strings checked)."""
    text = str(value)
    if not _TOKEN.fullmatch(text):
        raise ValueError(f"subject {name} {text!r} must be non-empty without spaces, '.', '*' or '>'")
    return text


def build(domain: str, service: str, *detail: object) -> str:
    """A validated ``{env}.{domain}.{service}.{detail...}`` subject."""
    if not detail:
        raise ValueError(f"subject detail missing for {domain}.{service}")
    parts = [env(), token(domain, "domain"), token(service, "service")]
    parts += [token(d, "detail") for d in detail]
    return ".".join(parts)


def npc_obs(npc_id: int | str) -> str:
    """World -> NPC observations of one NPC."""
    return build("npc", token(npc_id, "npc id"), "obs")


def npc_action(npc_id: int | str) -> str:
    """NPC -> world actions of one NPC."""
    return build("npc", token(npc_id, "npc id"), "action")


def npc_state(npc_id: int | str) -> str:
    """NPC -> governor state reports of one NPC."""
    return build("npc", token(npc_id, "npc id"), "state")


def npc_command(npc_id: int | str) -> str:
    """Governor/supervisor -> NPC commands for one NPC."""
    return build("npc", token(npc_id, "npc id"), "command")


def cell_wave(cell: str) -> str:
    """Waves emitted by one cell."""
    return build("nervous", "cells", token(cell, "cell"), "wave")


def cell_request(cell: str) -> str:
    """Requests to one cell run as a service."""
    return build("nervous", "cells", token(cell, "cell"), "request")


def cell_response(cell: str) -> str:
    """Responses of one cell service to requests that carried no reply inbox."""
    return build("nervous", "cells", token(cell, "cell"), "response")


def cell_heartbeat(cell: str) -> str:
    """Liveness of one cell service."""
    return build("nervous", "cells", token(cell, "cell"), "heartbeat")


def governor_allocate() -> str:
    """Governor allocation decisions."""
    return build("thalamus", "governor", "allocate")


def governor_collapse() -> str:
    """Collapse events the governor found in the NPCs' waves."""
    return build("thalamus", "governor", "collapse")


def gate_open() -> str:
    """Gate transitions to open."""
    return build("thalamus", "gate", "open")


def gate_close() -> str:
    """Gate transitions to closed."""
    return build("thalamus", "gate", "close")


def cortex_request() -> str:
    """Gated cortex requests (request/reply)."""
    return build("cortex", "nyx", "request")


def organ(name: str, verb: str) -> str:
    """One organ's verb, e.g. ``dev.organs.vision.detect``."""
    return build("organs", token(name, "organ"), token(verb, "verb"))


#: Verbs of an organ's subject space that are not requests to it.
ORGAN_CONTROL = ("event", "gate", "charge", "heartbeat")


def organ_event(name: str) -> str:
    """Lifecycle events of one organ (UNLOADED, LOADING, READY, PROCESSING)."""
    return build("organs", token(name, "organ"), "event")


def organ_gate(name: str) -> str:
    """Organ gates of NPCs for one organ (open: their requests are served)."""
    return build("organs", token(name, "organ"), "gate")


def organ_charge(name: str) -> str:
    """Lifeforce charges for served calls of one organ."""
    return build("organs", token(name, "organ"), "charge")


def organ_host_heartbeat() -> str:
    """Liveness of the organ host."""
    return heartbeat("organs", "host")


def world_frame(run: str) -> str:
    """World snapshots of one run for viewers."""
    return build("world", token(run, "run"), "frame")


def heartbeat(domain: str, service: str) -> str:
    """Liveness of one service."""
    return build(domain, service, "heartbeat")


def npc_states_pattern() -> str:
    """Subscription pattern matching the state reports of every NPC."""
    return f"{env()}.npc.*.state"


def trail_event() -> str:
    """Decision-trail events (gate decisions and escalations), captured by the trails stream."""
    return build("trails", "decision", "event")


def trail_outcome() -> str:
    """Outcomes of decision-trail events K ticks later, captured by the trails stream."""
    return build("trails", "decision", "outcome")


def trails_pattern() -> str:
    """Subjects captured by the JetStream trails stream (events and outcomes)."""
    return f"{env()}.trails.decision.*"


def trails_heartbeat() -> str:
    """Liveness of the trail writer service."""
    return build("trails", "writer", "heartbeat")


def all_cell_waves_pattern() -> str:
    """Subscription pattern matching the waves of every cell."""
    return f"{env()}.nervous.cells.*.wave"


def all_organ_events_pattern() -> str:
    """Subscription pattern matching the lifecycle events of every organ."""
    return f"{env()}.organs.*.event"


def all_organ_charges_pattern() -> str:
    """Subscription pattern matching the lifeforce charges of every organ."""
    return f"{env()}.organs.*.charge"


def events_pattern() -> list[str]:
    """Subjects captured by the JetStream events stream (waves, gate events, allocations, collapse events)."""
    return [all_cell_waves_pattern(), f"{env()}.thalamus.gate.*", governor_allocate(), governor_collapse()]


def inbox_prefix(identity: str) -> str:
    """Reply-inbox prefix of one client identity, kept apart per env."""
    return f"_INBOX.{env()}.{token(identity, 'identity')}"


# -- patterns of whole subject families (for the bus permissions in ``nervous.auth``) -----------------


def npc_pattern(detail: str) -> str:
    """Subscription pattern matching one detail (obs, action, state, command) of every NPC."""
    return f"{env()}.npc.*.{token(detail, 'detail')}"


def cells_pattern(detail: str) -> str:
    """Pattern matching one detail (wave, request, response, heartbeat) of every cell."""
    return f"{env()}.nervous.cells.*.{token(detail, 'detail')}"


def heartbeats_pattern() -> str:
    """Pattern matching every ``{env}.{domain}.{service}.heartbeat`` (cells' longer ones: cells_pattern)."""
    return f"{env()}.*.*.heartbeat"


def service_heartbeats_pattern(domain: str) -> str:
    """Pattern matching the heartbeats of every service of one domain, e.g. ``dev.world.*.heartbeat``."""
    return f"{env()}.{token(domain, 'domain')}.*.heartbeat"


def domain_pattern(domain: str) -> str:
    """Pattern matching every subject of one domain, e.g. ``dev.thalamus.>``."""
    return f"{env()}.{token(domain, 'domain')}.>"


def organs_pattern(verb: str = "*") -> str:
    """Pattern matching one verb of every organ (``*``: every verb, control ones included)."""
    return f"{env()}.organs.*.{verb if verb == '*' else token(verb, 'verb')}"


def world_frames_pattern() -> str:
    """Pattern matching the frames of every run."""
    return f"{env()}.world.*.frame"


def inbox_pattern(identity: str) -> str:
    """Pattern matching every reply inbox of one client identity."""
    return f"{inbox_prefix(identity)}.>"


def in_env(subject: str, target: str) -> str:
    """The same subject (or pattern, or inbox) in another env: its env token swapped for target."""
    if target not in ENVS:
        raise ValueError(f"env {target!r} is not one of {', '.join(ENVS)}")
    head, sep, rest = subject.partition(".")
    if head == "_INBOX":
        _, sep2, tail = rest.partition(".")
        return f"_INBOX.{target}{sep2}{tail}"
    if head not in ENVS:
        raise ValueError(f"subject {subject!r} does not start with an env")
    return f"{target}{sep}{rest}"
