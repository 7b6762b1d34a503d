"""MultiprocessWorld: one batch of B envs split across worker processes, stepped in parallel.

Each worker owns a `GridWorld` over a contiguous slice of the envs and writes its outputs (views,
proprio, masks, rewards, flags) straight into shared memory, so the parent reads the whole batch
as plain numpy arrays with no copies (PufferLib's pattern). The parent writes actions into shared
memory, wakes every worker through a pipe and waits for all of them: one tick costs two small
pipe messages per worker on top of the slowest worker's step.

Randomness: worker k seeds its GridWorld from `SeedSequence(seed).spawn(workers)[k]`, so the same
seed and worker count give the same episodes. Workers are forked (Linux), daemonic, and stopped by
`close()` (or at exit).

    with MultiprocessWorld(stage_config(0), num_envs=8192, seed=0, workers=2) as world:
        world.step(actions)      # int64 [B, N]
        world.views, world.rewards, world.env_done, world.pop_stats()
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import numpy as np

from world.config import WorldConfig
from world.core import GridWorld, checked_actions, checked_cost
from world.tiles import NUM_ACTIONS, PROPRIO_SIZE


class WorkerError(RuntimeError):
    """A worker process failed; the message names the worker and its error."""


def _shapes(config: WorldConfig, B: int) -> dict[str, tuple[tuple[int, ...], type]]:
    N, V = config.n_npcs, config.view_size
    return {
        "views": ((B, N, V, V), np.uint8), "proprio": ((B, N, PROPRIO_SIZE), np.float32),
        "action_mask": ((B, N, NUM_ACTIONS), np.bool_), "rewards": ((B, N), np.float32),
        "terminals": ((B, N), np.bool_), "truncations": ((B, N), np.bool_), "died": ((B, N), np.bool_),
        "env_done": ((B,), np.bool_), "alive": ((B, N), np.bool_), "lifeforce": ((B, N), np.float32),
        "last_success": ((B,), np.float64), "actions": ((B, N), np.int64), "charges": ((B, N), np.float32),
    }


def _serve(conn: Connection, config: WorldConfig, lo: int, hi: int, seed: int, autoreset: bool,
           shared: dict[str, np.ndarray]) -> None:
    """A worker: step envs lo..hi on command until told to stop."""
    try:
        outputs = {name: shared[name][lo:hi] for name in GridWorld.BUFFERS}
        world = GridWorld(config, num_envs=hi - lo, seed=seed, autoreset=autoreset, buffers=outputs)
        actions, charges = shared["actions"][lo:hi], shared["charges"][lo:hi]
        conn.send(("ok", None))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(error).__name__}: {error}"))
        return
    while True:
        try:
            command, argument = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        try:
            if command == "step":
                if argument:  # lifeforce costs were charged since the last tick
                    world.charge(charges)
                    charges.fill(0)
                world.step(actions)
                reply: Any = None
            elif command == "stats":
                reply = world.pop_stats()
            elif command == "frame":
                reply = world.frame(argument)
            elif command == "reset":
                world.reset(argument)
                reply = None
            elif command == "close":
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown command {command!r}")
            conn.send(("ok", reply))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", f"{type(error).__name__}: {error}"))


class MultiprocessWorld:
    """`GridWorld`'s batch interface over worker processes (outputs in shared memory)."""

    def __init__(self, config: WorldConfig, num_envs: int, seed: int | None = None, workers: int = 2,
                 autoreset: bool = True) -> None:
        config.validate()
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers={workers!r}: must be an integer >= 1")
        if not isinstance(num_envs, int) or num_envs < workers:
            raise ValueError(f"num_envs={num_envs!r}: must be an integer >= workers ({workers})")
        self.config, self.num_envs, self.num_npcs = config, num_envs, config.n_npcs
        self.r, self.V = config.view_radius, config.view_size
        self.ticks = 0
        shapes = _shapes(config, num_envs)
        sizes = {name: int(np.prod(shape)) * np.dtype(dtype).itemsize
                 for name, (shape, dtype) in shapes.items()}
        # one anonymous shared mapping (inherited by forked workers), each array 64-byte aligned
        self._memory = mmap.mmap(-1, sum(-(-size // 64) * 64 for size in sizes.values()))
        self._shared: dict[str, np.ndarray] = {}
        offset = 0
        for name, (shape, dtype) in shapes.items():
            self._shared[name] = np.frombuffer(self._memory, dtype=dtype, count=int(np.prod(shape)),
                                               offset=offset).reshape(shape)
            offset += -(-sizes[name] // 64) * 64
        for name in GridWorld.BUFFERS:
            setattr(self, name, self._shared[name])
        self._charged = False
        bounds = np.linspace(0, num_envs, workers + 1).astype(int).tolist()
        self._bounds = list(zip(bounds[:-1], bounds[1:], strict=True))
        seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(workers)]
        context = mp.get_context("fork")
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for k, (lo, hi) in enumerate(self._bounds):
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, name=f"world-worker-{k}", daemon=True,
                                   args=(child, config, lo, hi, seeds[k], autoreset, self._shared))
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._gather()

    # --------------------------------------------------------------------------------------
    def step(self, actions: np.ndarray) -> None:
        """Advance every env by one tick, in parallel; outputs land in the shared arrays."""
        self._shared["actions"][:] = checked_actions(actions, (self.num_envs, self.num_npcs))
        self._broadcast("step", self._charged)
        self._charged = False
        self.ticks += 1

    def charge(self, cost: np.ndarray) -> None:
        """Add a lifeforce cost per NPC (float32[B, N], >= 0) to be paid at the next tick."""
        self._shared["charges"] += checked_cost(cost, (self.num_envs, self.num_npcs))
        self._charged = True

    def reset(self, seed: int | None = None) -> None:
        """Reset every env (reseeding each worker from `seed` when given)."""
        seeds = [None] * len(self._conns) if seed is None else [
            int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(self._conns))]
        self._broadcast("reset", per_worker=seeds)
        self.ticks = 0

    def pop_stats(self) -> dict[str, float]:
        """Means over the episodes finished since the last call, across all workers."""
        parts = self._broadcast("stats")
        episodes = sum(part["episodes"] for part in parts)
        if episodes == 0:
            return {"episodes": 0.0}
        keys = dict.fromkeys(key for part in parts for key in part if key != "episodes")
        out = {key: sum(part.get(key, 0.0) * part["episodes"] for part in parts) / episodes for key in keys}
        out["episodes"] = episodes
        return out

    def frame(self, env: int = 0) -> dict[str, np.ndarray]:
        """A snapshot of one env for drawing (see `GridWorld.frame`)."""
        if not 0 <= env < self.num_envs:
            raise ValueError(f"env={env!r}: out of range 0..{self.num_envs - 1}")
        k = next(i for i, (lo, hi) in enumerate(self._bounds) if lo <= env < hi)
        try:
            self._conns[k].send(("frame", env - self._bounds[k][0]))
        except OSError:
            raise WorkerError(self._exited(k)) from None
        return self._receive(k)

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for conn, proc in zip(self._conns, self._procs, strict=True):
            if proc.is_alive():
                try:
                    conn.send(("close", None))
                    conn.recv()
                except (OSError, EOFError):
                    pass
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> MultiprocessWorld:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_procs", None):
            self.close()

    # --------------------------------------------------------------------------------------
    def _broadcast(self, command: str, argument: Any = None,
                   per_worker: list[Any] | None = None) -> list[Any]:
        """Send a command to every worker (one argument each with per_worker) and gather the replies."""
        sent, errors = [], []
        for k, conn in enumerate(self._conns):
            try:
                conn.send((command, argument if per_worker is None else per_worker[k]))
                sent.append(k)
            except OSError:
                errors.append(self._exited(k))
        return self._gather(sent, errors)

    def _gather(self, workers: list[int] | None = None, errors: list[str] | None = None) -> list[Any]:
        replies, errors = [], list(errors or [])
        for k in range(len(self._conns)) if workers is None else workers:
            try:
                replies.append(self._receive(k))
            except WorkerError as error:
                errors.append(str(error))
        if errors:
            raise WorkerError(errors[0])
        return replies

    def _exited(self, k: int) -> str:
        self._procs[k].join(timeout=0.1)
        return f"world worker {k} exited (exit code {self._procs[k].exitcode})"

    def _receive(self, k: int) -> Any:
        try:
            status, reply = self._conns[k].recv()
        except (EOFError, OSError):
            raise WorkerError(self._exited(k)) from None
        if status != "ok":
            raise WorkerError(f"world worker {k}: {reply}")
        return reply
