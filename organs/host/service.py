"""The organ host as a bus service: ``python -m organs.host --organs vision [--url nats://...]``.

For each organ ``name`` and verb it answers requests on ``{env}.organs.{name}.{verb}`` (queue group
``organs``; e.g. a ``VisionRequest`` on ``dev.organs.vision.detect`` gets a ``VisionReply``), each in
its own task, so a request that waits for a load never holds up the next one. A malformed, mistyped or
oversized request, an unknown verb, a closed gate, a load failure (naming the weight file) or a passed
deadline gets a ``CellError`` reply naming the field; the service keeps running.

It publishes every lifecycle transition as an ``OrganEvent`` on ``{env}.organs.{name}.event``, each
served call's lifeforce as an ``OrganCharge`` on ``{env}.organs.{name}.charge``, and a ``Heartbeat``
on ``{env}.organs.host.heartbeat`` every ``heartbeat_s``; it takes ``OrganGate`` messages on
``{env}.organs.{name}.gate``. SIGTERM or SIGINT drains: no new requests are taken, those in flight get
``drain_s`` to finish, every organ is unloaded (its worker ends), the connection drains, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.messages import (
    CellError,
    Heartbeat,
    MessageError,
    OrganCharge,
    OrganEvent,
    OrganGate,
    decode,
    encode,
)
from nervous.signals import stop_on_signals
from organs.host.config import GATES, LOADERS, WHEN_FULL, OrganHostConfig
from organs.host.lifecycle import OrganError, OrganHost
from organs.host.registry import organ_specs

log = logging.getLogger(__name__)


class OrganService:
    """An organ host answering requests on the bus."""

    def __init__(self, config: OrganHostConfig, bus: Bus, host: OrganHost | None = None) -> None:
        self.config = config
        self.bus = bus
        self.host = host or OrganHost(config)
        self.host.on_event = self._on_event
        self.host.on_charge = self._on_charge
        self.requests = 0
        self.errors = 0
        self.beats = 0
        self.started = time.monotonic()
        self._requests: list[Subscription] = []
        self._others: list[Subscription] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._publishing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribe to every organ's verbs and gates, and send the first heartbeat."""
        for name, organ in self.host.organs.items():
            for verb in organ.spec.kind.verbs:
                subject = subjects.organ(name, verb)
                sub = await self.bus.nc.subscribe(subject, queue="organs", cb=self._on_request)
                self._requests.append(sub)
            self._others.append(await self.bus.subscribe(subjects.organ_gate(name), OrganGate, self._on_gate))
        await self.heartbeat()

    async def heartbeat(self) -> None:
        """Publish one heartbeat with the request and error counters."""
        beat = Heartbeat(domain="organs", service="host", seq=self.beats,
                         uptime_s=time.monotonic() - self.started, requests=self.requests, errors=self.errors)
        self.beats += 1
        await self.bus.publish(subjects.organ_host_heartbeat(), beat)

    def _on_gate(self, msg: OrganGate, raw: Msg) -> None:
        if msg.organ in self.host.organs:
            self.host.set_gate(msg.npc, msg.organ, msg.open)

    def _on_event(self, event: OrganEvent) -> None:
        self._publish(subjects.organ_event(event.organ), event)

    def _on_charge(self, charge: OrganCharge) -> None:
        self._publish(subjects.organ_charge(charge.organ), charge)

    def _publish(self, subject: str, msg: Any) -> None:
        task = asyncio.create_task(self._publish_now(subject, msg))  # tasks start in order: so do events
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish_now(self, subject: str, msg: Any) -> None:
        try:
            await self.bus.publish(subject, msg)
        except Exception as exc:  # a bus that is away must not take the host down
            log.warning("cannot publish on %s: %s", subject, exc)

    async def _on_request(self, raw: Msg) -> None:
        task = asyncio.create_task(self._serve(raw))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _serve(self, raw: Msg) -> None:
        self.requests += 1
        organ, verb = raw.subject.split(".")[-2:]
        try:
            kind = self.host.request_type(organ, verb)
            request = decode(raw.data, kind, raw.subject, self.config.max_request_bytes)
            reply = await self.host.call(organ, verb, request, raw.data)
        except MessageError as exc:
            await self._error(raw, str(exc), exc.field)
        except OrganError as exc:
            await self._error(raw, f"{raw.subject}: {exc}", exc.field)
        except Exception as exc:  # a bug must not kill the service
            log.exception("organ host failed on a request on %s", raw.subject)
            await self._error(raw, f"{raw.subject}: {type(exc).__name__}: {exc}", "")
        else:
            if raw.reply:
                await self.bus.nc.publish(raw.reply, encode(reply))

    async def _error(self, raw: Msg, text: str, field_name: str) -> None:
        self.errors += 1
        log.warning("%s", text)
        if raw.reply:
            with contextlib.suppress(Exception):
                await self.bus.nc.publish(raw.reply, encode(CellError(error=text[:1000], field=field_name)))

    async def drain(self) -> None:
        """Take no new requests, let those in flight finish (drain_s at most), unload every organ."""
        for sub in self._requests + self._others:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight), timeout=self.config.drain_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.host.close()
        if self._publishing:
            await asyncio.wait(set(self._publishing), timeout=self.config.drain_s)


