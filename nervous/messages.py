"""Typed bus messages and their encoding.

Every message is a ``msgspec.Struct`` with a ``version`` field and a ``type`` tag, encoded as
MessagePack. Measured on this machine class (one Wave, encode + typed decode, see the commit that
introduced this module): msgspec msgpack ~0.5 us and 58 bytes, pydantic v2 JSON ~4 us and 110
bytes; msgspec also validates types and ranges (``Meta``) while decoding, so a message is checked
on receipt at no extra cost.

``decode(data, kind, subject)`` raises ``MessageError`` (one line naming the subject and the field)
for random bytes, wrong types, out-of-range values, unknown versions and oversized payloads.

``TrailEvent`` records one gate decision or escalation for the decision trails; its outcome K ticks
later comes as its own ``TrailOutcome`` with the same id (see ``TrailOutcome``).

``WaveBatch`` carries the waves of one cell (or of a cell bank) for one tick as columnar arrays
(raw little-endian bytes), which is how wave fan-in reaches >100 k waves/s into one subscriber.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, TypeVar

import msgspec
import numpy as np

from world.tiles import NUM_ACTIONS, NUM_CODES, PROPRIO_SIZE

SCHEMA_VERSION = 1
#: Default upper bound on a decoded payload; services may pass their own.
MAX_PAYLOAD_BYTES = 1 << 20

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
TickRate = Annotated[int, msgspec.Meta(ge=1, le=20)]
CpuQuota = Annotated[float, msgspec.Meta(ge=5.0, le=100.0)]
LlmPriority = Annotated[int, msgspec.Meta(ge=0, le=10)]
NpcId = Annotated[int, msgspec.Meta(ge=0)]
Tick = Annotated[int, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Region(enum.StrEnum):
    """Semantic region a wave speaks about."""

    FOOD = "food"
    HAZARD = "hazard"
    COLLISION = "collision"
    MATH = "math"
    SOCIAL = "social"
    ENERGY = "energy"


REGIONS: tuple[Region, ...] = tuple(Region)


def _one_short_line(text: str, limit: int = 200) -> str:
    """text with control characters escaped, cut to about limit characters."""
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = text[: limit + 1].encode("unicode_escape").decode("ascii")
    return escaped[:limit] + "..." if len(text) > limit or len(escaped) > limit else escaped


class MessageError(ValueError):
    """A payload that is not a valid message of the expected kind."""

    def __init__(self, subject: str, kind: str, field: str, reason: str) -> None:
        reason, field = _one_short_line(reason), _one_short_line(field)  # they may echo hostile input
        self.subject, self.kind, self.field, self.reason = subject, kind, field, reason
        super().__init__(f"bad {kind} on {subject or '<no subject>'}: field {field}: {reason}")


class Message(msgspec.Struct, kw_only=True, tag_field="type", array_like=True):
    """Base of every bus message: a schema version and a type tag."""

    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.version != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported version {self.version} (expected {SCHEMA_VERSION}) - at `$.version`"
            )


class Wave(Message, tag="wave"):
    """One confidence-tagged signal of one cell about one NPC."""

    cell: Name
    npc: NpcId
    region: Region
    confidence: Unit
    value: float
    tick: Tick


class WaveBatch(Message, tag="wave_batch"):
    """Waves of one tick as columns: npc int32, cell index uint8, confidence and value float32."""

    tick: Tick
    cells: list[Name]
    regions: list[Region]
    npc: bytes
    cell_index: bytes
    confidence: bytes
    value: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.cells) != len(self.regions):
            raise ValueError("cells and regions differ in length - at `$.regions`")
        n = len(self.npc) // 4
        if len(self.npc) % 4:
            raise ValueError("npc is not whole int32 values - at `$.npc`")
        for field, width in (("cell_index", 1), ("confidence", 4), ("value", 4)):
            if len(getattr(self, field)) != n * width:
                raise ValueError(f"length does not match npc ({n}) - at `$.{field}`")
        conf = np.frombuffer(self.confidence, dtype="<f4")
        if n and not (np.all(conf >= 0.0) and np.all(conf <= 1.0)):
            raise ValueError("confidence outside [0, 1] - at `$.confidence`")
        if n and int(np.frombuffer(self.cell_index, dtype=np.uint8).max()) >= len(self.cells):
            raise ValueError("cell index out of range - at `$.cell_index`")

    def __len__(self) -> int:
        return len(self.npc) // 4

    @classmethod
    def from_arrays(
        cls,
        tick: int,
        cells: list[str],
        regions: list[Region],
        npc: np.ndarray,
        cell_index: np.ndarray,
        confidence: np.ndarray,
        value: np.ndarray,
    ) -> WaveBatch:
        """A batch from flat arrays of equal length."""
        return cls(
            tick=tick,
            cells=list(cells),
            regions=list(regions),
            npc=np.ascontiguousarray(npc, dtype="<i4").tobytes(),
            cell_index=np.ascontiguousarray(cell_index, dtype=np.uint8).tobytes(),
            confidence=np.ascontiguousarray(confidence, dtype="<f4").tobytes(),
            value=np.ascontiguousarray(value, dtype="<f4").tobytes(),
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The columns as (npc, cell_index, confidence, value) arrays (read-only views)."""
        return (
            np.frombuffer(self.npc, dtype="<i4"),
            np.frombuffer(self.cell_index, dtype=np.uint8),
            np.frombuffer(self.confidence, dtype="<f4"),
            np.frombuffer(self.value, dtype="<f4"),
        )

    def waves(self) -> list[Wave]:
        """The batch as individual Wave messages (for logging and slow consumers)."""
        npc, idx, conf, value = self.arrays()
        return [
            Wave(
                cell=self.cells[i],
                npc=int(n),
                region=self.regions[i],
                confidence=float(c),
                value=float(v),
                tick=self.tick,
            )
            for n, i, c, v in zip(npc.tolist(), idx.tolist(), conf.tolist(), value.tolist(), strict=True)
        ]


