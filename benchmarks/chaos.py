"""Chaos benchmark: ``python -m benchmarks.chaos [--npcs 8]``, one JSON object.

One live organism (N NPC processes at 20 Hz on stage 3, the math cell as a supervised service, on
an external nats-server this script owns so that the broker itself can be killed) suffers its
faults one after another, each followed by a wait for full recovery:

- ``npc_kill9``: ``kill -9`` of one NPC;
- ``npc_hang``: one NPC frozen with SIGSTOP (noticed after ``heartbeat_timeout_s`` by design:
  ``detect_s``; ``recovery_s`` counts from the hang kill);
- ``forkserver_kill9``: ``kill -9`` of the fork server, which takes every NPC down with it;
- ``cell_kill9``: ``kill -9`` of the math cell service (recovered when its successor answers);
- ``broker_kill9``: ``kill -9`` of the nats-server, restarted 1 s later (counted from its return);
- ``broker_freeze``: the nats-server frozen with SIGSTOP for 4 s (counted from SIGCONT).

Per fault: ``recovery_s`` (until every NPC has acted again and every killed part is back and
heard), ``restarts`` (by the supervisor, during the fault), ``ticks_lost`` (missed NPC ticks in the
fault's window) and ``leftovers`` (processes of the killed incarnation still alive). Then the run is
stopped: ``stop_s``, ``leftovers`` (any process ever seen that is still alive, any cgroup folder)
and ``hangs`` (a recovery or the stop that did not finish within its bound). ``fuzz`` holds the
hostile-input counts per service from ``benchmarks.hostile`` (``--fuzz`` payloads each; ``ok``: the
service stayed up, answered every request with a reply or an error naming a field, and answered
a valid one correctly afterwards). Targets: recovery <= 2 s for every
part, 0 crashes, 0 leftovers, 0 hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.forkserver import process_alive as alive
from agents.organism import Organism, OrganismConfig
from benchmarks import hostile
from nervous.server import EmbeddedServer

RECOVERY_BOUND_S = 30.0
"""A recovery that takes longer than this counts as a hang."""


async def wait_for(check: Callable[[], bool], bound: float = RECOVERY_BOUND_S) -> bool:
    """check() held within bound seconds (polled every 10 ms)."""
    return await hostile.wait_for(check, bound)


class Chaos:
    """Runs faults against one organism and keeps what each cost."""

    def __init__(self, org: Organism, broker: EmbeddedServer) -> None:
        assert org.supervisor is not None and org.world is not None
        self.org, self.broker = org, broker
        self.sup, self.world = org.supervisor, org.world
        self.npcs = [c for c in self.sup.children.values() if c.spec.npc >= 0]
        self.results: dict[str, dict[str, Any]] = {}
        self.hangs = 0
        self.seen: set[int] = set()

    def _restarts(self) -> int:
        return sum(c.restarts for c in self.sup.children.values())

    def _note_pids(self) -> None:
        for child in self.sup.children.values():
            self.seen.update(child.pids)

    def _all_acted_since(self, acted: Any) -> Callable[[], bool]:
        return lambda: bool((self.world.acted > acted).all())

    async def fault(self, name: str, inflict: Callable[[], Any],
                    recovered: Callable[[float], Callable[[], bool]],
                    killed: Callable[[], list[int]]) -> None:
        """Inflict a fault; recovery counts from what inflict returns (a time), until recovered(t0)."""
        await wait_for(lambda: all(c.heard_since_start for c in self.sup.children.values()))
        await asyncio.sleep(1.0)
        self._note_pids()
        restarts, missed = self._restarts(), int(self.world.missed.sum())
        victims = killed()
        t0 = await inflict()
        ok = await wait_for(recovered(t0))
        took = time.monotonic() - t0
        if not ok:
            self.hangs += 1
        self._note_pids()
        await asyncio.sleep(0.2)  # the killed incarnation's processes are reaped by now
        self.results[name] = {
            "recovery_s": round(took, 3) if ok else None,
            "restarts": self._restarts() - restarts,
            "ticks_lost": int(self.world.missed.sum()) - missed,
            "leftovers": sum(alive(p) for p in victims),
        }

    def _back(self, names: list[str], old: dict[str, int]) -> bool:
        children = self.sup.children
        return all(children[n].pids[-1] != old[n] and children[n].heard_since_start for n in names)

    async def run(self) -> None:
        """Every fault in turn."""
        children = self.sup.children
        pid = lambda name: children[name].handle.pid if children[name].handle else 0  # noqa: E731

        # -- one NPC killed ------------------------------------------------------------------------
        old: dict[str, int] = {}

        async def kill(names: list[str], sig: int = signal.SIGKILL) -> float:
            old.clear()
            old.update({n: pid(n) for n in names})
            os.kill(old[names[0]], sig)
            return time.monotonic()

        def npc_back(t0: float) -> Callable[[], bool]:
            acted = self.world.acted.copy()
            return lambda: self._back(["npc-0"], old) and bool(self.world.acted[0] > acted[0])

        await self.fault("npc_kill9", lambda: kill(["npc-0"]), npc_back, lambda: [pid("npc-0")])

        # -- one NPC frozen: a hang --------------------------------------------------------------
        detect: dict[str, float] = {}

        async def freeze_npc() -> float:
            t_stop = await kill(["npc-1"], signal.SIGSTOP)
            await wait_for(lambda: children["npc-1"].pids[-1] != old["npc-1"])
            detect["s"] = time.monotonic() - t_stop
            return time.monotonic()

        def hang_back(t0: float) -> Callable[[], bool]:
            acted = self.world.acted.copy()
            return lambda: children["npc-1"].heard_since_start and bool(self.world.acted[1] > acted[1])

        await self.fault("npc_hang", freeze_npc, hang_back, lambda: [pid("npc-1")])
        self.results["npc_hang"]["detect_s"] = round(detect.get("s", float("nan")), 3)

        # -- the fork server killed: every NPC goes down with it ----------------------------------
        every = ["forkserver", *(c.spec.name for c in self.npcs), "cell-math"]  # all forked from it

        def all_back(t0: float) -> Callable[[], bool]:
            acted = self.world.acted.copy()
            return lambda: self._back(every, old) and bool((self.world.acted > acted).all())

        await self.fault("forkserver_kill9", lambda: kill(every), all_back, lambda: [pid(n) for n in every])

        # -- the math cell service killed --------------------------------------------------------
        def cell_back(t0: float) -> Callable[[], bool]:
            return lambda: self._back(["cell-math"], old)

        await self.fault("cell_kill9", lambda: kill(["cell-math"]), cell_back, lambda: [pid("cell-math")])

        # -- the broker killed, then back ----------------------------------------------------------
        def npcs_act(t0: float) -> Callable[[], bool]:
            return self._all_acted_since(self.world.acted.copy())

        async def broker_kill() -> float:
            self.broker.kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.broker.start)
            return time.monotonic()

        await self.fault("broker_kill9", broker_kill, npcs_act, lambda: [])

        async def broker_freeze() -> float:
            os.kill(self.broker.pid, signal.SIGSTOP)
            await asyncio.sleep(4.0)
            os.kill(self.broker.pid, signal.SIGCONT)
            return time.monotonic()

        await self.fault("broker_freeze", broker_freeze, npcs_act, lambda: [])


async def fuzz_services(n: int) -> dict[str, Any]:
    """n hostile payloads at every bus service (``benchmarks.hostile``), compacted per service."""
    result = await hostile.main(n)
    keys = ("sent", "error_replies", "unnamed_errors", "no_reply", "bad_expected", "bad_counted",
            "slow_consumer_disconnects", "ok")
    return {name: {k: r[k] for k in keys if k in r} for name, r in result["services"].items()}


async def fuzz_cortex(n: int) -> dict[str, Any]:
    """n hostile HTTP bodies at the embedded cortex server; statuses, 5xx, correct afterwards or not."""
    import aiohttp

    from benchmarks.cortex import request_body, stage4_numbers
    from nervous.hostile import hostile_json_bodies
    from organs.boundary import DeterministicEncoder
    from organs.cortex.embedded import EmbeddedCortex
    from organs.cortex.server import MAX_BODY_BYTES

    valid = request_body(DeterministicEncoder().encode(stage4_numbers()))

    statuses: dict[str, int] = {}
    slots = asyncio.Semaphore(8)
    with EmbeddedCortex() as cortex:
        url = cortex.base_url + "/chat/completions"

        async def send(session: aiohttp.ClientSession, body: bytes) -> None:
            async with slots, session.post(url, data=body) as resp:
                await resp.read()
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            bodies = hostile_json_bodies(json.loads(valid), n, seed=5, max_bytes=MAX_BODY_BYTES)
            await asyncio.gather(*(send(session, body) for _, body in bodies))
            async with session.post(url, data=valid) as resp:
                answer = await resp.json()
                valid_after = resp.status == 200 and len(answer["choices"][0]["message"]["tool_calls"]) == 1
        up = cortex.process is not None and cortex.process.poll() is None
    server_errors = sum(v for k, v in statuses.items() if k.startswith("5"))
    return {"sent": n, "statuses": statuses, "server_errors": server_errors, "up_after": up,
            "valid_after": valid_after, "ok": up and valid_after and server_errors == 0}


async def bench(npcs: int, fuzz_n: int) -> dict[str, Any]:
    """The whole chaos run; the JSON figures."""
    out: dict[str, Any] = {"cores": os.cpu_count(), "npcs": npcs}
    with tempfile.TemporaryDirectory(prefix="nimmerverse-chaos-") as tmp:
        broker = EmbeddedServer(Path(tmp) / "broker").start()
        try:
            config = OrganismConfig(npcs=npcs, duration_s=0, stage=3, run="bench-chaos", run_dir=tmp,
                                    bus_url=broker.url, cell_services=["math"])
            async with Organism(config) as org:
                chaos = Chaos(org, broker)
                running = asyncio.create_task(org.run(0))
                try:
                    await chaos.run()
                    groups = [d for n in org.supervisor.children for d in _dirs(org, n)]  # type: ignore[union-attr]
                finally:
                    chaos._note_pids()
                    org.stop.set()
                    t0 = time.monotonic()
                    bound = org.config.supervisor.stop_timeout_s + org.config.supervisor.kill_grace_s + 10
                    try:
                        summary = await asyncio.wait_for(running, bound)
                    except TimeoutError:
                        chaos.hangs += 1
                        summary = {}
                    out["stop_s"] = round(time.monotonic() - t0, 3)
            await asyncio.sleep(0.3)
            out["faults"] = chaos.results
            out["recovery_max_s"] = max((r["recovery_s"] or float("inf")) for r in chaos.results.values())
            out["leftovers"] = sum(alive(p) for p in chaos.seen) + sum(g.exists() for g in groups)
            out["hangs"] = chaos.hangs
            out["restarts_total"] = summary.get("restarts")
            out["failed"] = summary.get("failed")
            fuzz = await fuzz_services(fuzz_n)
            fuzz["cortex.http"] = await fuzz_cortex(fuzz_n)
            out["fuzz"] = fuzz
            out["fuzz_services_ok"] = f"{sum(f['ok'] for f in fuzz.values())}/{len(fuzz)}"
        finally:
            broker.close()
    return out


def _dirs(org: Organism, name: str) -> list[Path]:
    dirs = getattr(org.cgroups, "dirs", None)
    return list(dirs(name)) if dirs is not None else []


def main() -> None:
    """Run the chaos benchmark and print one JSON object."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.splitlines()[0])
    p.add_argument("--npcs", type=int, default=8, help="NPC processes")
    p.add_argument("--fuzz", type=int, default=10_000, help="hostile payloads per service")
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(bench(a.npcs, a.fuzz))))


if __name__ == "__main__":
    main()
