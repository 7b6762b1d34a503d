"""The thalamus governor: per NPC, every governor tick, a tick rate, a CPU quota, gates and an LLM priority.

Every ``governor.governor_hz`` (2 Hz by default) a governor reads one float32 array of per-NPC inputs
(``governor.inputs``: what each NPC reported, its waves and collapse events per region, nerve
overrides, time since its last brain call and escalation, and the global context) and returns
``governor.decisions.Decisions`` for all NPCs at once. What each decision means, the same in both
runtimes:

- **tick rate** (one of ``governor.tick_rates``, Hz, dividing the 20 Hz world clock): how often the
  NPC's *brain* is called. ``runtime=inproc``: the brain acts every ``20 / r`` world ticks;
  ``runtime=processes``: the NPC process calls its brain at ``r`` Hz. Between two brain calls the NPC
  stays, while its cells and nerves still run every world tick (a nerve may still move it). Every
  brain call costs lifeforce (``nervous.lifeforce.per_brain_call``), so a slow tick rate is cheaper to
  live with and slower to react.
- **CPU quota** (``governor.min_quota``..``governor.max_quota`` percent of one core): ``inproc``: the
  NPC's share of the simulated compute budget; ``processes``: its cgroup's ``cpu.max``. The quotas of
  all living NPCs together never exceed ``governor.cpu_budget`` cores (``fit_to_budget``), whichever
  governor decides; a budget too small for every NPC's minimum quota is a config error.
- **gates** (one per region of ``nervous.messages.REGIONS``): open means that region's next collapse
  event escalates to the cortex (``organs.escalation.should_escalate``); closed means the reflex path
  (brain + nerves) handles it. Every escalation costs lifeforce (``per_escalation``).
- **LLM priority** (0-10, 10 served first): the rank of the NPC's cortex requests in the client's queue.

Decisions go out as ``Allocation`` messages on ``{env}.thalamus.governor.allocate`` (only for NPCs
whose decision changed, or all); the supervisor turns them into cgroup quotas and ``Command`` messages.
In the live organism the governor is its own process (``python -m governor``, ``governor.service``):
it hears NPC states and waves, finds collapse events itself (``{env}.thalamus.governor.collapse``) and
publishes allocations and gate transitions (``{env}.thalamus.gate.open`` / ``.close``).

Governors (Hydra group ``governor``): ``fixed`` (today's behaviour: 20 Hz, full quota, gates by a
threshold), ``heuristic`` (hand rules), ``budget`` (Unreal Engine's Animation Budget Allocator), and
``learned`` (a small torch network trained by PPO on the same input array: ``governor.learned``).
``governor.runtime`` runs any of them in the in-process runtime, ``governor.costs`` prices the work.
"""