class CollapseEvent(Message, tag="collapse"):
    """Several cells agreed on one region of one NPC inside the collapse window."""

    npc: NpcId
    region: Region
    confidence: Unit
    cells: list[Name]
    tick: Tick


class NpcState(Message, tag="npc_state"):
    """An NPC's report to the governor."""

    npc: NpcId
    tick: Tick
    lifeforce: Unit
    battery: Unit
    reward_rate: float
    tick_rate: TickRate
    cpu_use: Annotated[float, msgspec.Meta(ge=0.0)]
    alive: bool = True
    lag_ms: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    """Worst lag since the last report: from the world sending an observation to acting on it."""
    override_rate: Unit = 0.0
    """Moving average (0.05 per world tick) of the ticks a nerve overrode the NPC's action."""


class Command(Message, tag="command"):
    """Governor/supervisor order to one NPC."""

    npc: NpcId
    tick: Tick
    tick_rate: TickRate
    gates: dict[Region, bool] = {}


class Allocation(Message, tag="allocation"):
    """Governor decision for one NPC: tick rate, CPU quota, gates and LLM priority."""

    npc: NpcId
    tick: Tick
    tick_rate: TickRate
    cpu_quota: CpuQuota
    gates: dict[Region, bool]
    llm_priority: LlmPriority


class GateEvent(Message, tag="gate_event"):
    """A gate transition for one NPC and region."""

    npc: NpcId
    tick: Tick
    region: Region
    open: bool
    confidence: Unit
    reason: str = ""


#: A decision trail's event id: a token safe in a Nats-Msg-Id header and a primary key.
TrailId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:/@+=-]+$")]
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL's text cannot hold NUL bytes
#: Short text without NUL bytes, possibly empty.
ShortText = Annotated[str, msgspec.Meta(max_length=64, pattern=_NO_NUL)]
#: A name without NUL bytes (a run, an input).
TextName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_NUL)]
#: Seconds since the Unix epoch.
WallTime = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
#: A finite float (NaN and infinities rejected).
Finite = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
#: A count that fits a 64-bit signed column (SQLite INTEGER, PostgreSQL BIGINT).
Count64 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
#: JSON text (or empty), at most 64 KiB.
JsonText = Annotated[str, msgspec.Meta(max_length=64 << 10)]


class TrailKind(enum.StrEnum):
    """What a trail event records."""

    GATE = "gate"
    """A gate decision of the governor for one NPC and region (open or closed)."""
    ESCALATION = "escalation"
    """An escalation through an open gate to the cortex, with its request, answer and latency."""


def _check_json(owner: str, name: str, text: str) -> None:
    if text:
        try:
            msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise ValueError(f"{owner}.{name} is not JSON text ({exc}) - at `$.{name}`") from None


