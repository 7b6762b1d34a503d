"""The live organism with ``organs=[vision]``: a supervised organ host on the organism's bus."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from agents.forkserver import process_alive as alive
from agents.organism import Organism, OrganismConfig
from agents.supervisor import State
from nervous import subjects
from nervous.messages import VisionReply, VisionRequest
from organs.host.memory import descendants
from organs.vision.frames import render, window_pixels
from tests.live import organism_config, until

pytestmark = pytest.mark.slow


async def test_the_organ_host_is_supervised_serves_vision_and_comes_back_after_kill9(tmp_path: Path) -> None:
    config = organism_config(tmp_path, 1)
    config.organs = ["vision"]
    async with Organism(config) as org:
        sup, world = org.supervisor, org.world
        assert sup is not None and world is not None
        bus = await org.connect_as("cortex")  # the test asks as the cortex would
        host = sup.children["organ-host"]
        running = asyncio.create_task(org.run(0))
        try:
            up = lambda: host.heard_since_start and host.state == State.RUNNING  # noqa: E731
            await until(up, 60, "the organ host up")
            frame = world.world.frame(0)
            x, y = int(frame["npc_x"][0]), int(frame["npc_y"][0])
            pixels = window_pixels(render(frame), x, y).tobytes()
            ask = VisionRequest(npc=0, deadline_s=60, pixels=pixels)
            reply = await bus.request(subjects.organ("vision", "detect"), ask, VisionReply, timeout=60)
            codes = np.frombuffer(reply.codes, np.uint8).reshape(15, 15)
            assert codes[7, 7] == 9 and reply.cost > 0  # it sees the asking NPC at the centre
            # the host's charge reaches the world server, which takes it from npc 0's lifeforce
            await until(lambda: world.organ_charges["applied"] == 1, 10, "the organ charge applied")
            pid = host.handle.pid  # type: ignore[union-attr]
            workers = descendants(pid)
            assert len(workers) == 1  # the loaded vision organ's worker
            os.kill(pid, signal.SIGKILL)
            await until(lambda: host.pids[-1] != pid and host.heard_since_start, 60, "the organ host back")
            await until(lambda: not alive(workers[0]), 10, "the old worker gone with its host")
            reply = await bus.request(subjects.organ("vision", "detect"), ask, VisionReply, timeout=60)
            assert reply.npc == 0
        finally:
            org.stop.set()
            summary = await asyncio.wait_for(running, 30)
    part = summary["parts"]["organ-host"]
    assert part["restarts"] == 1 and part["state"] == "STOPPED"
    assert not alive(pid)


def test_organ_names_are_checked_by_the_organism_config() -> None:
    with pytest.raises(ValueError, match="runtime.organism.organs: subject organ 'vi sion'"):
        OrganismConfig(organs=["vi sion"])
    assert OrganismConfig().organs == []  # no organ host unless asked
