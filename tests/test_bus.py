"""The bus against real nats-servers: pub/sub, request/reply, failures and JetStream."""

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.messages import Command, GateEvent, Region, Wave, encode
from nervous.server import EmbeddedServer, ServerError

WAVE = Wave(cell="math", npc=3, region=Region.MATH, confidence=0.6, value=12.0, tick=5)


async def wait_until(predicate, timeout: float, step: float = 0.02) -> float:
    """Seconds until predicate() held; TimeoutError after timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - start


async def test_publish_subscribe_delivers_typed_messages_and_counts_bad_ones(bus: Bus) -> None:
    got: list[Wave] = []

    async def on_wave(msg: Wave, raw) -> None:
        got.append(msg)

    subject = subjects.cell_wave("math")
    await bus.subscribe(subject, Wave, on_wave)
    for _ in range(3):
        await bus.publish(subject, WAVE)
    await bus.nc.publish(subject, b"\xc1 not msgpack")
    await bus.publish(subject, Command(npc=1, tick=1, tick_rate=5))  # wrong type on this subject
    await asyncio.wait_for(bus.flush(), 2)
    await wait_until(lambda: len(got) == 3 and bus.bad_messages[subject] == 2, 2)
    assert got == [WAVE] * 3


async def test_plain_function_handlers_receive_decoded_messages(bus: Bus) -> None:
    got: list[Wave] = []
    subject = subjects.cell_wave("smell")
    await bus.subscribe(subject, Wave, lambda msg, raw: got.append(msg))
    await bus.publish(subject, WAVE)
    await bus.nc.publish(subject, bytes(2000))  # over the subscription's size limit below
    await asyncio.wait_for(bus.flush(), 2)
    await wait_until(lambda: got == [WAVE], 2)
    small = subjects.cell_wave("tiny")
    await bus.subscribe(small, Wave, lambda msg, raw: got.append(msg), max_bytes=16)
    await bus.publish(small, WAVE)  # 37 bytes > 16
    await wait_until(lambda: bus.bad_messages[small] == 1, 2)
    assert got == [WAVE]


async def test_request_reply_and_error_replies(bus: Bus) -> None:
    subject = subjects.cortex_request()

    async def echo(msg: Command, raw) -> None:
        await raw.respond(encode(Command(npc=msg.npc, tick=msg.tick + 1, tick_rate=msg.tick_rate)))

    await bus.subscribe(subject, Command, echo)
    reply = await asyncio.wait_for(bus.request(subject, Command(npc=2, tick=4, tick_rate=3), Command), 2)
    assert (reply.npc, reply.tick) == (2, 5)
    # a malformed request is answered with a CellError, which request() raises as BusError
    with pytest.raises(BusError, match=subject):
        await asyncio.wait_for(bus.request(subject, WAVE, Command), 2)
    assert bus.bad_messages[subject] == 1


async def test_embedded_server_starts_in_run_dir_and_stops_on_close(tmp_path: Path) -> None:
    bus = Bus(BusConfig(), run_dir=tmp_path)
    await asyncio.wait_for(bus.connect(), 10)
    server = bus.server
    assert server is not None and bus.url.startswith("nats://127.0.0.1:")
    pid = server.pid
    await bus.ensure_stream()
    assert (tmp_path / "nats" / "jetstream").is_dir()
    await asyncio.wait_for(bus.close(), 10)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_unreachable_url_fails_with_one_line_naming_the_url() -> None:
    url = "nats://127.0.0.1:1"
    with pytest.raises(BusError) as err:
        await asyncio.wait_for(Bus(BusConfig(url=url, connect_timeout_s=0.3)).connect(), 5)
    assert url in str(err.value) and "\n" not in str(err.value)


def test_server_that_cannot_start_fails_with_one_line(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    clash = EmbeddedServer(tmp_path / "other", port=nats_server.port, start_timeout_s=3)
    with pytest.raises(ServerError) as err:
        clash.start()
    assert str(nats_server.port) in str(err.value) and "\n" not in str(err.value)
    clash.close()


def test_a_port_taken_before_the_first_start_binds_it_is_traded_for_a_free_one(nats_server: EmbeddedServer,
                                                                             tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "raced", start_timeout_s=3)
    server.port = nats_server.port  # another process took the port it chose, before it bound it
    try:
        server.start()
        assert server.port != nats_server.port and server._healthy()
        bound = server.port
        server.stop()
        server.start()  # a restart keeps the port its clients know
        assert server.port == bound and server._healthy()
    finally:
        server.stop()


async def test_reconnects_after_server_killed_and_restarted(nats_server: EmbeddedServer) -> None:
    async with Bus(BusConfig(url=nats_server.url, name="reconnect")) as bus:
        got: list[Wave] = []

        async def on_wave(msg: Wave, raw) -> None:
            got.append(msg)

        await bus.subscribe(subjects.cell_wave("math"), Wave, on_wave)
        nats_server.kill()
        await wait_until(lambda: bus.disconnects >= 1, 5)
        nats_server.start()  # same port and store
        await wait_until(lambda: bus.reconnects >= 1, 10)
        await bus.publish(subjects.cell_wave("math"), WAVE)
        await wait_until(lambda: got == [WAVE], 3)


@pytest.mark.slow
async def test_frozen_server_is_noticed_within_seconds(nats_server: EmbeddedServer) -> None:
    config = BusConfig(url=nats_server.url, name="frozen", ping_interval_s=1.0, max_outstanding_pings=2)
    async with Bus(config) as bus:
        os.kill(nats_server.pid, signal.SIGSTOP)
        try:
            noticed = await wait_until(lambda: bus.disconnects >= 1, 8)
        finally:
            os.kill(nats_server.pid, signal.SIGCONT)
        assert noticed <= 5.0
        await wait_until(lambda: bus.connected.is_set(), 10)
        seen = asyncio.Event()

        async def on_probe(raw) -> None:
            seen.set()

        await bus.nc.subscribe("probe", cb=on_probe)
        await bus.nc.publish("probe", b"x")
        await asyncio.wait_for(seen.wait(), 3)


async def test_jetstream_deduplicates_by_msg_id(bus: Bus) -> None:
    info = await asyncio.wait_for(bus.ensure_stream(), 5)
    assert info.config.max_msgs > 0 and info.config.max_bytes > 0 and info.config.max_age > 0
    subject = subjects.cell_wave("math")
    first = await asyncio.wait_for(bus.js_publish(subject, WAVE, "wave-1"), 2)
    again = await asyncio.wait_for(bus.js_publish(subject, WAVE, "wave-1"), 2)
    other = await asyncio.wait_for(bus.js_publish(subjects.gate_open(), gate(), "gate-1"), 2)
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    assert other.seq == first.seq + 1
    info = await asyncio.wait_for(bus.ensure_stream(), 5)  # idempotent
    assert info.state.messages == 2


def gate() -> GateEvent:
    return GateEvent(npc=1, tick=1, region=Region.MATH, open=True, confidence=0.8)


async def test_a_flood_of_bad_messages_is_all_counted_but_logged_only_now_and_then(bus: Bus, caplog) -> None:
    subject = "dev.test.flood.bad"
    await bus.subscribe(subject, Wave, lambda msg, raw: None)
    with caplog.at_level(logging.WARNING, logger="nervous.bus"):
        for _ in range(1500):
            await bus.nc.publish(subject, b"\x00garbage")
        await bus.flush()
        for _ in range(200):
            if bus.bad_messages[subject] == 1500:
                break
            await asyncio.sleep(0.02)
    assert bus.bad_messages[subject] == 1500
    assert len([r for r in caplog.records if subject in r.getMessage()]) == 11  # the first ten, the 1000th
