"""The bus side of the look seam (``organs.host.client.BusOrgans``) against a real nats-server and the
real organ host service: served looks come back typed and are paid by the host's charge, gates follow
the governor's ``OrganGate`` messages, and a silent or missing host is an ``OrganError`` in bounded time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import Heartbeat, OrganCharge, OrganGate, VisionReply, VisionRequest
from nervous.server import EmbeddedServer
from organs.host.client import BusOrgans
from organs.host.config import OrganHostConfig
from organs.host.lifecycle import OrganError
from organs.host.service import serve
from organs.vision.frames import render, window_pixels
from tests.live import until
from world.core import GridWorld
from world.stages import stage_config

VISION = "vision"


def request(npc: int = 0, deadline_s: float = 60.0) -> VisionRequest:
    frame = GridWorld(stage_config(4), seed=3).frame(0)
    x, y = int(frame["npc_x"][npc]), int(frame["npc_y"][npc])
    return VisionRequest(npc=npc, deadline_s=deadline_s, pixels=window_pixels(render(frame), x, y).tobytes())


async def start_host(bus: Bus, gate: str, loader: str = "inproc") -> tuple[asyncio.Event, asyncio.Task[int]]:
    """The organ host service in this loop (organs loaded in-process, or as live in a worker process),
    with its first heartbeat heard."""
    beats: list[Heartbeat] = []
    await bus.subscribe(subjects.organ_host_heartbeat(), Heartbeat, lambda m, r: beats.append(m))
    stop = asyncio.Event()
    config = OrganHostConfig(gate=gate, loader=loader, heartbeat_s=0.2,
                             bus=BusConfig(url=bus.url, name="organ-host"))
    task = asyncio.create_task(serve(config, stop))
    await until(lambda: beats, 20, "the organ host's first heartbeat")
    return stop, task


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[BusOrgans]:
    organs = BusOrgans([VISION], gate="governed", deadline_s=60.0)
    await asyncio.to_thread(organs.connect, BusConfig(url=nats_server.url, name="cortex"))
    yield organs
    organs.close()
    organs.close()  # twice is fine


async def test_a_bus_look_is_served_only_through_an_open_gate_and_paid_by_the_hosts_charge(
        nats_server: EmbeddedServer, bus: Bus, client: BusOrgans) -> None:
    charges: list[OrganCharge] = []
    await bus.subscribe(subjects.organ_charge(VISION), OrganCharge, lambda m, r: charges.append(m))
    stop, task = await start_host(bus, gate="governed")
    try:
        assert not client.gate_open(2, VISION) and client.caller_charges is False
        with pytest.raises(OrganError, match="gate"):  # the host refuses a closed gate: nothing charged
            await asyncio.to_thread(client.call, VISION, "detect", request(2))
        await bus.publish(subjects.organ_gate(VISION), OrganGate(npc=2, organ=VISION, open=True))
        await until(lambda: client.gate_open(2, VISION), 5, "the client hearing the governor's gate")
        reply = await asyncio.to_thread(client.call, VISION, "detect", request(2))
        assert isinstance(reply, VisionReply) and reply.npc == 2 and reply.cost > 0
        codes = np.frombuffer(reply.codes, np.uint8).reshape(reply.side, reply.side)
        assert codes[7, 7] == 9  # it sees the asking NPC at the window's centre
        await until(lambda: charges, 5, "the host's charge")
        assert [(c.npc, c.cost) for c in charges] == [(2, reply.cost)]  # one call, one charge
        await until(lambda: client.states().get(VISION) == "READY", 5, "the organ's READY event")
        assert not client.gate_open(3, VISION)  # another NPC's gate is its own
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


async def test_no_host_or_a_silent_one_is_an_organ_error_within_the_deadline(
        nats_server: EmbeddedServer, bus: Bus) -> None:
    organs = BusOrgans([VISION], gate="open", deadline_s=0.3)
    with pytest.raises(OrganError, match="not connected"):
        organs.call(VISION, "detect", request())
    await asyncio.to_thread(organs.connect, BusConfig(url=nats_server.url, name="cortex"))
    try:
        assert organs.gate_open(0, VISION)  # gate=open: every NPC until told otherwise
        with pytest.raises(OrganError) as refused:  # nobody serves the subject: no responders
            await asyncio.to_thread(organs.call, VISION, "detect", request())
        assert refused.value.field == "bus"
        async def never_answer(msg: object) -> None:
            pass

        await bus.nc.subscribe(subjects.organ(VISION, "detect"), cb=never_answer)  # hears, never answers
        await bus.nc.flush()
        started = time.monotonic()
        with pytest.raises(OrganError, match="no reply within 0.35 s") as late:
            await asyncio.to_thread(organs.call, VISION, "detect", request(deadline_s=10.0))
        assert late.value.field == "deadline_s" and organs.timeouts == 1
        assert time.monotonic() - started < 2.0  # the caller's deadline, not the request's 10 s
        with pytest.raises(OrganError, match="not asked through this client"):
            organs.call("speech", "hear", request())
    finally:
        organs.close()


def test_a_bad_gate_deadline_or_organ_kind_is_one_line_naming_it() -> None:
    with pytest.raises(ValueError, match="organ gate 'shut': must be one of open, governed"):
        BusOrgans([VISION], gate="shut")
    with pytest.raises(ValueError, match="organ deadline_s=0: must be > 0"):
        BusOrgans([VISION], deadline_s=0)
    with pytest.raises(ValueError, match="unknown organ kind 'smell'"):
        BusOrgans(["nose:smell"])


async def test_a_look_that_finds_the_organ_cold_is_late_but_the_load_goes_on_and_later_looks_are_served(
        nats_server: EmbeddedServer, bus: Bus) -> None:
    stop, task = await start_host(bus, gate="open", loader="process")  # a worker process, as live
    organs = BusOrgans([VISION], gate="open", deadline_s=0.25)  # the live default: shorter than a load
    await asyncio.to_thread(organs.connect, BusConfig(url=nats_server.url, name="cortex"))
    try:
        with pytest.raises(OrganError, match="(within|after) the request.s 0.25 s") as late:
            await asyncio.to_thread(organs.call, VISION, "detect", request())
        assert late.value.field == "deadline_s"
        await until(lambda: organs.states().get(VISION) == "READY", 60, "the load the first look started")
        reply = await asyncio.to_thread(organs.call, VISION, "detect", request())
        assert reply.npc == 0 and reply.cost > 0
    finally:
        organs.close()
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
