"""The organ worker: one loaded organ in its own process, spoken to over its stdin and stdout.

``python -m organs.host.worker --entry module:function --weights FILE [--threads 1]`` loads the organ
(``function(weights, threads)``), answers ``["ready", load_s]`` or ``["error", text]``, then serves
``[verb, request bytes]`` frames with ``["ok", reply bytes]`` or ``["error", text]`` until its stdin
closes. Frames are a 4-byte big-endian length and a MessagePack array. Its own stdout is moved to
stderr first, so nothing the organ prints can corrupt the frames; it dies with its parent (prctl).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

import msgspec

_HEADER = struct.Struct(">I")
#: Largest frame accepted (a request is at most a bus payload).
MAX_FRAME = 16 << 20


def pack(frame: list[Any]) -> bytes:
    """One frame's bytes: length header and MessagePack payload."""
    payload = msgspec.msgpack.encode(frame)
    return _HEADER.pack(len(payload)) + payload


def _unpack(payload: bytes) -> list[Any]:
    frame = msgspec.msgpack.decode(payload)
    if not isinstance(frame, list) or len(frame) != 2:
        raise ValueError("an organ worker frame is a 2-element array")
    return frame


def read_frame(stream: BinaryIO) -> list[Any] | None:
    """The next frame from a blocking stream, or None at its end."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"organ worker frame of {size} bytes > limit {MAX_FRAME}")
    payload = stream.read(size)
    return None if len(payload) < size else _unpack(payload)


async def read_frame_async(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next frame from an asyncio stream, or None at its end."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        if size > MAX_FRAME:
            raise ValueError(f"organ worker frame of {size} bytes > limit {MAX_FRAME}")
        return _unpack(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def main(argv: Sequence[str] | None = None) -> int:
    """Load one organ and serve frames on stdin/stdout until stdin closes; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m organs.host.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--entry", required=True, help="module:function(weights, threads) loading the organ")
    parser.add_argument("--weights", required=True, help="weight file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # a stray print goes to the log, not into the frames
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host ends it (stdin closes), not a Ctrl-C
    from agents.forkserver import die_with_parent

    die_with_parent()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    started = time.perf_counter()
    try:
        module, _, function = args.entry.partition(":")
        organ = getattr(importlib.import_module(module), function)(args.weights, args.threads)
    except Exception as exc:  # the host turns this into an error reply naming the file
        out.write(pack(["error", _one_line(exc)]))
        return 1
    out.write(pack(["ready", time.perf_counter() - started]))
    stdin = sys.stdin.buffer
    while True:
        frame = read_frame(stdin)
        if frame is None:
            return 0
        verb, data = frame
        try:
            out.write(pack(["ok", organ.handle(verb, data)]))
        except Exception as exc:  # one bad call must not end the organ
            out.write(pack(["error", f"{type(exc).__name__}: {_one_line(exc)}"]))


if __name__ == "__main__":
    raise SystemExit(main())
