"""Stopping a bus service: while it runs, SIGTERM and SIGINT set its stop event."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_on_signals(stack: contextlib.AsyncExitStack, stop: asyncio.Event) -> None:
    """Let SIGTERM and SIGINT set stop until stack closes (the handlers are removed then)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
        stack.callback(loop.remove_signal_handler, sig)
