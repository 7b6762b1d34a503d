"""The organ host: organs (models) loaded on demand, a few at a time, and unloaded when idle.

The seed's "IDLE -> needs vision -> LOAD vision model -> PROCESS -> REPORT -> IDLE (keep warm) -> after
timeout -> UNLOAD (free memory)", one model per device slot.

- ``config``: ``OrganHostConfig`` (organs, ``slots``, ``when_full``, ``unload_after_s``, gates, loader).
- ``registry``: the kinds of organ (verbs, request/reply types, entry point, default weights).
- ``lifecycle``: ``OrganHost``, the state machine (slots, waits bounded by deadlines, idle unloading,
  gates, lifeforce charges) over an injectable clock and loader; the same object serves the in-process
  runtime directly (``await host.call("vision", "detect", VisionRequest(...))``).
- ``loaders``: where a loaded organ lives - its own worker process (default: unloading ends the
  process, so its memory really goes back) or the host's process.
- ``worker``: the worker process and its pipe protocol.
- ``service``: the bus service (``python -m organs.host``) and ``child_main`` for the fork server.
- ``inproc``: ``InProcessHost``, the same ``OrganHost`` driven synchronously in the caller's thread
  (the in-process runtime's cortex link looks through the vision organ with it, ``cortex.vision_gate``).
- ``client``: ``BusOrgans``, the organ host service asked over the bus from a synchronous caller (the
  live organism's cortex link: a request with a deadline, the governor's gates followed, the host's
  charge paying).
- ``seam``: ``OrganSeam``, the one interface of both, which the cortex link looks through.
- ``memory``: resident memory of a process tree, read from /proc.

The organ gate (the smallest honest mechanism while ``nervous.messages.Region`` has no organ
regions, so ``Allocation.gates`` cannot carry one): the governor (``governor.organ_gates``: vision opens
with an NPC's math or food gate while it can afford a look), or anyone, publishes ``OrganGate(npc, organ,
open)`` on ``{env}.organs.{organ}.gate``; the host's ``gate`` setting says whether an NPC without such a
message is served (``open``) or not (``governed``).
"""
