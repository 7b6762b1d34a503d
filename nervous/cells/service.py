"""One cell as a standalone bus service.

``python -m nervous.cells.<name> [--url nats://...] [--run-dir DIR]`` (or ``python -m nervous.cells
<name>``; the name may also come from ``NIMMERVERSE_CELL``, the url from ``NIMMERVERSE_BUS_URL``)
answers ``CellRequest`` messages on ``{env}.nervous.cells.<name>.request`` (queue group ``cells``, so
replicas share the load) with a ``WaveBatch`` of the fired waves, publishes the same batch on
``.wave`` (and on ``.response`` when a request carried no reply inbox) and a ``Heartbeat`` on
``.heartbeat`` every ``heartbeat_s``. A malformed, mistyped or oversized request gets a ``CellError``
reply naming the field and is counted in ``errors``; the service keeps running. SIGTERM or SIGINT
drains the connection and exits 0.

Cell state (e.g. the battery's hysteresis) follows the request's row order; it is reset when the
number of NPCs changes, so a caller should send the same NPCs in the same order every tick.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from nats.aio.msg import Msg

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.cells.bank import CELLS, make_cell
from nervous.cells.base import CellConfig, WaveArrays
from nervous.messages import CellError, CellRequest, Heartbeat, MessageError, decode, encode
from nervous.signals import stop_on_signals
from world.tiles import NUM_CODES, PROPRIO_SIZE

log = logging.getLogger(__name__)


@dataclass
class CellServiceConfig:
    """How one cell runs as a service."""

    cell: str = "math"
    """Name of the cell to serve."""
    bus: BusConfig = field(default_factory=BusConfig)
    """Where the bus is."""
    cells: CellConfig = field(default_factory=CellConfig)
    """Thresholds of the cell."""
    heartbeat_s: float = 1.0
    """Seconds between heartbeats."""
    max_request_bytes: int = 512 << 10
    """Largest request payload accepted; larger ones get an error reply."""
    queue: str = "cells"
    """Queue group shared by replicas of the same cell."""


class CellService:
    """A cell answering requests and emitting waves on the bus."""

    def __init__(self, config: CellServiceConfig, bus: Bus) -> None:
        self.config = config
        self.bus = bus
        self.cell = make_cell(config.cell, config.cells)
        self.requests = 0
        self.errors = 0
        self.started = time.monotonic()
        self.wave_subject = subjects.cell_wave(config.cell)
        self.response_subject = subjects.cell_response(config.cell)
        self.request_subject = subjects.cell_request(config.cell)
        self.heartbeat_subject = subjects.cell_heartbeat(config.cell)

    async def start(self) -> None:
        """Subscribe to the request subject and send the first heartbeat."""
        await self.bus.nc.subscribe(self.request_subject, queue=self.config.queue, cb=self._on_request)
        await self.heartbeat()

    async def heartbeat(self) -> None:
        """Publish one heartbeat with the request and error counters."""
        beat = Heartbeat(
            domain="nervous",
            service=self.config.cell,
            seq=self.requests,
            uptime_s=time.monotonic() - self.started,
            requests=self.requests,
            errors=self.errors,
        )
        await self.bus.publish(self.heartbeat_subject, beat)

    async def _reply(self, raw: Msg, payload: bytes) -> None:
        if raw.reply:
            await self.bus.nc.publish(raw.reply, payload)
        else:
            await self.bus.nc.publish(self.response_subject, payload)

    async def _on_request(self, raw: Msg) -> None:
        self.requests += 1
        try:
            req = decode(raw.data, CellRequest, raw.subject, self.config.max_request_bytes)
            batch = self.handle(req)
        except MessageError as exc:
            await self._error(raw, str(exc), exc.field)
            return
        except ValueError as exc:  # senses of the wrong shape
            await self._error(raw, f"bad CellRequest on {raw.subject}: {exc}", "proprio")
            return
        except Exception as exc:  # a bug must not kill the service
            log.exception("cell %s failed on a request", self.config.cell)
            await self._error(raw, f"cell {self.config.cell} failed: {type(exc).__name__}: {exc}", "")
            return
        payload = encode(batch)
        await self._reply(raw, payload)  # the requester waits on the reply: it goes out first
        if batch.npc:  # broadcast only waves that fired
            await self.bus.nc.publish(self.wave_subject, payload)

    async def _error(self, raw: Msg, text: str, field_name: str) -> None:
        self.errors += 1
        log.warning("%s", text)
        await self._reply(raw, encode(CellError(error=text[:1000], field=field_name)))

    def handle(self, req: CellRequest):  # noqa: ANN201 - WaveBatch, kept import-light
        """The WaveBatch of fired waves answering one request."""
        npc = np.frombuffer(req.npc, dtype="<i4")
        m = len(npc)
        views = np.frombuffer(req.views, dtype=np.uint8).reshape(m, req.side, req.side)
        proprio = (
            np.frombuffer(req.proprio, dtype="<f4").reshape(m, -1) if m else np.zeros((0, 0), np.float32)
        )
        if m and views.max() >= NUM_CODES:  # cells index tables by tile code
            raise MessageError(
                self.request_subject,
                "CellRequest",
                "views",
                f"tile code {views.max()} is not a world.tiles.Tile (< {NUM_CODES})",
            )
        if m and proprio.shape[1] < PROPRIO_SIZE:
            raise MessageError(
                self.request_subject,
                "CellRequest",
                "proprio",
                f"{proprio.shape[1]} floats per NPC, expected at least {PROPRIO_SIZE}",
            )
        conf, value = self.cell.step(views, proprio, req.tick)
        waves = WaveArrays(
            tick=req.tick,
            cells=(self.cell.name,),
            regions=(self.cell.region,),
            value_scale=np.array([self.cell.value_scale], dtype=np.float32),
            confidence=conf[:, None],
            value=value[:, None],
            fired=(conf >= self.config.cells.fire_threshold)[:, None],
        )
        return waves.to_batch(npc)


async def serve(
    config: CellServiceConfig, stop: asyncio.Event | None = None, run_dir: str | None = None
) -> int:
    """Run one cell service until stop is set (or SIGTERM/SIGINT); the exit status."""
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stop_on_signals(stack, stop)
        bus = await stack.enter_async_context(Bus(config.bus, run_dir=run_dir))
        service = CellService(config, bus)
        await service.start()
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's generations: shorter pauses, a lower p99
        log.info("cell %s serving %s on %s", config.cell, service.request_subject, bus.url)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), config.heartbeat_s)
            if not stop.is_set() and bus.connected.is_set():
                await service.heartbeat()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run one cell service."""
    parser = argparse.ArgumentParser(prog="python -m nervous.cells", description=__doc__.splitlines()[0])
    parser.add_argument(
        "cell", nargs="?", default=os.environ.get("NIMMERVERSE_CELL"), help=f"one of {', '.join(CELLS)}"
    )
    parser.add_argument(
        "--url", default=os.environ.get("NIMMERVERSE_BUS_URL"), help="nats://host:port (default: embedded)"
    )
    parser.add_argument("--run-dir", default=None, help="folder for the embedded server's JetStream store")
    parser.add_argument("--heartbeat-s", type=float, default=1.0, help="seconds between heartbeats")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.cell or args.cell not in CELLS:
        parser.error(f"cell {args.cell!r} is not one of {', '.join(CELLS)} (argument or NIMMERVERSE_CELL)")
    try:
        subjects.env()
        config = CellServiceConfig(cell=args.cell, bus=BusConfig(url=args.url, name=f"cell-{args.cell}"))
        config.heartbeat_s = args.heartbeat_s
        return asyncio.run(serve(config, run_dir=args.run_dir))
    except (BusError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def child_main(config: dict[str, str]) -> int:
    """Entry point in a process forked by a supervisor's fork server: ``{"cell", "url"}`` to an exit code."""
    cell = config["cell"]
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s cell-{cell} %(levelname)s %(message)s",
                        force=True)
    bus = BusConfig(url=config["url"], name=f"cell-{cell}")
    return asyncio.run(serve(CellServiceConfig(cell=cell, bus=bus)))