class TrailEvent(Message, tag="trail"):
    """One gate decision or escalation of one NPC, as the decision trails keep it.

    ``id`` is unique per decision (``trail_id`` in ``nervous.trail_stream`` builds a deterministic one)
    and is the JetStream ``Nats-Msg-Id`` and the store's primary key, so a redelivered or republished
    event is stored once. Its outcome K ticks later is a separate ``TrailOutcome`` with the same id.
    """

    id: TrailId
    run: TextName
    env: Name
    npc: Count64
    tick: Count64
    kind: TrailKind
    region: Region
    gate_open: bool
    inputs: Annotated[dict[TextName, Finite], msgspec.Meta(max_length=32)] = {}
    """The governor's inputs that mattered for this decision, by name (at most 32)."""
    situation: JsonText = ""
    """The boundary's situation call as JSON text ('' for a gate decision without escalation)."""
    cortex_request: JsonText = ""
    """The chat-completions request sent to the cortex as JSON text ('' when none was sent): model,
    messages, the names of the tools offered (their declarations are the code's), tool_choice,
    sampling and priority (``organs.cortex.client.recorded_request``)."""
    cortex_response: JsonText = ""
    """The cortex's answer as JSON text ('' when none came)."""
    cortex_outcome: ShortText = ""
    """How the escalation ended (``organs.escalation.Outcome``: planned, stale, failed, ...)."""
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=1e9)] = 0.0
    """From the gate opening to the cortex's answer, in milliseconds."""
    fallback: ShortText = ""
    """The fallback taken: '' none, e.g. 'reflex' (the brain went on), 'encoder' (the boundary model's
    output was invalid and the deterministic encoder stood in)."""
    at: WallTime = 0.0
    """When the decision was made (Unix seconds); the writer measures publish-to-commit from it."""
    numbers: JsonText = ""
    """The boundary's input as JSON text: the NPC's numbers message (``organs.boundary.numbers``) the
    situation was written from ('' for a gate decision); with the situation, a fine-tuning pair."""
    stage: Annotated[int, msgspec.Meta(ge=-1, le=1000)] = -1
    """The curriculum stage of the world the decision was made in (-1: not known)."""
    cortex_model: ShortText = ""
    """The model the cortex request asked ('' when none was sent)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.kind, self.region = TrailKind(self.kind), Region(self.region)  # as decoding makes them
        for name in ("situation", "cortex_request", "cortex_response", "numbers"):
            _check_json("TrailEvent", name, getattr(self, name))


class TrailOutcome(Message, tag="trail_outcome"):
    """What came of a trail event K ticks later: reward, lock opened, died (same id as the event).

    Published apart from its event (the outcome is known only K ticks later); the store keeps the
    first outcome per event id, in whichever order event and outcome arrive.
    """

    id: TrailId
    npc: Count64
    tick: Count64
    """The tick the outcome was measured at."""
    after_ticks: Count64
    """K: ticks between the decision and this outcome."""
    reward: Finite
    """Reward the NPC earned over those K ticks."""
    lock_opened: bool = False
    """A door or lock was opened in those K ticks."""
    died: bool = False
    """The NPC died in those K ticks."""
    at: WallTime = 0.0
    """When the outcome was measured (Unix seconds)."""


class Heartbeat(Message, tag="heartbeat"):
    """Liveness of one service with its counters."""

    domain: Name
    service: Name
    seq: Annotated[int, msgspec.Meta(ge=0)]
    uptime_s: Annotated[float, msgspec.Meta(ge=0.0)]
    requests: int = 0
    errors: int = 0


class Observation(Message, tag="observation"):
    """World -> NPC: view codes (uint8, side x side), proprio (float32), reward and the action mask."""

    npc: NpcId
    tick: Tick
    side: Annotated[int, msgspec.Meta(ge=1, le=63)]
    view: bytes
    proprio: bytes
    reward: float
    """World reward of this NPC summed since the world server last sent it an observation."""
    terminated: bool = False
    """Its slot ended (a death without respawn, or its episode's end) since its last observation."""
    truncated: bool = False
    """Its episode was cut at max steps since its last observation."""
    action_mask: bytes = b""
    """One byte per action (1: useful), as the world computed it; empty: every action allowed."""
    sent: float = 0.0
    """Wall-clock time (Unix seconds) the world server sent it; 0: unknown. NPCs measure lag by it."""
    reward_rate: float = 0.0
    """The world's per-tick moving average of this NPC's reward (the NPC is woken only at brain calls)."""
    override_rate: float = 0.0
    """The world's per-tick moving average of how often this NPC's nerves overrode its action."""
    overridden: bool = False
    """A nerve in the world server changed the NPC's last brain action (kept out of its PPO loss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.view) != self.side * self.side:
            raise ValueError(f"view has {len(self.view)} bytes, expected side*side - at `$.view`")
        if max(self.view) >= NUM_CODES:  # the NPC's cells and brain index tables by tile code
            raise ValueError(f"view holds tile code {max(self.view)}, not a world.tiles.Tile - at `$.view`")
        if len(self.proprio) % 4:
            raise ValueError("proprio is not whole float32 values - at `$.proprio`")
        if len(self.proprio) < 4 * PROPRIO_SIZE:
            raise ValueError(
                f"proprio has {len(self.proprio) // 4} floats, expected at least {PROPRIO_SIZE} "
                "- at `$.proprio`"
            )
        if self.action_mask and len(self.action_mask) != NUM_ACTIONS:
            raise ValueError(
                f"action_mask has {len(self.action_mask)} bytes, expected {NUM_ACTIONS} - at `$.action_mask`"
            )


class Action(Message, tag="action"):
    """NPC -> world: its brain's action for the tick of the observation that woke it (the world server's
    nerves may still change it)."""

    npc: NpcId
    tick: Tick
    action: Annotated[int, msgspec.Meta(ge=0, le=6)]


class CellRequest(Message, tag="cell_request"):
    """Senses of M NPCs for a cell service: views uint8 [M, side, side], proprio float32 [M, P]."""

    tick: Tick
    npc: bytes
    side: Annotated[int, msgspec.Meta(ge=1, le=63)]
    views: bytes
    proprio: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.npc) % 4:
            raise ValueError("npc is not whole int32 values - at `$.npc`")
        m = len(self.npc) // 4
        if len(self.views) != m * self.side * self.side:
            raise ValueError(f"views length does not match {m} NPCs of side {self.side} - at `$.views`")
        if m and (len(self.proprio) % (4 * m) or len(self.proprio) == 0):
            raise ValueError(f"proprio length does not match {m} NPCs - at `$.proprio`")


class CellError(Message, tag="cell_error"):
    """Error reply of a service: what was wrong, naming the field."""

    error: str
    field: str = ""


class OrganState(enum.StrEnum):
    """Lifecycle state of one organ in the organ host."""

    UNLOADED = "UNLOADED"
    LOADING = "LOADING"
    READY = "READY"
    PROCESSING = "PROCESSING"


Deadline = Annotated[float, msgspec.Meta(gt=0.0, le=60.0)]


class VisionRequest(Message, tag="vision_request", kw_only=True):
    """Ask the vision organ what lies in a window of rendered pixels around one NPC."""

    npc: NpcId
    """The asking NPC: its organ gate decides, its lifeforce pays."""
    tick: Tick = 0
    deadline_s: Deadline = 2.0
    """Seconds the caller waits for the answer, a load and a wait for a slot included."""
    side: Annotated[int, msgspec.Meta(ge=1, le=63)] = 15
    """Window side in cells (odd)."""
    cell_px: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    """Pixels per cell of the window."""
    pixels: bytes
    """RGB uint8 [side * cell_px, side * cell_px, 3], row-major: the window as rendered."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.side % 2 == 0:
            raise ValueError(f"side {self.side} is even; a window is centred on a cell - at `$.side`")
        expected = (self.side * self.cell_px) ** 2 * 3
        if len(self.pixels) != expected:
            raise ValueError(
                f"pixels has {len(self.pixels)} bytes, expected (side*cell_px)^2*3 = {expected} "
                "- at `$.pixels`"
            )