async def serve(config: OrganHostConfig, stop: asyncio.Event | None = None, run_dir: str | None = None,
                host: OrganHost | None = None) -> int:
    """Run the organ host until stop is set (or SIGTERM/SIGINT); the exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        stop_on_signals(stack, stop)
        bus = await stack.enter_async_context(Bus(config.bus, run_dir=run_dir))
        service = OrganService(config, bus, host)
        await service.start()
        log.info("organ host serving %s on %s", ", ".join(service.host.organs), bus.url)
        next_beat = loop.time() + config.heartbeat_s
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), config.reap_s)
                await service.host.reap()
                if loop.time() >= next_beat and bus.connected.is_set():
                    next_beat = loop.time() + config.heartbeat_s
                    await service.heartbeat()
        finally:
            await service.drain()
    return 0


def _weights(entries: Sequence[str]) -> dict[str, str]:
    out = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--weights {entry!r}: expected NAME=PATH")
        out[name] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the organ host."""
    d = OrganHostConfig()
    parser = argparse.ArgumentParser(prog="python -m organs.host", description=__doc__.splitlines()[0])
    parser.add_argument("--organs", nargs="+", default=d.organs, help="organs to serve: NAME or NAME:KIND")
    parser.add_argument("--url", default=os.environ.get("NIMMERVERSE_BUS_URL"),
                        help="nats://host:port (default: NIMMERVERSE_BUS_URL, else an embedded server)")
    parser.add_argument("--run-dir", default=None, help="folder for the embedded server's JetStream store")
    parser.add_argument("--weights", nargs="*", default=[], help="NAME=PATH weight files")
    parser.add_argument("--slots", type=int, default=d.slots, help=f"organs loaded at once ({d.slots})")
    parser.add_argument("--when-full", choices=WHEN_FULL, default=d.when_full, help="slot policy")
    parser.add_argument("--unload-after-s", type=float, default=d.unload_after_s, help="unload after idle s")
    parser.add_argument("--gate", choices=GATES, default=d.gate, help="default organ gate of every NPC")
    parser.add_argument("--per-organ-call", type=float, default=d.lifeforce.per_organ_call,
                        help=f"lifeforce charged per served call ({d.lifeforce.per_organ_call:g})")
    parser.add_argument("--loader", choices=LOADERS, default=d.loader, help="worker process or in-process")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch threads per loaded organ")
    parser.add_argument("--heartbeat-s", type=float, default=d.heartbeat_s, help="seconds between heartbeats")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        subjects.env()
        config = OrganHostConfig(
            organs=list(args.organs), weights=_weights(args.weights), slots=args.slots,
            when_full=args.when_full, unload_after_s=args.unload_after_s, gate=args.gate, loader=args.loader,
            lifeforce=replace(d.lifeforce, per_organ_call=args.per_organ_call),
            threads=args.threads,
            heartbeat_s=args.heartbeat_s, bus=BusConfig(url=args.url, name="organ-host"),
        )  # fmt: skip
        organ_specs(config)  # the organs and weights are checked before the bus is touched
        return asyncio.run(serve(config, run_dir=args.run_dir))
    except (BusError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def child_main(config: dict[str, Any]) -> int:
    """Entry point in a process forked by the fork server: ``{"url", "organs", ...}`` to an exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s organ-host %(levelname)s %(message)s",
                        force=True)
    fields = {k: v for k, v in config.items() if k != "url"}
    return asyncio.run(serve(OrganHostConfig(**fields, bus=BusConfig(url=config["url"], name="organ-host"))))
