"""The cost of bus permissions: ``python -m benchmarks.bus_auth`` prints one JSON object.

Two embedded nats-servers in the same run: one with the generated identities (``bus.auth=roles``:
accounts, users, allow/deny lists) and one bare (``bus.auth=none``). On each, an NPC's identity
publishes its own ``npc.{id}.action`` and the world's identity receives them on ``npc.*.action``
(on the bare one, the same clients without logins); the rate is counted at the receiver, so every
message went through the server's permission check. Message sizes: an action (64 B), an
observation (1 KiB) and a frame slice (16 KiB). Rounds alternate between the two servers (and which
goes first) so both see the same machine load; the rates are the best round, the overhead the median
over rounds of each back-to-back pair's difference. round_spread_pct (the mean over sizes and modes
of (best - worst) / best round) says how much the machine's load moved the figures: an overhead
inside it is noise.

Keys: cores; auth_overhead_pct (mean over the sizes of the median (none - roles) / none * 100;
negative: within noise); per size ``msgs_per_s_roles``, ``msgs_per_s_none`` and ``overhead_pct``;
connect_ms_roles and connect_ms_none (one login). ``measure_auth_overhead()`` returns the same
dict (benchmarks.cluster imports it).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from nervous import subjects
from nervous.auth import Credentials, server_config
from nervous.server import EmbeddedServer

SIZES = {"action_64B": (64, 20_000), "obs_1KiB": (1024, 10_000), "frame_16KiB": (16 << 10, 2_000)}
"""Name -> (payload bytes, messages per round)."""
ROUNDS = 7
BATCH = 500
"""Publishes between two looks at how far the receiver got."""
WINDOW = 5000
"""Messages at most in flight (publisher ahead of the receiver), so neither side drops any."""


async def _connect(url: str, login: tuple[str, str] | None) -> nats.NATS:
    user, password = login if login is not None else (None, None)
    return await nats.connect(url, user=user, password=password, pending_size=64 << 20)


async def publish_rate(url: str, sender: tuple[str, str] | None, receiver: tuple[str, str] | None,
                       size: int, n: int) -> float:
    """Messages/s from one NPC's action publishes to the world's subscription, counted on arrival."""
    pub, sub = await _connect(url, sender), await _connect(url, receiver)
    count, waiting = 0, {"target": 0, "event": asyncio.Event()}

    async def on_msg(msg: Any) -> None:
        nonlocal count
        count += 1
        if count >= waiting["target"]:
            waiting["event"].set()

    async def received(target: int) -> None:
        waiting["target"], waiting["event"] = target, asyncio.Event()
        if count < target:
            await asyncio.wait_for(waiting["event"].wait(), 60)

    await sub.subscribe(subjects.npc_pattern("action"), cb=on_msg)
    await sub.flush()
    payload, subject = bytes(size), subjects.npc_action(0)
    start = time.perf_counter()
    for i in range(n):
        await pub.publish(subject, payload)
        if i % BATCH == BATCH - 1:  # a window of WINDOW messages in flight: nothing is dropped as slow
            await received(i + 1 - WINDOW)
    await received(n)
    rate = n / (time.perf_counter() - start)
    await pub.close()
    await sub.close()
    return rate


async def connect_ms(url: str, login: tuple[str, str] | None, n: int = 20) -> float:
    """Median milliseconds of one connect (with its login) and close."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        nc = await _connect(url, login)
        times.append((time.perf_counter() - t) * 1e3)
        await nc.close()
    return statistics.median(times)


async def _measure(folder: Path, rounds: int, sizes: dict[str, tuple[int, int]]) -> dict[str, Any]:
    credentials = Credentials.generate(1, envs=(subjects.env(),))
    npc, world = credentials.login("npc-0"), credentials.login("world")
    with (EmbeddedServer(folder / "roles", accounts=server_config(credentials, 1)) as roles,
          EmbeddedServer(folder / "none") as bare):
        runs: dict[str, dict[str, list[float]]] = {name: {"roles": [], "none": []} for name in sizes}
        for k in range(rounds):
            for name, (size, n) in sizes.items():
                order = [("roles", roles.url, npc, world), ("none", bare.url, None, None)]
                for mode, url, sender, receiver in order if k % 2 == 0 else order[::-1]:
                    runs[name][mode].append(await publish_rate(url, sender, receiver, size, n))
        login_roles, login_none = await connect_ms(roles.url, npc), await connect_ms(bare.url, None)
    out: dict[str, Any] = {"cores": os.cpu_count() or 1}
    overheads, spreads = [], []
    for name, rates in runs.items():
        with_auth, without = max(rates["roles"]), max(rates["none"])
        # each round's pair ran back to back: the median of the paired differences drifts least with load
        pairs = zip(rates["roles"], rates["none"], strict=True)
        pct = statistics.median((n - r) / n * 100.0 for r, n in pairs)
        overheads.append(pct)
        spreads += [(max(r) - min(r)) / max(r) * 100.0 for r in rates.values()]
        out[name] = {"msgs_per_s_roles": round(with_auth), "msgs_per_s_none": round(without),
                     "overhead_pct": round(pct, 2)}
    out["auth_overhead_pct"] = round(statistics.fmean(overheads), 2)
    out["round_spread_pct"] = round(statistics.fmean(spreads), 1)
    out["connect_ms_roles"] = round(login_roles, 2)
    out["connect_ms_none"] = round(login_none, 2)
    return out


def measure_auth_overhead(rounds: int = ROUNDS,
                          sizes: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Publish rates with bus.auth=roles vs none (same sizes, same run, alternating rounds)."""
    with tempfile.TemporaryDirectory(prefix="nimmerverse-bench-auth-") as folder:
        return asyncio.run(_measure(Path(folder), rounds, sizes or SIZES))


if __name__ == "__main__":
    print(json.dumps(measure_auth_overhead()))
