"""The bus: a nats-py connection with typed publish/subscribe/request and the events stream.

``async with Bus(BusConfig()) as bus`` starts an embedded nats-server (``nervous.server``) with
JetStream stored under ``run_dir`` when ``config.url`` is None, else connects to ``config.url``: one
server, or a cluster's servers comma-separated (``nervous.cluster``), tried in the order given (first
connection and every reconnect), so a client whose node dies fails over to the next one.
The connection pings every ``ping_interval_s`` and gives up a silent (frozen) broker after
``max_outstanding_pings`` missed pongs, then reconnects forever, buffering at most
``pending_bytes`` of publishes meanwhile; replies use an inbox prefix per identity; closing drains.
On a bus with identities (``nervous.auth``) it logs in as ``config.user`` or, when that is empty, as
the user its supervisor handed it in its environment (``NIMMERVERSE_BUS_USER`` and ``_PASSWORD``);
its reply inboxes are then its identity's (``_INBOX.{env}.{identity}``), the only ones it may read.
What the server refuses it (a permissions violation) is counted in ``bus.refused`` and logged.

Messages are ``nervous.messages`` structs; a payload that does not decode is counted in
``bus.bad_messages`` (per subject), answered with a ``CellError`` when it carried a reply inbox,
and never reaches the handler. A handler that raises is logged, counted in ``bus.handler_errors``
and answered the same way; messages nats-py drops for a subscription past its pending limits
(a slow consumer) are counted in ``bus.dropped`` and logged, never silently.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig, StreamInfo

from nervous import auth, subjects
from nervous.messages import CellError, Message, MessageDecoder, MessageError, decode, encode
from nervous.server import EmbeddedServer

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


@dataclass
class BusConfig:
    """How to reach (or start) the NATS bus."""

    url: str | None = None
    """nats://host:port of an existing server, or several comma-separated (a cluster, tried in order);
    None starts an embedded nats-server."""
    name: str = "nimmerverse"
    """Client identity: connection name and reply-inbox prefix (with a login: its identity's inbox)."""
    user: str = ""
    """NATS user of a bus with identities (nervous.auth); '': the one in NIMMERVERSE_BUS_USER, if any."""
    password: str = field(default="", repr=False)
    """Its password ('' with user '': NIMMERVERSE_BUS_PASSWORD)."""
    connect_timeout_s: float = 2.0
    """Seconds to wait for the first connection before failing."""
    ping_interval_s: float = 1.0
    """Seconds between client pings; a frozen broker is noticed after about interval * (max pings + 1)."""
    max_outstanding_pings: int = 2
    """Unanswered pings after which the connection counts as stale and reconnects."""
    reconnect_wait_s: float = 0.25
    """Seconds between reconnect attempts."""
    max_reconnect_attempts: int = -1
    """Reconnect attempts before giving up; -1 retries forever."""
    pending_bytes: int = 8 << 20
    """Publishes buffered while disconnected, in bytes; beyond it publishing raises."""
    drain_timeout_s: float = 5.0
    """Seconds allowed to drain subscriptions and flush publishes on close."""
    server_start_timeout_s: float = 5.0
    """Seconds the embedded nats-server may take to become healthy."""
    stream_max_msgs: int = 1_000_000
    """Events stream: messages kept at most."""
    stream_max_bytes: int = 256 << 20
    """Events stream: bytes kept at most."""
    stream_max_age_s: float = 3600.0
    """Events stream: seconds a message is kept at most."""
    stream_duplicate_window_s: float = 120.0
    """Events stream: seconds within which a repeated Nats-Msg-Id is dropped."""


class BusError(RuntimeError):
    """The bus could not be reached or a remote service answered with an error."""


def server_urls(url: str) -> list[str]:
    """The servers of a bus url: one ``nats://host:port``, or a cluster's comma-separated."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise BusError(f"bus url {url!r}: names no server")
    return servers


class Bus:
    """One connection to the bus, owning the embedded server when it started one."""

    def __init__(self, config: BusConfig | None = None, run_dir: str | Path | None = None) -> None:
        self.config = config or BusConfig()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.server: EmbeddedServer | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self.connected = asyncio.Event()
        self.disconnects = 0
        self.reconnects = 0
        self.bad_messages: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        """Per subject: messages nats-py dropped because a subscription was past its pending limits."""
        self.handler_errors: Counter[str] = Counter()
        """Per subject: messages whose handler raised."""
        self.refused: Counter[str] = Counter()
        """Permissions violations the server reported, by what was refused (``publish to "dev.x.y"``)."""
        self.last_error: Exception | None = None

    # -- lifetime ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The url this bus connects to."""
        if self.config.url is not None:
            return self.config.url
        if self.server is None:
            raise BusError("bus url: embedded server not started")
        return self.server.url

    async def connect(self) -> Bus:
        """Start the embedded server if needed and connect; BusError naming the url on failure."""
        cfg = self.config
        if cfg.url is None and self.server is None:
            store = self.run_dir / "nats" if self.run_dir is not None else None
            self.server = EmbeddedServer(store, start_timeout_s=cfg.server_start_timeout_s)
            await asyncio.to_thread(self.server.start)
        url = self.url
        login = (cfg.user, cfg.password) if cfg.user else auth.login_from_env()
        user, password = login if login is not None else (None, None)
        # the identity's inbox: the only one its permissions let it read
        identity = user.split("-", 1)[1] if user else cfg.name
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=server_urls(url),
                    dont_randomize=True,  # the order is the caller's: a shard's processes share a node
                    name=cfg.name,
                    user=user,
                    password=password,
                    connect_timeout=cfg.connect_timeout_s,
                    ping_interval=cfg.ping_interval_s,
                    max_outstanding_pings=cfg.max_outstanding_pings,
                    allow_reconnect=True,
                    reconnect_time_wait=cfg.reconnect_wait_s,
                    max_reconnect_attempts=cfg.max_reconnect_attempts,
                    pending_size=cfg.pending_bytes,
                    inbox_prefix=subjects.inbox_prefix(identity),
                    drain_timeout=cfg.drain_timeout_s,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                ),
                timeout=cfg.connect_timeout_s + 1.0,
            )
        except Exception as exc:  # nats-py raises several unrelated types here
            self._stop_server()
            cause = self.last_error if isinstance(exc, TimeoutError) and self.last_error else exc
            reason = str(cause) or type(cause).__name__
            raise BusError(f"cannot connect to bus at {url}: {reason}") from None
        self.connected.set()
        return self

    async def close(self) -> None:
        """Drain subscriptions and pending publishes, then stop an embedded server."""
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed and not nc.is_connected:
            await self._close_quietly(nc)  # nothing can drain through a broker that is away: do not wait
        elif nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), self.config.drain_timeout_s + 1.0)
            except Exception as exc:  # a dead server cannot be drained; close anyway
                log.debug("drain failed: %s", exc)
                await self._close_quietly(nc)
        self._stop_server()

    @staticmethod
    async def _close_quietly(nc: Client) -> None:
        """Close a connection whose socket may be gone (nats-py then raises ConnectionResetError)."""
        try:
            await nc.close()
        except OSError as exc:
            log.debug("close: %s", exc)

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def __aenter__(self) -> Bus:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):  # one call per dropped message
            n = self.dropped[exc.subject] = self.dropped[exc.subject] + 1
            if n == 1 or n % 1000 == 0:
                log.warning(
                    "bus %s: slow consumer on %s: %d messages dropped", self.config.name, exc.subject, n
                )
            return
        self.last_error = exc
        text = str(exc)
        if "permissions violation for " in text:  # nats-py: 'nats: permissions violation for publish to "x"'
            what = text.split("permissions violation for ", 1)[1]
            n = self.refused[what] = self.refused[what] + 1
            if n == 1 or n % 1000 == 0:
                log.warning("bus %s: the server refused %s (%d times): not in this identity's permissions",
                            self.config.name, what, n)
            return
        log.debug("bus %s: %s", self.config.name, exc)

    async def _on_disconnect(self) -> None:
        self.disconnects += 1
        self.connected.clear()

    async def _on_reconnect(self) -> None:
        self.reconnects += 1
        self.connected.set()

    @property
    def nc(self) -> Client:
        """The underlying nats-py client (for raw access)."""
        if self._nc is None:
            raise BusError(f"bus {self.config.name} is not connected")
        return self._nc

    # -- core NATS --------------------------------------------------------------------------------

    def publish(self, subject: str, msg: Message, headers: dict[str, str] | None = None) -> Awaitable[None]:
        """Publish one typed message (await the result)."""
        nc = self._nc if self._nc is not None else self.nc
        return nc.publish(subject, encode(msg), headers=headers)

    async def subscribe(
        self,
        subject: str,
        kind: type[M],
        handler: Callable[[M, Msg], Awaitable[None] | None],
        queue: str = "",
        max_bytes: int = 1 << 20,
    ) -> Subscription:
        """Subscribe with decoding; bad payloads are counted, answered if they expect a reply, and dropped.

        ``handler(msg, raw)`` may be a coroutine function or, for hot paths, a plain function.
        """
        fast = MessageDecoder(kind, max_bytes)._decode
        slow = MessageDecoder(kind, max_bytes)
        is_async = inspect.iscoroutinefunction(handler)

        async def on_msg(raw: Msg) -> None:
            data = raw.data
            try:
                if len(data) > max_bytes:
                    raise ValueError
                msg = fast(data)
            except (ValueError, msgspec.DecodeError):  # msgspec.ValidationError is a ValueError
                try:
                    slow(data, raw.subject)
                except MessageError as exc:
                    await self.reject(raw, exc)
                return
            try:
                if is_async:
                    await handler(msg, raw)  # type: ignore[misc]
                else:
                    handler(msg, raw)
            except Exception as exc:  # nats-py would only pass it to the error callback: say so, answer
                self.handler_errors[raw.subject] += 1
                log.exception("bus %s: handler of %s failed", self.config.name, raw.subject)
                if raw.reply:
                    error = CellError(
                        error=f"{raw.subject}: {type(exc).__name__}: {exc}"[:1000], field="<handler>"
                    )
                    await self.nc.publish(raw.reply, encode(error))

        return await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    async def reject(self, raw: Msg, exc: MessageError) -> None:
        """Count a bad message and answer it with a CellError when it carried a reply inbox."""
        n = self.bad_messages[raw.subject] = self.bad_messages[raw.subject] + 1
        if n <= 10 or n % 1000 == 0:  # under attack: the first ten, then every thousandth
            log.warning("%s (%d bad on this subject)", exc, n)
        if raw.reply:
            await self.nc.publish(raw.reply, encode(CellError(error=str(exc), field=exc.field)))

    async def request(self, subject: str, msg: Message, kind: type[M], timeout: float = 1.0) -> M:
        """Send a request and decode its reply; BusError when the service answers with an error."""
        raw = await self.nc.request(subject, encode(msg), timeout=timeout)
        reply: Any = decode(raw.data, kind | CellError, subject)  # type: ignore[operator]
        if isinstance(reply, CellError):
            raise BusError(f"{subject}: {reply.error}")
        return reply

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until the server has processed everything published so far."""
        await self.nc.flush(timeout)

    # -- JetStream --------------------------------------------------------------------------------

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of this connection."""
        if self._js is None:
            self._js = self.nc.jetstream()
        return self._js

    def stream_name(self) -> str:
        """Name of the decision-events stream of the current env."""
        return f"NIMMERVERSE_{subjects.env().upper()}_EVENTS"

    async def ensure_stream(self) -> StreamInfo:
        """Create (or update) the events stream for waves, gate events and allocations."""
        cfg = self.config
        stream = StreamConfig(
            name=self.stream_name(),
            subjects=subjects.events_pattern(),
            storage=StorageType.FILE,
            max_msgs=cfg.stream_max_msgs,
            max_bytes=cfg.stream_max_bytes,
            max_age=cfg.stream_max_age_s,
            duplicate_window=cfg.stream_duplicate_window_s,
        )
        try:
            return await self.js.add_stream(stream)
        except nats.js.errors.BadRequestError:
            return await self.js.update_stream(stream)

    async def js_publish(self, subject: str, msg: Message, msg_id: str, timeout: float = 2.0) -> PubAck:
        """Publish one event to JetStream with a Nats-Msg-Id for de-duplication; returns the ack."""
        return await self.js.publish(subject, encode(msg), timeout=timeout, headers={"Nats-Msg-Id": msg_id})
