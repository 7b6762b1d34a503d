"""Identities on the bus, on a real nats-server: each role may do what its row allows and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from agents.organism import Organism
from governor.config import GovernorConfig
from nervous import auth, subjects
from nervous.auth import Credentials, server_config
from nervous.bus import Bus, BusConfig, BusError
from nervous.server import EmbeddedServer
from nervous.trail_stream import TrailStreamConfig, ensure_trail_stream, stream_name
from tests.live import organism_config, until

NPCS = 2
SETTLE_S = 0.3
"""Seconds a message that was not refused would need, at most, to arrive on loopback."""


@pytest.fixture(scope="module")
def credentials() -> Credentials:
    """Passwords of every identity in dev and prod."""
    return Credentials.generate(NPCS, envs=("dev", "prod"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, credentials: Credentials) -> Iterator[EmbeddedServer]:
    """One nats-server with the generated accounts (dev, prod), users and permissions."""
    store = tmp_path_factory.mktemp("auth-nats")
    with EmbeddedServer(store, accounts=server_config(credentials, NPCS)) as running:
        yield running


class Clients:
    """Connections as named identities, closed at the end."""

    def __init__(self, server: EmbeddedServer, credentials: Credentials) -> None:
        self.server, self.credentials = server, credentials
        self.buses: list[Bus] = []

    async def __call__(self, identity: str, env: str = "dev") -> Bus:
        user, password = self.credentials.login(identity, env)
        bus = await Bus(BusConfig(url=self.server.url, name=identity, user=user, password=password)).connect()
        self.buses.append(bus)
        return bus

    async def close(self) -> None:
        for bus in self.buses:
            await bus.close()


@pytest.fixture
async def connect(server: EmbeddedServer, credentials: Credentials) -> AsyncIterator[Clients]:
    clients = Clients(server, credentials)
    try:
        yield clients
    finally:
        await clients.close()


async def listen(bus: Bus, subject: str) -> list[str]:
    """Subscribe raw; the subjects of what arrives."""
    got: list[str] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg.subject)

    await bus.nc.subscribe(subject, cb=on_msg)
    await bus.flush()
    return got


def E(subject: str) -> str:  # noqa: N802 - reads as the env prefix
    return f"dev.{subject}"


# (identity, publishes, receiver identity, receiver's subscription)
ALLOWED_PUBLISH = [
    ("npc-0", E("npc.0.action"), "world", E("npc.*.action")),
    ("npc-0", E("npc.0.state"), "governor", E("npc.*.state")),
    ("world", E("nervous.cells.bank.wave"), "governor", E("nervous.cells.*.wave")),
    ("organ", E("organs.vision.charge"), "world", E("organs.*.charge")),
    ("world", E("npc.0.obs"), "npc-0", E("npc.0.obs")),
    ("world", E("nervous.cells.math.request"), "cell", E("nervous.cells.*.request")),
    ("supervisor", E("npc.0.command"), "npc-0", E("npc.0.command")),
    ("governor", E("thalamus.governor.allocate"), "supervisor", E("thalamus.governor.allocate")),
    ("governor", E("thalamus.gate.open"), "world", E("thalamus.gate.open")),
    ("governor", E("trails.decision.event"), "world", E("trails.decision.event")),
    ("governor", E("cortex.nyx.request"), "cortex", E("cortex.nyx.request")),
    ("cell", E("nervous.cells.math.wave"), "viewer", E("nervous.cells.*.wave")),
    ("organ", E("organs.host.heartbeat"), "supervisor", E("*.*.heartbeat")),
    ("cortex", E("organs.vision.detect"), "organ", E("organs.*.*")),
    ("trails", E("trails.writer.heartbeat"), "supervisor", E("*.*.heartbeat")),
    ("world", E("world.run.frame"), "viewer", E("world.*.frame")),
]

# (identity, may not publish, a receiver that would hear it, its subscription)
FORBIDDEN_PUBLISH = [
    ("npc-0", E("npc.1.action"), "world", E("npc.*.action")),
    ("npc-0", E("thalamus.governor.allocate"), "supervisor", E("thalamus.governor.allocate")),
    ("npc-0", E("npc.1.obs"), "npc-1", E("npc.1.obs")),
    ("npc-0", E("nervous.cells.bank.wave"), "governor", E("nervous.cells.*.wave")),  # the world's batch
    ("world", E("thalamus.gate.open"), "world", E("thalamus.gate.open")),
    ("world", E("npc.0.command"), "npc-0", E("npc.0.command")),
    ("supervisor", E("thalamus.governor.allocate"), "supervisor", E("thalamus.governor.allocate")),
    ("supervisor", E("npc.0.obs"), "npc-0", E("npc.0.obs")),
    ("governor", E("npc.0.command"), "npc-0", E("npc.0.command")),
    ("cell", E("thalamus.gate.open"), "world", E("thalamus.gate.open")),
    ("organ", E("npc.0.obs"), "npc-0", E("npc.0.obs")),
    ("cortex", E("organs.vision.charge"), "organ", E("organs.*.*")),
    ("trails", E("npc.0.obs"), "npc-0", E("npc.0.obs")),
    ("viewer", E("npc.0.obs"), "npc-0", E("npc.0.obs")),
    ("viewer", E("world.run.frame"), "viewer", E("world.*.frame")),
]

# (identity, may not subscribe to)
FORBIDDEN_SUBSCRIBE = [
    ("npc-0", E("npc.1.obs")),
    ("npc-0", E("npc.*.command")),
    ("world", E("thalamus.governor.allocate")),
    ("supervisor", E("npc.*.action")),
    ("governor", E("npc.0.obs")),
    ("cell", E("npc.*.state")),
    ("organ", E("cortex.nyx.request")),
    ("cortex", E("npc.*.state")),
    ("trails", E("trails.decision.*")),
    ("viewer", E("npc.*.action")),
]


def test_the_table_covers_every_role() -> None:
    rows = ALLOWED_PUBLISH + FORBIDDEN_PUBLISH
    roles = {"npc" if who.startswith("npc-") else who for who, *_ in rows}
    assert roles == set(auth.ROLES)
    assert {("npc" if who.startswith("npc-") else who) for who, _ in FORBIDDEN_SUBSCRIBE} == set(auth.ROLES)


@pytest.mark.parametrize(("who", "subject", "receiver", "pattern"), ALLOWED_PUBLISH,
                         ids=[f"{r[0]}:{r[1]}" for r in ALLOWED_PUBLISH])
async def test_an_allowed_publish_is_delivered(connect: Clients, who: str, subject: str, receiver: str,
                                               pattern: str) -> None:
    heard = await listen(await connect(receiver), pattern)
    sender = await connect(who)
    await sender.nc.publish(subject, b"hello")
    await sender.flush()
    await until(lambda: subject in heard, 5, f"{receiver} hearing {subject} from {who}")
    assert not sender.refused


@pytest.mark.parametrize(("who", "subject", "receiver", "pattern"), FORBIDDEN_PUBLISH,
                         ids=[f"{r[0]}:{r[1]}" for r in FORBIDDEN_PUBLISH])
async def test_a_forbidden_publish_is_refused_and_not_delivered(connect: Clients, who: str, subject: str,
                                                                receiver: str, pattern: str) -> None:
    heard = await listen(await connect(receiver), pattern)
    sender = await connect(who)
    await sender.nc.publish(subject, b"spoofed")
    await sender.flush()
    await until(lambda: sender.refused, 5, f"the server refusing {who} to publish {subject}")
    assert sender.refused == {f'publish to "{subject}"': 1}
    await asyncio.sleep(SETTLE_S)
    assert subject not in heard


@pytest.mark.parametrize(("who", "subject"), FORBIDDEN_SUBSCRIBE,
                         ids=[f"{r[0]}:{r[1]}" for r in FORBIDDEN_SUBSCRIBE])
async def test_a_forbidden_subscription_is_refused(connect: Clients, who: str, subject: str) -> None:
    bus = await connect(who)
    heard = await listen(bus, subject)
    await until(lambda: bus.refused, 5, f"the server refusing {who} to subscribe to {subject}")
    assert bus.refused == {f'subscription to "{subject}"': 1}
    assert heard == []


async def test_requests_get_replies_through_the_identity_inboxes(connect: Clients) -> None:
    cell, world = await connect("cell"), await connect("world")

    async def answer(msg: Msg) -> None:
        await cell.nc.publish(msg.reply, b"waves")  # allow_responses: only to the asker's inbox

    await cell.nc.subscribe(E("nervous.cells.math.request"), cb=answer)
    await cell.flush()
    reply = await world.nc.request(E("nervous.cells.math.request"), b"senses", timeout=5)
    assert reply.data == b"waves" and reply.subject.startswith("_INBOX.dev.world.")
    assert not cell.refused and not world.refused
    await cell.nc.publish(E("_INBOX.dev.world.unasked"), b"x")  # no request came from there
    await until(lambda: cell.refused, 5, "an unasked reply refused")


async def test_the_trail_writer_reaches_only_its_own_stream(connect: Clients) -> None:
    governor, trails = await connect("governor"), await connect("trails")
    await ensure_trail_stream(governor.js, TrailStreamConfig())  # a decider may make the stream
    info = await trails.js.stream_info(stream_name())
    assert info.config.name == "NIMMERVERSE_DEV_TRAILS"
    with pytest.raises(TimeoutError):  # the refused API request gets no answer
        await asyncio.wait_for(trails.js.stream_info("NIMMERVERSE_DEV_EVENTS"), 2.0)
    await until(lambda: trails.refused, 5, "the events stream's API refused to the trail writer")
    refused = 'publish to "$JS.API.STREAM.INFO.NIMMERVERSE_DEV_EVENTS"'.lower()  # nats-py lowers it
    assert list(trails.refused) == [refused]


async def test_a_cross_env_publish_is_not_delivered(connect: Clients) -> None:
    prod_npc = await connect("npc-0", env="prod")
    heard = await listen(prod_npc, "prod.npc.0.obs")
    dev_world = await connect("world")
    await dev_world.nc.publish("prod.npc.0.obs", b"from dev")
    await dev_world.nc.publish("dev.npc.0.obs", b"dev's own")
    await dev_world.flush()
    await until(lambda: dev_world.refused, 5, "the prod subject refused to a dev identity")
    assert dev_world.refused == {'publish to "prod.npc.0.obs"': 1}
    prod_world = await connect("world", env="prod")
    await prod_world.nc.publish("prod.npc.0.obs", b"prod's own")
    await until(lambda: heard, 5, "prod's own observation")
    await asyncio.sleep(SETTLE_S)
    assert heard == ["prod.npc.0.obs"]  # prod's one; neither dev's by name nor dev's own
    await listen(prod_npc, "dev.npc.0.obs")
    await until(lambda: prod_npc.refused, 5, "a dev subject refused to a prod identity")


async def test_a_wrong_password_is_one_clear_error(server: EmbeddedServer) -> None:
    config = BusConfig(url=server.url, name="npc-0", user="dev-npc-0", password="guess",
                       connect_timeout_s=1.0, max_reconnect_attempts=0)
    with pytest.raises(BusError, match=r"cannot connect to bus at nats://127\.0\.0\.1:\d+: .*Authorization"):
        await Bus(config).connect()
    with pytest.raises(BusError, match="Authorization"):  # no login at all on a bus with identities
        anon = BusConfig(url=server.url, name="anon", connect_timeout_s=1.0, max_reconnect_attempts=0)
        await Bus(anon).connect()


async def test_a_child_logs_in_from_its_environment(server: EmbeddedServer, credentials: Credentials,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in credentials.child_env("npc-1").items():
        monkeypatch.setenv(key, value)
    async with Bus(BusConfig(url=server.url, name="npc-1")) as bus:
        await bus.nc.publish(subjects.npc_action(1), b"x")
        await bus.nc.publish(subjects.npc_action(0), b"x")
        await bus.flush()
        await until(lambda: bus.refused, 5, "npc-1 refused npc 0's action")
        assert bus.refused == {'publish to "dev.npc.0.action"': 1}


def test_secrets_are_written_for_root_only(tmp_path: Path, credentials: Credentials) -> None:
    path = credentials.save(tmp_path / "credentials.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Credentials.load(path) == credentials
    with EmbeddedServer(tmp_path / "nats", accounts=server_config(credentials, NPCS, ["dev"])) as server:
        conf = server.store_dir / "nats-server.conf"
        assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
        assert credentials.login("governor")[1] in conf.read_text()


async def test_the_config_command_prints_a_config_nats_server_accepts(tmp_path: Path, capsys) -> None:
    creds = tmp_path / "prod.json"
    assert auth.main(["config", "--env", "prod", "--npcs", "3", "--credentials", str(creds)]) == 0
    text = capsys.readouterr().out
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    assert "PROD {" in text and "DEV {" not in text and '"prod-npc-2"' in text and '"prod-npc-3"' not in text
    again = auth.main(["config", "--env", "prod", "--npcs", "3", "--credentials", str(creds)])
    assert again == 0 and capsys.readouterr().out == text  # the same passwords from the same file
    with EmbeddedServer(tmp_path / "nats", accounts=text) as server:  # nats-server parses it, comes up
        user, password = Credentials.load(creds).login("npc-2", "prod")
        async with Bus(BusConfig(url=server.url, name="npc-2", user=user, password=password)) as bus:
            await bus.nc.publish("prod.npc.2.action", b"x")
            await bus.flush()
            assert not bus.refused


@pytest.mark.parametrize(("argv", "field"), [(["config", "--env", "qa"], "--env 'qa'"),
                                             (["config", "--npcs", "-1"], "--npcs -1")])
def test_the_config_command_names_a_bad_value(argv: list[str], field: str, capsys) -> None:
    assert auth.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {field}")


@pytest.mark.slow
async def test_every_part_of_the_organism_connects_as_itself_and_nothing_is_refused(tmp_path: Path) -> None:
    config = organism_config(tmp_path, 2)
    config.governor = GovernorConfig(kind="heuristic")
    config.trails = True
    config.cell_services = ["math"]
    async with Organism(config) as org:
        sup, world, server = org.supervisor, org.world, org.server
        assert sup is not None and world is not None and server is not None
        running = asyncio.create_task(org.run(0))
        try:
            expected = {"dev-organism", "dev-npc-0", "dev-npc-1", "dev-governor", "dev-cell", "dev-trails"}
            logged_in = lambda: expected <= users(server)  # noqa: E731
            await until(logged_in, 60, lambda: f"every part logged in: {users(server)}")
            await until(lambda: world.acted.min() > 5, 30, "every NPC acting")
            await asyncio.sleep(2.0)  # the governor allocating, the supervisor commanding, the writer polling
        finally:
            org.stop.set()
            summary = await asyncio.wait_for(running, 30)
        log = (server.store_dir / "nats-server.log").read_text()
    assert "Violation" not in log
    assert not org.bus.refused  # type: ignore[union-attr]
    assert summary["failed"] == [] and all(p["restarts"] == 0 for p in summary["parts"].values())


def users(server: EmbeddedServer) -> set[str]:
    """The users of the server's client connections (its monitoring endpoint)."""
    url = f"http://127.0.0.1:{server.monitor_port}/connz?auth=true&limit=1000"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return {c.get("authorized_user", "") for c in json.load(resp)["connections"]}


