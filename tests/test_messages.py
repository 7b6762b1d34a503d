"""Messages: round trips, validation and one-line errors naming subject and field."""

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nervous.messages import (
    Action,
    Allocation,
    CellRequest,
    Command,
    GateEvent,
    Heartbeat,
    MessageError,
    NpcState,
    Observation,
    Region,
    TrailEvent,
    TrailKind,
    TrailOutcome,
    Wave,
    WaveBatch,
    decode,
    encode,
)
from world.tiles import PROPRIO_SIZE

SAMPLES = [
    Wave(cell="math", npc=3, region=Region.MATH, confidence=0.6, value=12.0, tick=5),
    NpcState(npc=1, tick=2, lifeforce=0.5, battery=1.0, reward_rate=0.1, tick_rate=10, cpu_use=3.5),
    Command(npc=1, tick=2, tick_rate=20, gates={Region.MATH: True}),
    Allocation(npc=1, tick=2, tick_rate=1, cpu_quota=5.0, gates={Region.FOOD: False}, llm_priority=10),
    GateEvent(npc=4, tick=9, region=Region.HAZARD, open=True, confidence=0.9, reason="collapse"),
    Heartbeat(domain="nervous", service="math", seq=3, uptime_s=1.5),
    Observation(npc=0, tick=1, side=3, view=bytes(9), proprio=bytes(80), reward=0.0),
    Action(npc=0, tick=1, action=6),
    TrailEvent(
        id="run1:7:120:escalation:math", run="run1", env="dev", npc=7, tick=120, kind=TrailKind.ESCALATION,
        region=Region.MATH, gate_open=True, inputs={"collapse": 0.9, "lifeforce": 0.4},
        situation='{"name": "report_situation", "arguments": {"npc": 7}}',
        cortex_request='{"model": "nyx"}', cortex_response='{"choices": []}', cortex_outcome="planned",
        latency_ms=12.5, fallback="", at=1.7e9,
    ),
    TrailOutcome(id="run1:7:120:escalation:math", npc=7, tick=140, after_ticks=20, reward=1.5,
                 lock_opened=True),
    Action(npc=0, tick=1, action=2),
    Observation(npc=1, tick=3, side=1, view=bytes(1), proprio=bytes(4 * PROPRIO_SIZE), reward=0.5,
                reward_rate=0.01, override_rate=0.2, overridden=True),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_with_a_version(msg: msgspec.Struct) -> None:
    data = encode(msg)
    assert decode(data, type(msg), "dev.x.y.z") == msg
    assert msg.version == 1


@pytest.mark.parametrize(
    "kind, fields, field",
    [
        (Wave, dict(cell="m", npc=1, region="math", confidence=1.5, value=0.0, tick=1), "confidence"),
        (Wave, dict(cell="m", npc=-1, region="math", confidence=0.5, value=0.0, tick=1), "npc"),
        (Wave, dict(cell="m", npc=1, region="maths", confidence=0.5, value=0.0, tick=1), "region"),
        (Wave, dict(cell="m", npc=1, region="math", confidence=0.5, value="x", tick=1), "value"),
        (Command, dict(npc=1, tick=1, tick_rate=21, gates={}), "tick_rate"),
        (Allocation, dict(npc=1, tick=1, tick_rate=5, cpu_quota=4.0, gates={}, llm_priority=1), "cpu_quota"),
        (
            Allocation,
            dict(npc=1, tick=1, tick_rate=5, cpu_quota=50.0, gates={}, llm_priority=11),
            "llm_priority",
        ),
        (Wave, dict(cell="m", npc=1, region="math", confidence=0.5, value=0.0, tick=1, version=2), "version"),
    ],
)
def test_invalid_fields_raise_message_error_naming_subject_and_field(kind, fields, field) -> None:
    tag = kind.__struct_config__.tag
    names = [f.name for f in msgspec.structs.fields(kind)]
    defaults = {"version": 1}
    row = [tag] + [fields.get(n, defaults.get(n)) for n in names]
    with pytest.raises(MessageError) as err:
        decode(msgspec.msgpack.encode(row), kind, "dev.nervous.cells.math.wave")
    assert err.value.field == field
    assert "dev.nervous.cells.math.wave" in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_message_type_and_oversize_are_rejected() -> None:
    wave = encode(SAMPLES[0])
    with pytest.raises(MessageError, match="type"):
        decode(wave, Action, "s")
    with pytest.raises(MessageError, match="limit"):
        decode(wave, Wave, "s", max_bytes=10)


@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    try:
        msg = decode(data, Wave, "s")
    except MessageError:
        return
    assert 0.0 <= msg.confidence <= 1.0


def test_wave_batch_round_trips_arrays_and_rejects_inconsistent_columns() -> None:
    rng = np.random.default_rng(0)
    n = 100
    batch = WaveBatch.from_arrays(
        7,
        ["smell", "math"],
        [Region.FOOD, Region.MATH],
        np.arange(n),
        rng.integers(0, 2, n),
        rng.random(n),
        rng.normal(size=n),
    )
    back = decode(encode(batch), WaveBatch, "s")
    npc, idx, conf, value = back.arrays()
    np.testing.assert_array_equal(npc, np.arange(n))
    assert len(back) == n and len(back.waves()) == n
    assert back.waves()[3].cell == ["smell", "math"][idx[3]]
    row = msgspec.msgpack.decode(encode(batch))
    row[6] = row[6][:-4]  # confidence column one short
    with pytest.raises(MessageError, match="confidence"):
        decode(msgspec.msgpack.encode(row), WaveBatch, "s")
    row = msgspec.msgpack.decode(encode(batch))
    row[6] = np.full(n, 2.0, dtype="<f4").tobytes()
    with pytest.raises(MessageError, match="confidence"):
        decode(msgspec.msgpack.encode(row), WaveBatch, "s")


def test_cell_request_checks_view_and_proprio_sizes() -> None:
    good = CellRequest(
        tick=1, npc=np.arange(2, dtype="<i4").tobytes(), side=3, views=bytes(18), proprio=bytes(160)
    )
    assert decode(encode(good), CellRequest, "s") == good
    row = msgspec.msgpack.decode(encode(good))
    row[4] = bytes(17)
    with pytest.raises(MessageError, match="views"):
        decode(msgspec.msgpack.encode(row), CellRequest, "s")


def test_observation_action_mask_must_cover_every_action():
    from nervous.messages import MessageError, Observation, decode, encode

    obs = Observation(npc=0, tick=1, side=3, view=bytes(9), proprio=bytes(80), reward=0.0,
                      action_mask=bytes([1, 1, 0, 0, 1, 0, 1]))
    assert decode(encode(obs), Observation, "dev.npc.0.obs").action_mask == obs.action_mask
    fields = msgspec.msgpack.decode(encode(obs))  # messages travel as arrays
    fields[fields.index(obs.action_mask)] = b"\x01"
    bad = msgspec.msgpack.encode(fields)
    with pytest.raises(MessageError, match="action_mask"):
        decode(bad, Observation, "dev.npc.0.obs")


def test_observation_proprio_must_hold_the_whole_contract():
    from nervous.messages import MessageError, Observation, decode, encode

    obs = Observation(npc=0, tick=1, side=3, view=bytes(9), proprio=bytes(80), reward=0.0)
    fields = msgspec.msgpack.decode(encode(obs))
    fields[fields.index(obs.proprio)] = bytes(40)  # 10 floats of the 20
    with pytest.raises(MessageError, match="proprio"):
        decode(msgspec.msgpack.encode(fields), Observation, "dev.npc.0.obs")


def test_an_observation_holding_a_tile_code_the_world_does_not_have_is_refused() -> None:
    """A hostile observation must not reach an NPC's cells (they index tables by tile code)."""
    good = Observation(npc=0, tick=1, side=3, view=bytes(9), proprio=bytes(80), reward=0.0)
    bad = encode(good).replace(bytes(9), bytes(8) + b"\xc8")  # code 200 in the last cell
    with pytest.raises(MessageError) as err:
        decode(bad, Observation, "dev.npc.0.obs")
    assert err.value.field == "view" and "200" in str(err.value)


TRAIL = next(s for s in SAMPLES if isinstance(s, TrailEvent))


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("id", "has space", "matching regex"),
        ("id", "", "length"),
        ("run", "a\x00b", "matching regex"),
        ("tick", 1 << 63, "<="),
        ("kind", "reflex", "Invalid enum"),
        ("inputs", {"x": float("nan")}, ">="),
        ("inputs", {f"i{i}": 0.0 for i in range(33)}, "length"),
        ("situation", "{not json", "not JSON text"),
        ("cortex_response", "x" * (64 << 10 + 1), "length"),
        ("latency_ms", -1.0, ">="),
    ],
)
def test_bad_trail_fields_are_named(field: str, value: object, reason: str) -> None:
    names = [f.name for f in msgspec.structs.fields(TrailEvent)]
    row = msgspec.msgpack.decode(encode(TRAIL))
    row[1 + names.index(field)] = value
    with pytest.raises(MessageError) as err:
        decode(msgspec.msgpack.encode(row), TrailEvent, "dev.trails.decision.event")
    assert err.value.field.startswith(field) and reason in err.value.reason
    assert "\n" not in str(err.value)


def test_trail_events_built_in_python_hold_enums_as_decoding_makes_them() -> None:
    event = msgspec.structs.replace(TRAIL, kind="gate", region="food")
    assert event.kind is TrailKind.GATE and event.region is Region.FOOD
    assert decode(encode(event), TrailEvent, "s") == event
