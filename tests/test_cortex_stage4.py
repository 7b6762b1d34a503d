"""Stage 4 (locks) with the heuristic governor: the cortex link lifts success, at a small escalation rate.

The scripted heuristic drives every NPC (``governor.drivers.ScriptedDriver``); the same world seed,
driver seed and governor run with and without the link (the nyx engine in-process). Measured when this
test was written (100 episodes, seed 0): success 0.154 -> 0.177, return -1.01 -> -0.89, 0.13
escalations per 100 NPC ticks. The margins below are about half of that.
"""

from __future__ import annotations

import pytest

from governor.compare import evaluate_governor
from governor.config import GovernorConfig
from governor.drivers import ScriptedDriver
from nervous.cells import CellBank
from nervous.config import NervousConfig
from organs.config import CortexConfig
from organs.link import CortexLink
from world import stage_config

SUCCESS_MARGIN = 0.01
RETURN_MARGIN = 0.05


@pytest.mark.slow
def test_the_cortex_lifts_stage_4_success_with_the_heuristic_governor() -> None:
    nervous, governor = NervousConfig(), GovernorConfig(kind="heuristic")
    rows = {}
    # blind (vision closed): the cortex's own lift, at a third of the time governed looks take
    for name, link in (("brain", None), ("cortex", CortexLink(CortexConfig(backend="engine",
                                                                           vision_gate="closed")))):
        driver = ScriptedDriver(CellBank(nervous.cell), seed=0)
        rows[name] = evaluate_governor(stage_config(4), driver, governor, nervous, episodes=100, seed=0,
                                       escalator=link)
    without, with_cortex = rows["brain"], rows["cortex"]
    assert with_cortex["success"] >= without["success"] + SUCCESS_MARGIN, rows
    assert with_cortex["return"] >= without["return"] + RETURN_MARGIN, rows
    assert 0 < with_cortex["escalations_per_100_ticks"] <= 6  # the escalation budget
    assert with_cortex["cortex/plans_done"] > with_cortex["cortex/plans_invalid"]