def test_subjects_move_between_envs() -> None:
    assert subjects.in_env("dev.npc.3.action", "prod") == "prod.npc.3.action"
    assert subjects.in_env("_INBOX.dev.npc-3.>", "staging") == "_INBOX.staging.npc-3.>"
    with pytest.raises(ValueError, match="does not start with an env"):
        subjects.in_env("npc.3.action", "prod")
    with pytest.raises(ValueError, match="'qa' is not one of"):
        subjects.in_env("dev.npc.3.action", "qa")
    prod = auth.permissions("npc", 3).in_env("prod")
    assert all(s.startswith(("prod.", "_INBOX.prod.")) for s in prod.publish + prod.subscribe)


@pytest.mark.slow
async def test_an_external_bus_from_the_config_command_runs_the_organism(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    creds = tmp_path / "credentials.json"
    assert auth.main(["config", "--env", "dev", "--npcs", "2", "--credentials", str(creds)]) == 0
    with EmbeddedServer(tmp_path / "external", accounts=capsys.readouterr().out) as server:
        monkeypatch.setenv(auth.CREDENTIALS_VAR, str(creds))
        config = organism_config(tmp_path, 2)
        config.bus_url = server.url
        async with Organism(config) as org:
            world = org.world
            assert world is not None
            running = asyncio.create_task(org.run(0))
            try:
                await until(lambda: world.acted.min() > 5, 60, "every NPC acting on the external bus")
                assert {"dev-organism", "dev-npc-0", "dev-npc-1"} <= users(server)
            finally:
                org.stop.set()
                await asyncio.wait_for(running, 30)
        assert "Violation" not in (server.store_dir / "nats-server.log").read_text()


def test_bus_auth_is_a_config_key_checked_by_name(compose_run) -> None:
    assert compose_run().bus.auth == "roles"
    assert compose_run("runtime=processes", "bus.auth=none").bus.auth == "none"
    with pytest.raises(ValueError, match=r"^bus\.auth='maybe': must be one of roles, none$"):
        compose_run("bus.auth=maybe")