class VisionReply(Message, tag="vision_reply"):
    """What the vision organ saw: a tile code and a confidence per cell of the window."""

    npc: NpcId
    tick: Tick
    side: Annotated[int, msgspec.Meta(ge=1, le=63)]
    codes: bytes
    """uint8 [side, side] ``world.tiles.Tile`` codes (EMPTY .. NPC)."""
    confidence: bytes
    """float32 [side, side]: the network's probability of each code."""
    cost: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    """Lifeforce charged to the NPC for this call."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.codes) != self.side * self.side:
            raise ValueError(f"codes has {len(self.codes)} bytes, expected side*side - at `$.codes`")
        if len(self.confidence) != 4 * self.side * self.side:
            raise ValueError(
                f"confidence has {len(self.confidence)} bytes, expected 4*side*side - at `$.confidence`"
            )


class OrganEvent(Message, tag="organ_event"):
    """A lifecycle transition of one organ in the organ host."""

    organ: Name
    state: OrganState
    previous: OrganState
    reason: str = ""
    """Why: first request, evicted for another organ, idle, load failed, stopping."""
    rss_mib: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    """Resident memory of the organ's worker process after the transition (0: none)."""


class OrganGate(Message, tag="organ_gate"):
    """The organ gate of one NPC: while open, its requests to that organ are served."""

    npc: NpcId
    organ: Name
    open: bool
    tick: Tick = 0


