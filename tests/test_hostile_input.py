"""Hostile input to every bus service: 1,000 fuzzed payloads each, then a valid request (real nats-server).

Each service stays up, answers every request that expects a reply (a CellError naming the field, or
the correct answer for a valid-looking request), counts what it rejects, and answers a valid request
correctly afterwards. A service flooded past the server's slow-consumer limit is not left deaf.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from agents.world_server import WorldServer, WorldServerConfig
from nervous import subjects
from nervous.bus import Bus
from nervous.cells.bank import CELLS
from nervous.cells.service import CellService, CellServiceConfig
from nervous.hostile import HOSTILE_CLASSES, fuzz_subject, hostile_payloads, sample_messages
from nervous.messages import (
    Action,
    CellError,
    CellRequest,
    Command,
    Heartbeat,
    MessageDecoder,
    MessageError,
    NpcState,
    Observation,
    WaveBatch,
    decode,
    encode,
)
from nervous.server import EmbeddedServer
from tests.live import until
from tests.nervous_senses import senses
from world.tiles import NUM_ACTIONS, PROPRIO_SIZE, Proprio
from world.tiles import Action as Act

ROOT = Path(__file__).resolve().parents[1]
N = 1000


def cell_request(m: int = 4, tick: int = 1) -> CellRequest:
    views, proprio = senses(m)
    proprio[0, Proprio.FACING_LOCK] = 1.0
    proprio[0, Proprio.LOCK_A], proprio[0, Proprio.LOCK_B], proprio[0, Proprio.LOCK_SHOWN] = 0.3, 0.4, 0.07
    proprio[1, Proprio.LIFEFORCE] = 0.05
    return CellRequest(
        tick=tick,
        npc=np.arange(100, 100 + m, dtype="<i4").tobytes(),
        side=views.shape[1],
        views=views.tobytes(),
        proprio=proprio.tobytes(),
    )


# -- the payloads -----------------------------------------------------------------------------------


def test_hostile_payloads_are_seeded_bounded_and_cover_every_class():
    valid = Command(npc=0, tick=3, tick_rate=5)
    first = list(hostile_payloads(valid, N, seed=3, max_bytes=1 << 20))
    assert first == list(hostile_payloads(valid, N, seed=3, max_bytes=1 << 20))
    assert first != list(hostile_payloads(valid, N, seed=4, max_bytes=1 << 20))
    assert {name for name, _ in first} == set(HOSTILE_CLASSES)
    assert all(len(data) <= 1 << 20 for _, data in first)
    big = [len(data) for name, data in first if name == "oversized"]
    assert big and all(len_ >= 1 << 19 for len_ in big)


@pytest.mark.parametrize("valid", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_hostile_payload_decodes_or_raises_an_error_naming_the_field(valid):
    kind = type(valid)
    outcomes = Counter()
    for name, data in hostile_payloads(valid, N, seed=11):
        try:
            msg = decode(data, kind, "fuzz")
        except MessageError as exc:
            assert exc.field and "\n" not in str(exc), (name, str(exc))
            outcomes["error"] += 1
        else:
            assert isinstance(msg, kind)
            outcomes["valid"] += 1
    assert outcomes["error"] > N // 2  # most hostile payloads are bad ones


def test_a_string_of_invalid_utf8_is_a_named_error_not_a_crash():
    data = bytearray(encode(Command(npc=0, tick=0, tick_rate=5)))
    data[1:3] = b"\xa7\xff"  # the type tag: a 7-byte string starting with an invalid UTF-8 byte
    with pytest.raises(MessageError, match="field <payload>: a string is not UTF-8"):
        decode(bytes(data), Command, "fuzz")
    with pytest.raises(MessageError, match="field <payload>: a string is not UTF-8"):
        MessageDecoder(Command)(bytes(data), "fuzz")  # the hot subscriptions' decoder


def test_an_error_echoing_hostile_text_stays_one_short_line():
    data = encode(Command(npc=0, tick=0, tick_rate=5)).replace(
        b"\xa7command", b"\xdb" + (1 << 20).to_bytes(4, "big")
    )
    data += b"a\n" * (1 << 19)  # a 1 MiB type tag of lines
    exc = pytest.raises(MessageError, decode, data, Command, "fuzz", 2 << 20).value
    assert "\n" not in str(exc) and len(str(exc)) < 400


# -- cell services ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(CELLS))
async def test_a_cell_service_answers_every_hostile_request_and_a_valid_one_afterwards(bus: Bus, cell: str):
    service = CellService(CellServiceConfig(cell=cell), bus)
    reference = CellService(CellServiceConfig(cell=cell), bus)  # never subscribed: computes expected answers
    await service.start()
    wrong: list[str] = []

    def check(name: str, payload: bytes, reply: bytes) -> None:
        try:
            req = decode(payload, CellRequest, "fuzz", service.config.max_request_bytes)
            expected: WaveBatch | CellError = reference.handle(req)
        except Exception:  # the service answers any failure with a CellError
            expected = CellError(error="", field="")
        got = decode(reply, WaveBatch | CellError, "reply")  # type: ignore[operator]
        if type(got) is not type(expected) or (isinstance(got, WaveBatch) and got != expected):
            wrong.append(f"{name}: expected {type(expected).__name__}, got {got!r:.200}")
        elif isinstance(got, CellError) and not got.field:
            wrong.append(f"{name}: error without a field: {got.error:.200}")

    report = await fuzz_subject(
        bus,
        subjects.cell_request(cell),
        hostile_payloads(cell_request(), N, seed=1),
        expects_reply=True,
        timeout=10.0,
        concurrency=1,
        on_reply=check,
    )
    assert report.sent == N and report.no_reply == 0, report.silent[:3]
    assert report.error_replies + report.other_replies == N
    assert report.unnamed_errors == 0 and wrong == []
    assert service.errors == report.error_replies and service.requests == N
    good = cell_request(tick=9)
    batch = await asyncio.wait_for(bus.request(subjects.cell_request(cell), good, WaveBatch, timeout=5), 10)
    assert batch == reference.handle(good)


# -- the world server's action subject ---------------------------------------------------------------


async def test_the_world_server_counts_hostile_actions_applies_none_and_keeps_ticking(bus: Bus):
    server = WorldServer(
        WorldServerConfig(stage=0, n_npcs=2, seed=1, clock="lockstep", lockstep_timeout_s=0.02, nerves=False),
        bus,  # no nerves: what is applied is what came over the bus
    )
    await server.start()
    subject = subjects.npc_action(0)
    payloads = list(hostile_payloads(Action(npc=0, tick=0, action=Act.EAST), N, seed=2))
    bad, spoofed, future, last_fresh = 0, 0, 0, Act.STAY
    for _, data in payloads:  # what the server must make of each one at tick 0
        try:
            action = decode(data, Action)
        except MessageError:
            bad += 1
            continue
        if action.npc != 0:  # npc 0's subject speaking for another NPC
            spoofed += 1
        elif action.tick > 0:
            future += 1
        elif action.tick == 0:
            last_fresh = action.action
    assert spoofed > 0  # the fuzzer does try other NPCs' ids
    report = await fuzz_subject(bus, subject, payloads, expects_reply=False)
    assert report.sent == N
    sub = server._subs[0]
    await until(
        lambda: (bus.bad_messages[subject], server.spoofed[subject], server.bad_actions, sub.pending_msgs)
        == (bad, spoofed, future, 0),
        what=lambda: (
            f"every hostile action to be counted: bad {bus.bad_messages[subject]} of {bad}, "
            f"spoofed {server.spoofed[subject]} of {spoofed}, future {server.bad_actions} of {future}, "
            f"{sub.pending_msgs} pending"
        ),
    )
    await asyncio.sleep(0.05)
    server.step()
    assert server.applied.tolist() == [last_fresh, Act.STAY]  # npc 1 is never moved through npc 0's subject
    # the world keeps ticking while hostile actions arrive, and a valid action afterwards is applied
    stop = asyncio.Event()
    ticking = asyncio.create_task(server.run(stop))
    tick = server.tick
    await fuzz_subject(
        bus, subject, hostile_payloads(Action(npc=0, tick=0, action=Act.EAST), N, seed=5), expects_reply=False
    )
    await until(lambda: server.tick >= tick + 5, what="the world to tick on")
    stop.set()
    await asyncio.wait_for(ticking, 10)
    assert not ticking.exception()
    await bus.publish(subject, Action(npc=0, tick=server.tick, action=Act.WEST))
    await until(lambda: server.pending_tick[0] == server.tick, what="the valid action")
    server.step()
    assert server.applied[0] == Act.WEST
    await server.stop()


# -- an NPC's command subject -----------------------------------------------------------------------


@pytest.mark.slow
async def test_an_npc_rejects_hostile_commands_keeps_acting_and_obeys_a_valid_one(bus: Bus, tmp_path: Path):
    config = {
        "npc": 0,
        "tick_rate": 20,
        "bus_url": bus.url,
        "run_dir": str(tmp_path),
        "hidden": 32,
        "view_size": 7,
        "state_s": 0.05,
        "heartbeat_s": 0.1,
    }
    log = (tmp_path / "npc.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.npc", "--config-json", json.dumps(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    actions: list[Action] = []
    states: list[NpcState] = []
    beats: list[Heartbeat] = []
    await bus.subscribe(subjects.npc_action(0), Action, lambda msg, raw: actions.append(msg))
    await bus.subscribe(subjects.npc_state(0), NpcState, lambda msg, raw: states.append(msg))
    await bus.subscribe(subjects.heartbeat("npc", "0"), Heartbeat, lambda msg, raw: beats.append(msg))

    async def world() -> None:  # observations at 20 Hz, as the world server sends them
        proprio = np.full(PROPRIO_SIZE, 0.5, "<f4").tobytes()
        for tick in range(100_000):
            obs = Observation(
                npc=0,
                tick=tick,
                side=7,
                view=bytes(49),
                proprio=proprio,
                reward=0.0,
                action_mask=bytes([1] * NUM_ACTIONS),
            )
            await bus.publish(subjects.npc_obs(0), obs)
            await asyncio.sleep(0.05)

    ticking = asyncio.create_task(world())
    try:
        await until(lambda: actions, timeout=60, what="the NPC's first action")
        payloads = list(hostile_payloads(Command(npc=0, tick=0, tick_rate=20), N, seed=4))
        bad = rejected = 0
        for _, data in payloads:  # what the NPC must make of each one
            try:
                command = MessageDecoder(Command)(data)
            except MessageError:
                bad += 1
                continue
            rejected += command.npc != 0
        before = len(actions)
        report = await fuzz_subject(bus, subjects.npc_command(0), payloads, expects_reply=False)
        assert report.sent == N
        await until(
            lambda: beats and beats[-1].errors == bad,
            what=lambda: f"{bad} bad commands counted (heartbeat: {beats[-1].errors})",
        )
        await until(lambda: len(actions) > before + 5, what="the NPC to keep acting")
        await bus.publish(subjects.npc_command(0), Command(npc=0, tick=1, tick_rate=2))
        await until(lambda: states and states[-1].tick_rate == 2, what="the tick rate change to take effect")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, (tmp_path / "npc.log").read_text()[-2000:]
        status = json.loads((tmp_path / "npc-0.status.json").read_text())
        assert (status["bad_commands"], status["rejected_commands"]) == (bad, rejected)
    finally:
        ticking.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


# -- slow consumers ---------------------------------------------------------------------------------


def slow_consumers(server: EmbeddedServer) -> int:
    """The server's count of clients it disconnected as slow consumers."""
    url = f"http://127.0.0.1:{server.monitor_port}/varz"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return int(json.load(resp)["slow_consumers"])


