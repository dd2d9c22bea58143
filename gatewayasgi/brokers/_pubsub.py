"""The subscriber side of ``RedisBroker``: one raw pub/sub connection over anyio.

A thin I/O shell around the sans-I/O ``_resp.RespReader``: commands go out as RESP
arrays, bytes come in and are parsed as they arrive, so a message over the size limit
is skipped from its length header instead of being read into memory first (what
redis-py's ``PubSub`` would do). Reconnecting and resubscribing stay in ``RedisBroker``.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
from anyio.abc import ByteStream

from gatewayasgi.brokers._resp import ProtocolError, Push, Reply, RespError, RespReader, push_from

DEFAULT_PORT = 6379
# One socket read (asyncio's own read size); parsing happens per chunk, so this is also
# the most of an oversize message that is ever in memory at once.
RECEIVE_SIZE = 256 * 1024
# The reader's limit applies to every bulk string, channel names and the words
# "subscribe", "message" included; below this floor the caller checks sizes itself.
MIN_BULK_LIMIT = 64 * 1024
_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect, parsed from a redis-py style URL (see ``parse_url``)."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    path: str | None = None
    """Unix socket path (``unix://``); ``host``/``port`` are unused then."""
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_ca_certs: str | None = None
    ssl_check_hostname: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``rediss://``, with redis-py's meaning of the URL options."""
        context = ssl.create_default_context(cafile=self.ssl_ca_certs)
        if self.ssl_cert_reqs == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = self.ssl_check_hostname
            if self.ssl_cert_reqs == "optional":
                context.verify_mode = ssl.CERT_OPTIONAL
        return context


def parse_url(url: str) -> Endpoint:
    """``redis://``, ``rediss://`` or ``unix://`` URL -> ``Endpoint``; ``ValueError`` if not.

    The database number is ignored: pub/sub channels are shared by every database.
    Username and password come from the URL's user part or its query string.
    """
    parts = urlsplit(url)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"RedisBroker url must start with redis://, rediss:// or unix:// (got {url[:40]!r})"
        )
    cert_reqs = query.get("ssl_cert_reqs", "required").lower()
    if cert_reqs not in ("none", "optional", "required"):
        raise ValueError(f"ssl_cert_reqs must be none, optional or required (got {cert_reqs!r})")
    username = unquote(parts.username) if parts.username else query.get("username")
    password = unquote(parts.password) if parts.password else query.get("password")
    check_hostname = query.get("ssl_check_hostname", "true").lower() not in ("false", "0", "no")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// Redis URL needs a socket path")
        return Endpoint(path=unquote(parts.path), username=username, password=password)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"invalid port in Redis URL: {exc}") from None
    return Endpoint(
        host=unquote(parts.hostname) if parts.hostname else "localhost",
        port=port,
        tls=parts.scheme == "rediss",
        username=username,
        password=password,
        ssl_cert_reqs=cert_reqs,
        ssl_ca_certs=query.get("ssl_ca_certs"),
        ssl_check_hostname=check_hostname,
    )


def command(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class PubSubConnection:
    """An open connection to Redis used only for SUBSCRIBE, UNSUBSCRIBE and PING.

    Bulk strings over ``max_message_size`` (or over ``MIN_BULK_LIMIT``, whichever is
    larger) arrive as ``OversizeMessage``, never read into memory; a smaller
    ``max_message_size`` is the caller's to check on each ``Message``.
    ``receive()`` is called by one task (the broker's reader); ``send`` may be called
    from any task, writes are serialised. Every failure surfaces as ``OSError``
    (``ConnectionError`` for a closed or misbehaving peer), so the caller has one
    exception family to treat as "reconnect".
    """

    def __init__(self, stream: ByteStream, max_message_size: int) -> None:
        self._stream = stream
        self._reader = RespReader(max(max_message_size, MIN_BULK_LIMIT))
        self._write_lock = anyio.Lock()

    @classmethod
    async def open(cls, endpoint: Endpoint, max_message_size: int) -> PubSubConnection:
        """Connect (TCP, TLS or unix socket) and authenticate when the URL has a password.

        Bound it with a timeout: connecting to an unanswering host can take long.
        """
        stream: ByteStream
        try:
            if endpoint.path is not None:
                stream = await anyio.connect_unix(endpoint.path)
            elif endpoint.tls:
                stream = await anyio.connect_tcp(
                    endpoint.host,
                    endpoint.port,
                    ssl_context=endpoint.ssl_context(),
                    tls_standard_compatible=False,  # Redis may close without close_notify
                )
            else:
                stream = await anyio.connect_tcp(endpoint.host, endpoint.port)
        except _STREAM_ERRORS as exc:
            raise ConnectionError("redis closed the connection during the TLS handshake") from exc
        connection = cls(stream, max_message_size)
        try:
            if endpoint.password is not None:
                await connection._authenticate(endpoint.username, endpoint.password)
        except BaseException:
            await connection.aclose()
            raise
        return connection

    async def _authenticate(self, username: str | None, password: str) -> None:
        args = [b"AUTH"] + ([username.encode()] if username else []) + [password.encode()]
        await self.send(*args)
        replies: list[Push] = []
        while not replies:
            replies = await self.receive()
        reply = replies[0]
        if isinstance(reply, Reply) and isinstance(reply.value, RespError):
            raise ConnectionError(f"redis refused AUTH: {reply.value.message}")
        if reply != Reply("OK"):
            raise ConnectionError(f"unexpected reply to AUTH: {reply!r}")

    async def send(self, *args: bytes) -> None:
        """Write one command."""
        async with self._write_lock:
            try:
                await self._stream.send(command(*args))
            except _STREAM_ERRORS as exc:
                raise ConnectionError("redis connection closed") from exc

    async def subscribe(self, *channels: str) -> None:
        """Send SUBSCRIBE; Redis confirms each channel with a ``SubscriptionAck``."""
        await self.send(b"SUBSCRIBE", *(c.encode() for c in channels))

    async def unsubscribe(self, *channels: str) -> None:
        """Send UNSUBSCRIBE for ``channels``."""
        await self.send(b"UNSUBSCRIBE", *(c.encode() for c in channels))

    async def ping(self) -> None:
        """Send PING; on a subscribed connection Redis answers with a ``Pong`` push."""
        await self.send(b"PING")

    async def receive(self) -> list[Push]:
        """Wait for the next bytes from Redis; return the pushes they completed.

        The list is empty when the bytes only continued a message (or skipped part of
        an oversize one): the connection is alive, but there is nothing to act on yet.
        """
        try:
            chunk = await self._stream.receive(RECEIVE_SIZE)
        except _STREAM_ERRORS as exc:
            raise ConnectionError("redis closed the connection") from exc
        try:
            values = self._reader.feed(chunk)
        except ProtocolError as exc:
            raise ConnectionError(f"malformed data from redis: {exc}") from exc
        return [push_from(value) for value in values]

    async def aclose(self) -> None:
        """Close the connection at once (no TLS close_notify: nothing more will be read)."""
        with contextlib.suppress(OSError, *_STREAM_ERRORS):
            await anyio.aclose_forcefully(self._stream)
