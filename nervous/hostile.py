"""Hostile input for bus services: seeded fuzzed payloads of a message schema and a driver that sends them.

``hostile_payloads(valid, n, seed, max_bytes)`` yields ``(class_name, payload)`` pairs built from one
valid message of ``nervous.messages``; the same seed gives the same payloads. The classes
(``HOSTILE_CLASSES``) are:

- ``random_bytes``: noise, mostly short, sometimes kilobytes;
- ``truncated``: a prefix of the valid encoding;
- ``bit_flip``: the valid encoding with a few bytes overwritten;
- ``wrong_type``: one field replaced by a value of another type (string, float, list, map, nil, ...);
- ``out_of_range``: one number just outside its declared bounds, NaN/inf, ints beyond int64, or a
  bytes/str/list field of the wrong length;
- ``wrong_tag`` / ``wrong_version``: another message's tag, an unknown tag, version 0, 2, -1, "1";
- ``wrong_length``: too few array elements, or a map instead of the array;
- ``nested_garbage``: a field (or the whole message) replaced by deeply nested lists and maps;
- ``other_message``: a valid encoding of another message class; ``json``: the message as JSON;
- ``oversized``: the message grown to between half of and exactly ``max_bytes`` (the broker's
  ``max_payload``; ``EmbeddedServer`` uses 1 MiB);
- ``unknown_npc``: a valid-looking message naming NPC ids no world has.

``await fuzz_subject(bus, subject, payloads, expects_reply=...)`` sends them and returns a
``FuzzReport`` counting error replies (``CellError``), other replies and requests left unanswered.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import numpy as np

from nervous.bus import Bus
from nervous.messages import (
    MAX_PAYLOAD_BYTES,
    Action,
    Allocation,
    CellError,
    CellRequest,
    CollapseEvent,
    Command,
    GateEvent,
    Heartbeat,
    Message,
    MessageError,
    NpcState,
    Observation,
    Region,
    Wave,
    WaveBatch,
    decode,
    encode,
)
from world.tiles import NUM_ACTIONS, PROPRIO_SIZE

#: Class name -> relative weight in the mix (oversized payloads are costly to send, so rarer).
HOSTILE_CLASSES: dict[str, float] = {
    "random_bytes": 1.0,
    "truncated": 1.0,
    "bit_flip": 1.0,
    "wrong_type": 1.5,
    "out_of_range": 1.5,
    "wrong_tag": 0.5,
    "wrong_version": 0.5,
    "wrong_length": 0.5,
    "nested_garbage": 0.5,
    "other_message": 0.5,
    "json": 0.25,
    "oversized": 0.1,
    "unknown_npc": 1.0,
}

#: Values of every msgpack type, for replacing a field with one of another type.
_WRONG_TYPES: tuple[Any, ...] = (
    "x", "", 1.5, -1, 0, True, None, [], [1, 2, 3], {}, {"a": 1}, b"\x00\xff", 2**64 - 1, float("nan"),
)  # fmt: skip

#: Ids no world has (worlds hold at most a few hundred NPC slots).
_UNKNOWN_NPCS: tuple[int, ...] = (1_000_000, 2**31 - 1, 4096, 999_999_999)


def sample_messages() -> list[Message]:
    """One valid message of every class in ``nervous.messages``."""
    side = 3
    return [
        Wave(cell="math", npc=1, region=Region.MATH, confidence=0.5, value=7.0, tick=3),
        WaveBatch.from_arrays(
            3, ["math"], [Region.MATH], np.array([1]), np.array([0]), np.array([0.9]), np.array([7.0])
        ),
        CollapseEvent(npc=1, region=Region.FOOD, confidence=0.8, cells=["smell", "social"], tick=3),
        NpcState(npc=1, tick=3, lifeforce=0.5, battery=0.5, reward_rate=0.0, tick_rate=10, cpu_use=0.1),
        Command(npc=1, tick=3, tick_rate=5, gates={Region.MATH: True}),
        Allocation(npc=1, tick=3, tick_rate=5, cpu_quota=50.0, gates={}, llm_priority=3),
        GateEvent(npc=1, tick=3, region=Region.HAZARD, open=True, confidence=0.7),
        Heartbeat(domain="nervous", service="math", seq=1, uptime_s=1.0),
        Observation(
            npc=1,
            tick=3,
            side=side,
            view=bytes(side * side),
            proprio=bytes(4 * PROPRIO_SIZE),
            reward=0.0,
            action_mask=bytes(NUM_ACTIONS),
        ),
        Action(npc=1, tick=3, action=2),
        CellRequest(
            tick=3,
            npc=np.arange(2, dtype="<i4").tobytes(),
            side=side,
            views=bytes(2 * side * side),
            proprio=bytes(2 * 4 * PROPRIO_SIZE),
        ),
        CellError(error="bad", field="tick"),
    ]


class _Mutator:
    """Builds the hostile payloads of one class of message from its valid array encoding."""

    def __init__(self, valid: Message, rng: np.random.Generator, max_bytes: int) -> None:
        self.valid, self.rng, self.max_bytes = valid, rng, max_bytes
        self.kind = type(valid)
        self.encoded = encode(valid)
        self.row: list[Any] = msgspec.msgpack.decode(self.encoded)  # [tag, *fields in struct order]
        self.names = [f.name for f in msgspec.structs.fields(self.kind)]
        info = msgspec.inspect.type_info(self.kind)
        self.types = {f.name: f.type for f in info.fields}  # type: ignore[attr-defined]
        self.others = [encode(m) for m in sample_messages() if type(m) is not self.kind]

    def _pick(self, seq: Any) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def _field_index(self, names: list[str] | None = None) -> int:
        """Array index of a random field (element 0 is the tag)."""
        name = self._pick(names or self.names)
        return 1 + self.names.index(name)

    def _with(self, index: int, value: Any) -> bytes:
        row = list(self.row)
        row[index] = value
        return msgspec.msgpack.encode(row)

    # -- classes ----------------------------------------------------------------------------------

    def random_bytes(self) -> bytes:
        size = int(self.rng.integers(0, 64)) if self.rng.random() < 0.8 else int(self.rng.integers(64, 8192))
        return self.rng.bytes(size)

    def truncated(self) -> bytes:
        return self.encoded[: int(self.rng.integers(0, len(self.encoded)))]

    def bit_flip(self) -> bytes:
        data = bytearray(self.encoded)
        for _ in range(int(self.rng.integers(1, 4))):
            data[int(self.rng.integers(len(data)))] = int(self.rng.integers(256))
        return bytes(data)

    def wrong_type(self) -> bytes:
        index = self._field_index()
        current = self.row[index]
        choices = [v for v in _WRONG_TYPES if type(v) is not type(current)]
        return self._with(index, self._pick(choices))

    def out_of_range(self) -> bytes:
        index = self._field_index()
        return self._with(index, self._bad_value(self.types[self.names[index - 1]], self.row[index]))

    def _bad_value(self, t: Any, current: Any) -> Any:
        """A value of the field's own type that breaks its bounds (or, unbounded, is extreme)."""
        if isinstance(t, msgspec.inspect.IntType):
            options: list[Any] = [2**63, 2**64 - 1, -(2**63)]
            options += [t.ge - 1] if t.ge is not None else []
            options += [t.le + 1, t.le + 30] if t.le is not None else []
            return self._pick(options)
        if isinstance(t, msgspec.inspect.FloatType):
            options = [math.nan, math.inf, -math.inf, 1e308, -1e308]
            options += [t.ge - 0.5] if t.ge is not None else []
            options += [t.le + 0.5] if t.le is not None else []
            return self._pick(options)
        if isinstance(t, msgspec.inspect.BytesType):
            cut = int(self.rng.integers(1, 5))
            return self._pick([b"", current[:-cut], current + self.rng.bytes(cut)])
        if isinstance(t, msgspec.inspect.StrType):
            return self._pick(["", "x" * ((t.max_length or 64) + 1), "\x00" * 3, "é" * 40])
        if isinstance(t, msgspec.inspect.ListType):
            return self._pick([[], current * 3, [*current, "unknown"]])
        if isinstance(t, msgspec.inspect.DictType):
            return self._pick([{"nowhere": True}, {"food": "yes"}, {"": None}])
        if isinstance(t, msgspec.inspect.EnumType):
            return self._pick(["nowhere", "", "FOOD"])
        return self._pick(_WRONG_TYPES)

    def wrong_tag(self) -> bytes:
        other_tags = [msgspec.msgpack.decode(o)[0] for o in self.others]
        return self._with(0, self._pick([*other_tags, "", "unknown", 1, None]))

    def wrong_version(self) -> bytes:
        return self._with(1 + self.names.index("version"), self._pick([0, 2, -1, "1", 2**64 - 1, 1.0]))

    def wrong_length(self) -> bytes:
        if self.rng.random() < 0.3:
            return msgspec.msgpack.encode(dict(zip(["type", *self.names], self.row, strict=True)))
        return msgspec.msgpack.encode(self.row[: int(self.rng.integers(0, len(self.row)))])

    def nested_garbage(self) -> bytes:
        depth = int(self.rng.integers(2, 5000))
        nest = b"".join(b"\x91" if level % 2 else b"\x81\xa1k" for level in range(depth)) + b"\x00"
        if self.rng.random() < 0.3:
            return nest
        index = self._field_index()  # raw msgpack: deeper than msgspec's encoder recurses
        parts = [msgspec.msgpack.encode(v) for v in self.row]
        parts[index] = nest
        return bytes([0x90 | len(parts)]) + b"".join(parts)

    def other_message(self) -> bytes:
        return self._pick(self.others)

    def json(self) -> bytes:
        return msgspec.json.encode(self.valid)

    def oversized(self) -> bytes:
        target = int(self.rng.integers(self.max_bytes // 2, self.max_bytes + 1))
        row = list(self.row)
        grow = [i for i, v in enumerate(row) if isinstance(v, bytes | str) and i > 0]
        index = self._pick(grow) if grow else len(row)
        if index == len(row):
            row.append(b"")  # no bytes field: a trailing blob
        filler = b"\x00" if isinstance(row[index], bytes) else "x"
        row[index] = row[index] * 0 + filler * target
        excess = len(msgspec.msgpack.encode(row)) - target
        row[index] = row[index][: max(0, target - excess)]
        data = msgspec.msgpack.encode(row)
        return data if len(data) <= self.max_bytes else data[: self.max_bytes]

    def unknown_npc(self) -> bytes:
        if "npc" not in self.names:
            return self.encoded
        index = 1 + self.names.index("npc")
        current = self.row[index]
        if isinstance(current, bytes):  # a column of int32 ids
            ids = self.rng.integers(-(2**31), 2**31, size=len(current) // 4, dtype=np.int64)
            return self._with(index, ids.astype("<i4").tobytes())
        return self._with(index, self._pick(_UNKNOWN_NPCS))


def hostile_payloads(
    valid: Message, n: int, seed: int = 0, max_bytes: int = MAX_PAYLOAD_BYTES
) -> Iterator[tuple[str, bytes]]:
    """n seeded hostile payloads ``(class name, bytes)`` built from one valid message, each <= max_bytes."""
    if n < 0:
        raise ValueError(f"hostile_payloads n={n}: must be >= 0")
    if max_bytes < 1024:
        raise ValueError(f"hostile_payloads max_bytes={max_bytes}: must be >= 1024")
    rng = np.random.default_rng(seed)
    mutator = _Mutator(valid, rng, max_bytes)
    classes = [c for c in HOSTILE_CLASSES if c != "unknown_npc" or "npc" in mutator.names]
    weights = np.array([HOSTILE_CLASSES[c] for c in classes])
    picks = rng.choice(len(classes), size=n, p=weights / weights.sum())
    for pick in picks:
        name = classes[int(pick)]
        yield name, getattr(mutator, name)()


@dataclass
class FuzzReport:
    """What a service did with hostile payloads sent to one subject."""

    subject: str
    sent: int = 0
    """Payloads published (refused ones not included)."""
    error_replies: int = 0
    """Replies that were a CellError."""
    unnamed_errors: int = 0
    """CellError replies that named no field (a subset of error_replies)."""
    other_replies: int = 0
    """Replies that were not a CellError (a service may answer a valid-looking request)."""
    no_reply: int = 0
    """Requests that got no reply within the timeout (or found no responder)."""
    refused: int = 0
    """Payloads the client refused to send (over the broker's max_payload)."""
    seconds: float = 0.0
    """Wall-clock time of the run."""
    by_class: dict[str, Counter[str]] = field(default_factory=dict)
    """Per hostile class: counts of 'error', 'other', 'none' and 'sent' outcomes."""
    silent: list[tuple[str, bytes]] = field(default_factory=list)
    """The first payloads that got no reply, for diagnosis."""

    def summary(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict."""
        return {
            "subject": self.subject,
            "sent": self.sent,
            "error_replies": self.error_replies,
            "unnamed_errors": self.unnamed_errors,
            "other_replies": self.other_replies,
            "no_reply": self.no_reply,
            "refused": self.refused,
            "seconds": round(self.seconds, 3),
        }


async def fuzz_subject(
    bus: Bus,
    subject: str,
    payloads: Iterable[tuple[str, bytes]],
    expects_reply: bool,
    timeout: float = 2.0,
    concurrency: int = 8,
    on_reply: Callable[[str, bytes, bytes], None] | None = None,
    flush_every_bytes: int = 4 << 20,
) -> FuzzReport:
    """Send every payload to subject (as requests when expects_reply) and count how the service answered.

    Requests go out from ``concurrency`` workers (1 keeps the service's order); ``on_reply(class_name,
    payload, reply)`` sees every reply, for checking answers. Publishes (no reply expected) are flushed
    every ``flush_every_bytes``, so a fuzz run stays a fuzz run and not a slow-consumer flood.
    """
    report = FuzzReport(subject)
    source = iter(payloads)
    started = time.perf_counter()

    def note(name: str, outcome: str) -> None:
        report.by_class.setdefault(name, Counter())[outcome] += 1

    async def ask(name: str, data: bytes) -> None:
        try:
            reply = await bus.nc.request(subject, data, timeout=timeout)
        except nats.errors.MaxPayloadError:
            report.refused += 1
            return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            report.sent += 1
            report.no_reply += 1
            note(name, "none")
            if len(report.silent) < 10:
                report.silent.append((name, data))
            return
        report.sent += 1
        if on_reply is not None:
            on_reply(name, data, reply.data)
        try:
            error = decode(reply.data, CellError, subject)
        except MessageError:
            report.other_replies += 1
            note(name, "other")
            return
        report.error_replies += 1
        report.unnamed_errors += not error.field
        note(name, "error")

    async def worker() -> None:
        for name, data in source:  # workers share the iterator: each payload is sent once
            await ask(name, data)

    if expects_reply:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    else:
        unflushed = 0
        for name, data in source:
            try:
                await bus.nc.publish(subject, data)
            except nats.errors.MaxPayloadError:
                report.refused += 1
                continue
            report.sent += 1
            note(name, "sent")
            unflushed += len(data)
            if unflushed >= flush_every_bytes:
                await bus.nc.flush(timeout=max(timeout, 10.0))
                unflushed = 0
        await bus.nc.flush(timeout=max(timeout, 10.0))
    report.seconds = time.perf_counter() - started
    return report


def hostile_json_bodies(valid: dict[str, Any], n: int, seed: int = 0,
                        max_bytes: int = 1 << 20) -> Iterator[tuple[str, bytes]]:
    """n seeded hostile HTTP bodies for a JSON API, as (class name, body): random bytes, truncated
    and non-object JSON, every top-level field dropped or of a wrong type, garbage nested in lists
    and objects, invalid UTF-8, deep nesting, out-of-range numbers and bodies around max_bytes."""
    rng = random.Random(seed)
    text = json.dumps(valid).encode()
    wrong: list[Any] = [None, -1, 2**70, 1e308, "x" * 300, [], {}, [1, "a", None], {"a": {"b": []}}, True]

    def dropped() -> bytes:
        body = dict(valid)
        body.pop(rng.choice(sorted(body)), None)
        return json.dumps(body).encode()

    def mistyped() -> bytes:
        body = dict(valid)
        body[rng.choice(sorted(body))] = rng.choice(wrong)
        return json.dumps(body).encode()

    def nested() -> bytes:
        body = json.loads(text)
        key = rng.choice([k for k, v in body.items() if isinstance(v, list | dict)] or sorted(body))
        if isinstance(body[key], list) and body[key]:
            body[key][rng.randrange(len(body[key]))] = rng.choice(wrong)
        elif isinstance(body[key], dict) and body[key]:
            body[key][rng.choice(sorted(body[key]))] = rng.choice(wrong)
        else:
            body[key] = rng.choice(wrong)
        return json.dumps(body).encode()

    classes: list[tuple[str, Callable[[], bytes]]] = [
        ("random_bytes", lambda: rng.randbytes(rng.randrange(0, 2048))),
        ("truncated", lambda: text[: rng.randrange(0, len(text))]),
        ("not_an_object", lambda: json.dumps(rng.choice([[1, 2], 3, "nyx", None, 1.5])).encode()),
        ("dropped_field", dropped),
        ("mistyped_field", mistyped),
        ("nested_garbage", nested),
        ("invalid_utf8", lambda: text.replace(b'"', b'"\xff\xfe', 1)),
        ("deep_nesting", lambda: b"[" * 100_000 + b"]" * 100_000),
        ("nan_and_inf", lambda: text[:-1] + b', "temperature": NaN, "max_tokens": Infinity}'),
        ("oversized", lambda: text[:-1] + b', "pad": "' + b"x" * rng.randrange(max_bytes // 2, max_bytes * 2)
         + b'"}'),
    ]
    for i in range(n):
        name, make = classes[i % len(classes)]
        yield name, make()
