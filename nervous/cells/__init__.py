"""Cells: small vectorised state machines that turn an NPC's senses into waves.

``CellBank(CellConfig())`` runs the battery, proximity, smell, hazard, social, math, vault and key cells over
flat senses ``views`` uint8 [M, V, V] and ``proprio`` float32 [M, P] (M = B*N; reshape the world's
[B, N, ...] arrays): ``bank.step(views, proprio, tick) -> WaveArrays`` with confidence / value /
fired arrays [M, C]; ``bank.features() -> float32[M, 2C]`` joins the NPC observation;
``WaveArrays.to_batch()`` makes the one ``WaveBatch`` message sent on the bus.

``python -m nervous.cells <name>`` (or ``python -m nervous.cells.<name>``) runs one cell as a
service on the bus (see ``nervous.cells.service``).

Names are loaded lazily so that ``python -m nervous.cells.<name>`` does not import itself twice.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CellBank": "nervous.cells.bank",
    "CELLS": "nervous.cells.bank",
    "make_cell": "nervous.cells.bank",
    "Cell": "nervous.cells.base",
    "CellConfig": "nervous.cells.base",
    "WaveArrays": "nervous.cells.base",
    "CellServiceConfig": "nervous.cells.service",
    "CellService": "nervous.cells.service",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nervous.cells' has no attribute {name!r}")
