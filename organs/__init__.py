"""Organs: the cortex (boundary, client, embedded ``nyx`` server, plan follower); vision and speech later.

The gate interface with the governor (details in ``organs.escalation``): the governor sets
``Allocation.gates[region]`` and ``Allocation.llm_priority`` per NPC; when a ``CollapseEvent`` fires
for (npc, region) and that gate is open (``should_escalate``), the NPC side builds its situation with
``organs.boundary``, sends an ``Escalation`` (priority = llm_priority, a deadline) through
``organs.cortex.client.CortexClient.escalate``, and follows a PLANNED result's call with
``organs.plan.PlanFollower`` until it is done or invalid; any other outcome leaves its brain in charge.

In the in-process runtime that NPC side is ``organs.link.CortexLink`` (the governed reflex's escalator),
reaching the cortex through ``organs.cortex.backends``: the nyx engine in-process or the real client
over HTTP (``cortex.backend``).
"""
