"""The boundary's model backend against a real vLLM (CPU build, tiny random model as nyx).

Marked ``vllm`` (run by ``python -m pytest -m vllm`` after ``python -m deploy.vllm setup``). The weights
are random: with report_situation forced and its declaration fitted to the NPC's map, vLLM's guided
decoding is what makes the call a valid situation; left to choose (tool_choice auto), the model writes
no valid call and the deterministic encoder stands in.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from nervous.messages import Region
from organs.boundary import DeterministicEncoder, NpcNumbers
from organs.boundary.config import BoundaryConfig
from organs.boundary.model import ModelBoundary
from tests.cortex_fixtures import parse_map, proprio
from tests.vllm_fixtures import VllmServer

pytestmark = pytest.mark.vllm


def numbers() -> NpcNumbers:
    """An NPC next to a lock (7 * 8) on a 5x4 map."""
    seen, (x, y) = parse_map(["#####", "#.@L#", "#k.D#", "#####"])
    return NpcNumbers(npc=2, tick=7, x=x, y=y, proprio=proprio(facing=2, lock=(7, 8, 2, 0)), seen=seen,
                      region=Region.MATH, collapse_confidence=0.9, collapse_cells=["vault", "key"],
                      confidence=np.zeros(6, np.float32), value=np.zeros(6, np.float32))


def config(**fields: object) -> BoundaryConfig:
    """The served tiny model, generous time for a 2-core CPU."""
    return BoundaryConfig(**({"backend": "model", "model": "nyx", "timeout_s": 240.0, "max_tokens": 4000}
                             | fields))


async def test_a_forced_fitted_call_from_vllm_is_a_valid_situation(vllm_server: VllmServer) -> None:
    boundary = ModelBoundary(config(), base_url=vllm_server.base_url)
    try:
        result = await asyncio.wait_for(asyncio.to_thread(boundary.situate, numbers()), 300)
    finally:
        boundary.close()
    assert result.fallback == "", f"{result.fallback}: {result.detail}"
    situation = result.situation  # decode_call accepted it: bounds, rows == height, points on the map
    assert (situation.map.width, situation.map.height) == (5, 4) and len(situation.map.rows) == 4
    assert boundary.counts == {"requests": 1, "model": 1}


async def test_an_unguided_answer_from_vllm_falls_back_to_the_encoder(vllm_server: VllmServer) -> None:
    boundary = ModelBoundary(config(tool_choice="auto", max_tokens=64), base_url=vllm_server.base_url)
    try:
        result = await asyncio.wait_for(asyncio.to_thread(boundary.situate, numbers()), 300)
    finally:
        boundary.close()
    assert result.fallback in ("no_call", "bad_json", "bad_situation", "wrong_function", "several_calls")
    assert result.situation == DeterministicEncoder().encode(numbers())
    assert boundary.counts["fallback"] == 1 and boundary.counts[f"fallback_{result.fallback}"] == 1
