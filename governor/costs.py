"""What thinking and reflexes cost in CPU seconds: the simulated CPU meter's prices, measured from real parts.

The in-process runtime does not run one process per NPC, so it cannot read each NPC's CPU use; it
counts work instead and prices it with a ``CostModel`` measured from the parts the live organism runs
for an NPC (``agents.world_server`` and ``agents.npc``), on one thread:

- ``reflex_tick_s``: every world tick of a living NPC: its share of the world server's batched
  nervous system (one ``CellBank`` step and one ``NerveBank`` pass over ``REFLEX_BATCH`` NPCs, and the
  tick's one ``WaveBatch`` encoded for the bus), divided by the NPCs (these run at every world tick,
  whatever the tick rate);
- ``brain_call_s``: every brain call: waking the NPC (the world encodes its observation, the NPC
  decodes it and encodes its action), the brain's forward (``agents.brain.BrainPolicy``) and its share
  of online learning (one PPO update of ``NpcConfig.num_steps`` brain calls, divided by them);
- ``escalation_s``: the NPC's side of one escalation: the boundary's encoding of its situation into the
  ``report_situation`` call (the HTTP round trip waits, it does not compute; the cortex's time is its own).

Before the world server ran the reflexes (2026-11-25, first figures) each NPC process decoded an
observation and ran its own cells and nerves every tick: 96 us per NPC tick, against 270 us per brain
call, so the per-tick floor dominated. ``DEFAULT_COSTS`` holds the medians of three ``measure_costs()``
runs on the 2-core development machine for the batched world-server reflexes (2026-11-25, python 3.11,
torch 2.13 CPU, one thread, load average about 17 from other work): reflex tick 4.3-4.7 us, brain call
295-306 us, escalation 56-61 us. A live NPC process spends more per brain call than its parts
(about 500 us per observation in ``benchmarks.governor_live``: the NATS client, asyncio, state reports
and heartbeats); ``benchmarks/governor.py`` measures the parts again and reports both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class CostModel:
    """CPU seconds of each kind of NPC work (one NPC, one thread)."""

    reflex_tick_s: float
    """Per world tick of a living NPC: its share of the batched cells, nerves and wave batch."""
    brain_call_s: float
    """Per brain call: the wake-up (observation and action over the bus), the forward, the amortised
    online PPO update."""
    escalation_s: float
    """Per escalation, the NPC's side."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0.0:
                raise ValueError(f"costs.{name}={value!r}: must be a number >= 0 (CPU seconds)")

    def as_dict(self) -> dict[str, float]:
        """The figures in microseconds, for reports."""
        return {f"{name[:-2]}_us": round(value * 1e6, 2) for name, value in asdict(self).items()}


#: NPCs of the batched reflex tick whose per-NPC share is measured (the live64 organism's size).
REFLEX_BATCH = 64
#: Measured by ``measure_costs()`` on the 2-core development machine (see the module docstring).
DEFAULT_COSTS = CostModel(reflex_tick_s=4.5e-6, brain_call_s=300e-6, escalation_s=57e-6)


def _cpu_seconds_per_call(fn: Callable[[], object], calls: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def measure_costs(calls: int = 2000, seed: int = 0) -> CostModel:
    """Measure the CostModel from the real brain, cells, nerves, learner and boundary, on one thread."""
    import torch

    from agents.npc import NpcAgent, NpcConfig
    from nervous.cells import CellBank
    from nervous.messages import Action, CollapseEvent, Observation, Region, decode, encode
    from nervous.nerves import NerveBank, NerveConfig
    from organs.boundary.encoder import DeterministicEncoder
    from organs.boundary.schema import encode_call
    from organs.boundary.world_numbers import SeenMaps, npc_numbers
    from world import GridWorld, stage_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        crowd = GridWorld(stage_config(4, n_npcs=REFLEX_BATCH), num_envs=1, seed=seed)
        views, senses = crowd.views[0], crowd.proprio[0]
        cells, nerves = CellBank(), NerveBank(NerveConfig(seed=seed))
        stay = np.zeros(REFLEX_BATCH, dtype=np.int64)

        def world_reflexes() -> None:  # the world server's tick for all its NPCs
            cells.step(views, senses, 1)
            nerves.apply(stay, views, senses)
            encode(cells.last.to_batch())  # type: ignore[union-attr]

        reflex = _cpu_seconds_per_call(world_reflexes, max(50, calls // 10)) / REFLEX_BATCH

        world = GridWorld(stage_config(4), num_envs=1, seed=seed)
        view, proprio, mask = world.views[0, 0], world.proprio[0, 0], world.action_mask[0, 0]

        def observation() -> Observation:
            return Observation(npc=0, tick=1, side=int(view.shape[0]), view=view.tobytes(),
                               proprio=proprio.astype("<f4").tobytes(), reward=0.0,
                               action_mask=mask.astype(np.uint8).tobytes(), sent=1.0)

        obs = observation()

        def wake() -> None:  # the world sends the observation, the NPC reads it and answers
            decode(encode(observation()), Observation)
            encode(Action(npc=0, tick=1, action=0))

        wake_s = _cpu_seconds_per_call(wake, calls)
        agent = NpcAgent(NpcConfig(npc=0, seed=seed, learn=False))
        rng = np.random.default_rng(seed)
        forward = _cpu_seconds_per_call(lambda: agent.policy.act(view, proprio, mask, rng), calls)

        learner = NpcAgent(NpcConfig(npc=0, seed=seed, learn=True))
        learner.step = 0
        steps = learner.config.num_steps
        rounds = max(2, calls // steps)
        start = time.process_time()
        for _ in range(rounds * steps):
            learner.act(obs)
        learner.learn()
        with_learning = (time.process_time() - start) / (rounds * steps)
        brain = wake_s + forward + max(0.0, with_learning - forward)  # learning adds what the forward leaves

        encoder, seen = DeterministicEncoder(), SeenMaps(world)
        event = CollapseEvent(npc=0, region=Region.MATH, confidence=0.9, cells=["math", "sight"], tick=1)
        escalation = _cpu_seconds_per_call(
            lambda: encode_call(encoder.encode(npc_numbers(world, 0, seen, event))),
            max(50, calls // 20))
    finally:
        torch.set_num_threads(threads)
    return CostModel(reflex_tick_s=reflex, brain_call_s=brain, escalation_s=escalation)
