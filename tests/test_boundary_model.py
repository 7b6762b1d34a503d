"""The Function Gemma model backend over real HTTP: the embedded server's function-gemma, scripted bad
answers, an unreachable server, and the cortex link recording the boundary's fallback in the trail."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

import jsonschema
import numpy as np
import openai
import pytest
from aiohttp import web

from governor.config import GovernorConfig
from governor.runtime import GovernedReflex
from nervous.cells import CellBank
from nervous.lifeforce import LifeforceConfig
from nervous.messages import Region
from nervous.server import free_port
from organs.boundary import DeterministicEncoder, NpcNumbers, encode_call
from organs.boundary.config import BoundaryConfig
from organs.boundary.model import ModelBoundary, boundary_request
from organs.boundary.numbers import decode_numbers, encode_numbers
from organs.boundary.schema import report_situation_declaration
from organs.config import CortexConfig
from organs.cortex.embedded import EmbeddedCortex
from organs.link import CortexLink
from organs.trails.recorder import TrailRecorder
from organs.trails.store import open_store
from organs.trails.writer import TrailWriter
from tests.cortex_fixtures import ScriptedServer, completion, hand_made_world, parse_map, proprio
from world.tiles import A, Tile

LOCK_ROOM = ["#####", "#.@L#", "#k.D#", "#####"]


def numbers(rows: list[str] = LOCK_ROOM, npc: int = 3) -> NpcNumbers:
    seen, (x, y) = parse_map(rows)
    return NpcNumbers(
        npc=npc, tick=7, x=x, y=y, proprio=proprio(facing=2, lock=(7, 8, 2, 0)), seen=seen,
        region=Region.MATH,
        collapse_confidence=0.9, collapse_cells=["vault", "key"],
        confidence=np.array([0.0, 0.25, 0.0, 0.9, 0.0, 0.0], np.float32),
        value=np.array([0.0, 1.0, 0.0, 56.0, 0.0, 0.0], np.float32),
    )  # fmt: skip


def model_config(**fields: Any) -> BoundaryConfig:
    return BoundaryConfig(**({"backend": "model", "timeout_s": 10.0} | fields))


# ==========================================================================================
# the numbers message and the fitted declaration
# ==========================================================================================
def test_the_numbers_message_reads_back_to_the_same_numbers_and_situation() -> None:
    original = numbers()
    text = encode_numbers(original)
    message = json.loads(text)
    assert message["proprio"]["lifeforce"] == 0.8 and message["seen"][1] == "10081"  # names, hex tile codes
    back = decode_numbers(text)
    np.testing.assert_array_equal(back.proprio, original.proprio)
    np.testing.assert_array_equal(back.seen, original.seen)
    np.testing.assert_array_equal(back.value, original.value)
    assert DeterministicEncoder().encode(back) == DeterministicEncoder().encode(original)


def test_a_collapse_confidence_on_a_rounding_edge_reads_back_to_the_same_percent() -> None:
    """float32(0.985) is 0.98500001...: 99 %; its shortest decimal 0.985 read as a float64 would be 98 %."""
    original = dataclasses.replace(numbers(), collapse_confidence=float(np.float32(0.985)))
    back = decode_numbers(encode_numbers(original))
    assert back.collapse_confidence == original.collapse_confidence
    assert DeterministicEncoder().encode(back) == DeterministicEncoder().encode(original)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m["seen"].__setitem__(1, "1008"), "numbers.seen[1]: 4 cells, expected 5"),
        (lambda m: m["seen"].__setitem__(0, "1111z"), "numbers.seen[0]"),
        (lambda m: m["proprio"].pop("battery"), "numbers.proprio: missing ['battery']"),
        (lambda m: m.__setitem__("region", "mood"), "numbers.region"),
        (lambda m: m.__setitem__("x", -1), "numbers.x"),
    ],
)
def test_a_malformed_numbers_message_names_its_field(edit: Any, field: str) -> None:
    message = json.loads(encode_numbers(numbers()))
    edit(message)
    with pytest.raises(ValueError, match="^" + field.replace("[", r"\[").replace("]", r"\]")):
        decode_numbers(json.dumps(message))


def test_the_fitted_declaration_admits_the_encoders_situation_and_refuses_one_that_does_not_fit() -> None:
    situation = json.loads(encode_call(DeterministicEncoder().encode(numbers())))["arguments"]
    fitted = report_situation_declaration(5, 4)["function"]["parameters"]
    jsonschema.validate(situation, fitted)
    jsonschema.validate(situation, report_situation_declaration()["function"]["parameters"])
    wrong_rows = json.loads(json.dumps(situation))
    wrong_rows["map"]["rows"] = wrong_rows["map"]["rows"][:3]  # valid for the general schema, not this map
    jsonschema.validate(wrong_rows, report_situation_declaration()["function"]["parameters"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong_rows, fitted)
    outside = json.loads(json.dumps(situation))
    outside["keys"] = [{"x": 5, "y": 0}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(outside, fitted)


# ==========================================================================================
# the embedded server's function-gemma
# ==========================================================================================
def test_the_embedded_function_gemma_writes_the_encoders_situation_over_http() -> None:
    with EmbeddedCortex() as server:
        boundary = ModelBoundary(model_config(), base_url=server.base_url)
        try:
            results = [boundary.situate(numbers(npc=n)) for n in range(3)]
        finally:
            boundary.close()
    for n, result in enumerate(results):
        assert result.fallback == "" and result.detail == "" and result.latency_s > 0
        assert result.situation == DeterministicEncoder().encode(numbers(npc=n))
    assert boundary.counts == {"requests": 3, "model": 3}


def test_a_model_boundary_without_a_url_starts_and_stops_its_own_embedded_server() -> None:
    boundary = ModelBoundary(model_config())
    server = boundary.server
    assert server is not None and server.process is not None
    try:
        assert boundary.situate(numbers()).fallback == ""
    finally:
        boundary.close()
    assert boundary.server is None and server.process is None


# ==========================================================================================
# invalid answers and unreachable servers fall back to the encoder
# ==========================================================================================
def _valid_arguments() -> str:
    return json.dumps(json.loads(encode_call(DeterministicEncoder().encode(numbers())))["arguments"])


def _answer(kind: str) -> web.Response:
    valid = _valid_arguments()
    misfit = json.loads(valid)
    misfit["map"]["height"] = 3  # rows no longer match: JSON-Schema bounds hold, the situation does not
    bodies = {
        "no_call": completion(None, content="I think the NPC is near a lock."),
        "several_calls": completion([("report_situation", valid), ("report_situation", valid)]),
        "wrong_function": completion([("answer_lock", '{"x": 3, "y": 1, "value": 56}')]),
        "bad_json": completion([("report_situation", valid[:-7])]),
        "bad_situation": completion([("report_situation", json.dumps(misfit))]),
    }
    if kind == "refused":
        return web.json_response({"error": {"message": "boom", "type": "x", "param": None, "code": None}},
                                 status=500)
    return web.json_response(bodies[kind])


@pytest.mark.parametrize(
    "kind", ["no_call", "several_calls", "wrong_function", "bad_json", "bad_situation", "refused"]
)
async def test_an_invalid_answer_falls_back_to_the_encoder_counted_by_kind(kind: str, caplog) -> None:
    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        return _answer(kind)

    async with ScriptedServer(handler) as server:
        boundary = ModelBoundary(model_config(), base_url=server.base_url)
        try:
            with caplog.at_level(logging.WARNING, logger="organs.boundary.model"):
                first = await asyncio.to_thread(boundary.situate, numbers())
                second = await asyncio.to_thread(boundary.situate, numbers())
        finally:
            boundary.close()
    assert first.fallback == second.fallback == kind and first.detail
    assert first.situation == DeterministicEncoder().encode(numbers())
    assert boundary.counts == {"requests": 2, "fallback": 2, f"fallback_{kind}": 2}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0] and kind in lines[0]  # one line per kind
    request = server.requests[0]  # what the model was asked: the numbers, report_situation forced
    assert decode_numbers(request["messages"][-1]["content"]).npc == 3
    assert request["tool_choice"] == {"type": "function", "function": {"name": "report_situation"}}
    rows = request["tools"][0]["function"]["parameters"]["$defs"]["SeenMap"]["properties"]["rows"]
    assert rows["maxItems"] == 4  # fitted to the 5x4 map


async def test_a_valid_scripted_answer_is_used_as_the_models_situation() -> None:
    arguments = json.loads(_valid_arguments())
    arguments["body"]["lifeforce"] = 11  # not what the encoder would write: proves the model's is used

    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(completion([("report_situation", json.dumps(arguments))]))

    async with ScriptedServer(handler) as server:
        boundary = ModelBoundary(model_config(fit_schema=False, tool_choice="auto"), base_url=server.base_url)
        try:
            result = await asyncio.to_thread(boundary.situate, numbers())
        finally:
            boundary.close()
    assert result.fallback == "" and result.situation.body.lifeforce == 11
    assert server.requests[0]["tool_choice"] == "auto"
    rows = server.requests[0]["tools"][0]["function"]["parameters"]["$defs"]["SeenMap"]["properties"]["rows"]
    assert rows["maxItems"] == 128 and rows["items"]["pattern"].endswith("{1,128}$")  # not fitted


def test_an_unreachable_server_falls_back_then_the_breaker_answers_at_once() -> None:
    config = model_config(base_url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=0.5, breaker_failures=2,
                          breaker_reset_s=60.0)
    boundary = ModelBoundary(config)
    try:
        results = [boundary.situate(numbers()) for _ in range(4)]
    finally:
        boundary.close()
    assert [r.fallback for r in results] == ["unreachable", "unreachable", "breaker_open", "breaker_open"]
    assert all(r.situation == DeterministicEncoder().encode(numbers()) for r in results)
    assert results[3].latency_s < 0.05  # the open breaker does not wait on the network
    assert boundary.counts["fallback"] == 4 and boundary.counts["fallback_unreachable"] == 2


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backend", "gemma", "cortex.boundary.backend='gemma': must be one of encoder, model"),
        ("base_url", "theia:31001", "cortex.boundary.base_url='theia:31001': must start with http"),
        ("timeout_s", 0, "cortex.boundary.timeout_s=0: must be > 0"),
        ("tool_choice", "none", "cortex.boundary.tool_choice='none': must be report_situation, auto"),
        ("model", "", "cortex.boundary.model=''"),
    ],
)
def test_bad_boundary_fields_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        BoundaryConfig(**{field: value})


def test_the_boundary_group_composes_under_the_cortex(compose_run) -> None:
    run = compose_run("cortex.boundary.backend=model", "cortex.boundary.base_url=http://theia:31001/v1")
    assert isinstance(run.cortex.boundary, BoundaryConfig) and run.cortex.boundary.backend == "model"
    assert run.cortex.boundary.base_url == "http://theia:31001/v1"
    assert compose_run().cortex.boundary == BoundaryConfig()  # the deterministic encoder by default
    assert boundary_request(BoundaryConfig(), numbers())["model"] == "function-gemma"


# ==========================================================================================
# the escalation path: the link's situations from the model, its fallbacks in the trail
# ==========================================================================================
ROOM = ["#########", "#.@.....#", "#.##....#", "####D####", "#.fff...#", "#########"]


def _escalate_once(link: CortexLink) -> tuple[list[int], Any]:
    """The keyed room: one math escalation, 12 ticks; the final actions and the world."""
    world = hand_made_world(ROOM)
    world.has_key[0, 0] = True
    world.refresh()
    bank = CellBank()
    reflex = GovernedReflex(GovernorConfig(kind="heuristic"), LifeforceConfig(per_brain_call=0.0), cells=bank,
                            escalator=link)
    actions = []
    for _ in range(12):
        bank.step(world.views.reshape(-1, world.V, world.V), world.proprio.reshape(1, -1), world.ticks)
        final, _ = reflex(world, np.full((1, 1), A.STAY))
        world.step(final)
        actions.append(int(final[0, 0]))
    return actions, world


@pytest.mark.parametrize("reachable", [True, False], ids=["model", "unreachable-model"])
def test_escalations_take_the_models_situation_and_the_trail_names_a_fallback(
    tmp_path, reachable: bool
) -> None:
    url = None if reachable else f"http://127.0.0.1:{free_port()}/v1"
    config = CortexConfig(backend="http", boundary=model_config(base_url=url, timeout_s=0.5))
    store = open_store(str(tmp_path / "trails.sqlite"))
    writer = TrailWriter(store)
    recorder = TrailRecorder(writer.write_many, "run-gemma", outcome_ticks=5)
    link = CortexLink(config, trails=recorder)
    try:
        assert link.boundary.base_url == (link.backend.base_url if reachable else url)  # the cortex's server
        actions, world = _escalate_once(link)
        stats = link.pop_stats()
    finally:
        link.close()
    recorder.flush()
    [record] = store.last(n=10, kind="escalation")
    writer.close()
    door = int(world.tiles[0, 3 + world.r, 4 + world.r])
    assert door == Tile.EMPTY and actions[1:5] == [A.EAST, A.EAST, A.SOUTH, A.INTERACT]  # planned either way
    event = record.event
    assert decode_numbers(event.numbers).npc == 0
    assert json.loads(event.situation)["name"] == "report_situation"
    if reachable:
        assert event.fallback == "" and link.boundary.counts == {"requests": 1, "model": 1}
        assert stats["cortex/boundary_fallbacks"] == 0
    else:
        assert event.fallback == "encoder:unreachable" and link.boundary.counts["fallback_unreachable"] == 1
        assert stats["cortex/boundary_fallbacks"] == 1
    assert event.cortex_outcome == "planned"


async def test_situate_many_asks_concurrently_and_keeps_the_order() -> None:
    in_flight, most = 0, 0

    async def handler(body: dict[str, Any]) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1
        situation = DeterministicEncoder().encode(decode_numbers(body["messages"][-1]["content"]))
        arguments = json.dumps(json.loads(encode_call(situation))["arguments"])
        return web.json_response(completion([("report_situation", arguments)]))

    async with ScriptedServer(handler) as server:
        boundary = ModelBoundary(model_config(concurrency=4), base_url=server.base_url)
        try:
            results = await asyncio.to_thread(boundary.situate_many, [numbers(npc=n) for n in range(6)])
        finally:
            boundary.close()
    assert [r.situation.npc for r in results] == list(range(6)) and all(r.fallback == "" for r in results)
    assert most == 4 and boundary.counts == {"requests": 6, "model": 6}  # 4 at once, never more


def test_the_embedded_function_gemma_refuses_what_it_cannot_serve_with_openai_errors() -> None:
    tool = report_situation_declaration()
    with EmbeddedCortex() as server, openai.OpenAI(base_url=server.base_url, api_key="x") as client:
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="function-gemma", tools=[tool],
                                           messages=[{"role": "user", "content": "the NPC is hungry"}])
        with pytest.raises(openai.BadRequestError) as undeclared:
            client.chat.completions.create(model="function-gemma",
                                           messages=[{"role": "user", "content": encode_numbers(numbers())}])
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gemma-9000", tools=[tool],
                                           messages=[{"role": "user", "content": encode_numbers(numbers())}])
        models = [m.id for m in client.models.list()]
    assert bad.value.body["param"] == "messages[0].content" and bad.value.body["code"] == "bad_numbers"
    assert "not an NPC's numbers: numbers: not JSON" in bad.value.body["message"]
    assert undeclared.value.body["param"] == "tools"
    assert models == ["nyx", "function-gemma"]
