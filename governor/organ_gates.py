"""Organ gates: which NPCs' requests the organ host serves, derived from the governor's other decisions.

The rule (every governor: fixed, heuristic, budget and learned, applied in
``baselines.finish_decisions``), for the vision organ: **an NPC's vision gate is open while the governor
opens its gate on one of ``vision_regions`` (default math and food) and its reserve, the lower of
lifeforce and battery, is at least ``vision_min_reserve``**; dead NPCs' gates are closed. Why: the
cortex is asked only through an open region gate, and a look is worth its lifeforce (``per_organ_call``)
only then - before a plan, when what lies beyond the NPC's 7x7 view (a key behind it, a door round the
corner, food further off) can change the plan; an NPC about to die spends nothing it can avoid. The
gate closes again when the region's gate closes (the collapse is over or used up).

Measured (``python -m benchmarks.organs`` and the same run with ``vision_regions=[math]``; stage 4,
heuristic governor, 300 episodes, seed 0): success 0.268 blind, 0.326 looking at every escalation,
0.324 with this rule (9 % fewer looks), 0.286 with math alone - most of what vision adds is food seen
beyond the view by hungry NPCs.

The learned governor has no organ-gate head: its vision gate follows from its own region gates by the
same rule (a documented derivation), so checkpoints saved before organ gates existed load unchanged.
An ``OrganGate`` message carries the result to the organ host and the cortex link
(``governor.service`` live; ``governor.runtime`` in-process).
"""

from __future__ import annotations

import numpy as np

from governor.config import GovernorConfig
from governor.inputs import ALIVE, BATTERY, LIFEFORCE
from nervous.messages import REGIONS

#: The organ whose gate the rule decides.
VISION = "vision"


def vision_gates(config: GovernorConfig, features: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """bool [N]: the vision organ gate of every NPC row, from its inputs [N, F] and region gates [N, R]."""
    regions = np.array([r.value in config.vision_regions for r in REGIONS], dtype=bool)
    reserve = np.minimum(features[:, LIFEFORCE], features[:, BATTERY])
    alive = features[:, ALIVE] > 0.5
    return alive & np.any(gates & regions, axis=1) & (reserve >= config.vision_min_reserve)