@pytest.mark.slow
async def test_a_cell_service_disconnected_as_a_slow_consumer_answers_again(
    bus: Bus, nats_server: EmbeddedServer
):
    proc = subprocess.Popen(
        [sys.executable, "-m", "nervous.cells.math", "--url", nats_server.url, "--heartbeat-s", "0.2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    beats: list[Heartbeat] = []
    await bus.subscribe(subjects.cell_heartbeat("math"), Heartbeat, lambda msg, raw: beats.append(msg))
    try:
        await until(lambda: beats, timeout=60, what="the cell service's first heartbeat")
        good = cell_request()
        expected = CellService(CellServiceConfig(cell="math"), bus).handle(good)
        assert await bus.request(subjects.cell_request("math"), good, WaveBatch, timeout=5) == expected
        # frozen, the service reads nothing: the server's buffer for it passes max_pending (64 MiB) ...
        proc.send_signal(signal.SIGSTOP)
        flood = bytes((1 << 20) - 1024)
        for _ in range(120):
            await bus.nc.publish(subjects.cell_request("math"), flood)
        await bus.flush(timeout=30)
        await until(lambda: slow_consumers(nats_server) >= 1, what="the server to drop the slow consumer")
        # ... and thawed, the service must hear requests again (reconnected and resubscribed, or restarted)
        proc.send_signal(signal.SIGCONT)

        async def answered() -> WaveBatch | None:
            try:
                return await bus.request(subjects.cell_request("math"), good, WaveBatch, timeout=1)
            except Exception:
                return None

        reply, deadline = None, asyncio.get_running_loop().time() + 60
        while reply is None and proc.poll() is None and asyncio.get_running_loop().time() < deadline:
            reply = await answered()  # no responders (not yet resubscribed) fails at once: try again
            await asyncio.sleep(0.1)
        assert proc.poll() is None, f"the cell service exited with {proc.returncode}"
        assert reply == expected
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


async def test_messages_dropped_past_a_subscriptions_pending_limit_are_counted_and_it_still_hears(
    bus, caplog
):
    got: list[bytes] = []
    release = asyncio.Event()

    async def slow(raw) -> None:
        await release.wait()
        got.append(raw.data)

    sub = await bus.nc.subscribe("dev.test.flood.in", cb=slow, pending_msgs_limit=10)
    with caplog.at_level("WARNING", logger="nervous.bus"):
        for i in range(200):
            await bus.nc.publish("dev.test.flood.in", str(i).encode())
        await bus.flush()
        await until(lambda: bus.dropped["dev.test.flood.in"] >= 150, what="the drops to be counted")
    assert "slow consumer on dev.test.flood.in" in caplog.text
    release.set()
    await bus.nc.publish("dev.test.flood.in", b"after")
    await until(lambda: got and got[-1] == b"after", what="the subscription to hear again")
    await sub.unsubscribe()


async def test_a_handler_that_raises_is_counted_logged_and_answered(bus, caplog):
    def handler(msg: Command, raw) -> None:
        if msg.tick_rate == 13:
            raise RuntimeError("unlucky")

    subject = subjects.npc_command(3)
    await bus.subscribe(subject, Command, handler)
    with caplog.at_level("ERROR", logger="nervous.bus"):
        reply = await bus.nc.request(subject, encode(Command(npc=3, tick=0, tick_rate=13)), timeout=5)
    error = decode(reply.data, CellError)
    assert error.field == "<handler>" and "unlucky" in error.error
    assert bus.handler_errors[subject] == 1 and "handler of dev.npc.3.command failed" in caplog.text
