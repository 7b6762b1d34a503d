"""Lifeforce accounting: counts to per-NPC costs for GridWorld.charge."""

import numpy as np
import pytest

from nervous.lifeforce import LifeforceConfig, lifeforce_cost


def test_costs_add_up_per_npc_and_skip_the_dead() -> None:
    cfg = LifeforceConfig(per_tick=0.001, per_brain_call=0.01, per_organ_call=0.1, per_escalation=1.0)
    cost = lifeforce_cost(
        cfg,
        ticks=1,
        brain_calls=np.array([[1, 0, 2]]),
        organ_calls=np.array([[0, 1, 0]]),
        escalations=np.array([[0, 0, 1]]),
        alive=np.array([[True, True, False]]),
    )
    assert cost.dtype == np.float32 and cost.shape == (1, 3)
    np.testing.assert_allclose(cost, [[0.011, 0.101, 0.0]], rtol=1e-6)


def test_negative_costs_are_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="per_escalation"):
        LifeforceConfig(per_escalation=-1.0)