class OrganCharge(Message, tag="organ_charge"):
    """Lifeforce one NPC owes for one served organ call."""

    npc: NpcId
    organ: Name
    verb: Name
    cost: Annotated[float, msgspec.Meta(ge=0.0)]
    tick: Tick = 0


AnyMessage = (
    Wave
    | WaveBatch
    | CollapseEvent
    | NpcState
    | Command
    | Allocation
    | GateEvent
    | TrailEvent
    | TrailOutcome
    | Heartbeat
    | Observation
    | Action
    | CellRequest
    | CellError
    | VisionRequest
    | VisionReply
    | OrganEvent
    | OrganGate
    | OrganCharge
)

M = TypeVar("M", bound=Message)

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[Any, msgspec.msgpack.Decoder] = {}


def encode(msg: Message) -> bytes:
    """The MessagePack bytes of a message."""
    return _encoder.encode(msg)


def _decoder(kind: Any) -> msgspec.msgpack.Decoder:
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    return dec


def _kind_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or " | ".join(t.__name__ for t in kind.__args__)


def _field_name(kind: Any, path: str) -> str:
    """Turn msgspec's ``$[i]...`` path of an array-like struct into the field's name."""
    path, _, key = path.rpartition("` in `")[::-1] if "` in `" in path else (path, "", "")
    key = f" {key}" if key else ""
    match = re.match(r"\$\[(\d+)\](.*)", path)
    if match is None or not isinstance(kind, type):
        return (path.removeprefix("$.").removeprefix("$") or "<message>") + key
    names = [f.name for f in msgspec.structs.fields(kind)]
    index = int(match.group(1)) - 1  # element 0 is the type tag
    name = names[index] if 0 <= index < len(names) else "type" if index == -1 else f"[{index + 1}]"
    return name + match.group(2) + key


def decode(data: bytes, kind: type[M], subject: str = "", max_bytes: int = MAX_PAYLOAD_BYTES) -> M:
    """A validated message of ``kind`` (a Message class or a union) or MessageError."""
    if len(data) > max_bytes:
        raise MessageError(subject, _kind_name(kind), "<payload>", f"{len(data)} bytes > limit {max_bytes}")
    try:
        return _decoder(kind).decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason, _, where = text.partition(" - at `")
        field = _field_name(kind, where.rstrip("`"))
        raise MessageError(subject, _kind_name(kind), field, reason) from None
    except msgspec.DecodeError as exc:
        raise MessageError(subject, _kind_name(kind), "<payload>", str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec lets a string of invalid UTF-8 through as this
        raise MessageError(
            subject, _kind_name(kind), "<payload>", f"a string is not UTF-8: {exc.reason}"
        ) from None


class MessageDecoder:
    """Decoder of one kind of message for hot subscriptions: same checks and errors as ``decode``."""

    def __init__(self, kind: type[M], max_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self.kind, self.max_bytes = kind, max_bytes
        self._decode = _decoder(kind).decode

    def __call__(self, data: bytes, subject: str = "") -> Any:
        """A validated message or MessageError naming the subject and field."""
        if len(data) <= self.max_bytes:
            try:
                return self._decode(data)
            except (ValueError, msgspec.DecodeError):  # ValidationError, and UnicodeDecodeError
                pass
        return decode(data, self.kind, subject, self.max_bytes)  # raises the named error
