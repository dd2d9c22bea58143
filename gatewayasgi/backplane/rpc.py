"""Cluster requests and replies: what nodes ask each other, as bytes (pure, no I/O).

Beside delivery orders (``envelope``), nodes ask each other questions about their local
clients ("which of your clients are in room r?"), give orders ("make them join r2",
"disconnect them"), call clients and announce they are alive. As socket.io's Redis
adapter does, every request goes to a channel per namespace that every node serving it
subscribes to, and every answer to a channel per node (the requester's):

* ``gatewayasgi:rpc:<namespace>``: requests and heartbeats for one gateway namespace;
* ``gatewayasgi:node:<node id>``: replies to that node's requests.

Both ride on the same broker as deliveries, so a ``RedisBroker(secret=...)`` signs and
checks them too, and its size cap bounds them. A message is one JSON object; everything
in it is checked here (types, lengths, counts) before the runtime sees it, so a bad
message is dropped with a warning and never raises into a node.

Request keys: ``o`` op, ``n`` sender node, ``q`` request id (0: no reply wanted), ``r``/
``c``/``xr``/``xc`` targets as in ``envelope``, ``room`` (join, leave), ``code``/``why``
(disconnect), ``e``/``d``/``t`` (call: event, data, timeout; a fetch may carry ``t``
too: how long its asker waits), ``hi`` (a heartbeat that asks peers to announce
themselves at once). Reply keys: ``n``, ``q``, ``p``/``of``
(part number and count: a long answer is cut in parts under ``MAX_PART_BYTES``) and
``i`` (the items: client ids, or call outcomes ``[client_id, "ok"|"error"|"timeout", x]``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from gatewayasgi._types import JSONValue
from gatewayasgi.backplane.envelope import CHANNEL_PREFIX
from gatewayasgi.protocol.codec import dumps
from gatewayasgi.protocol.targets import NOBODY, Targets

HEARTBEAT = "hb"
"""A node serving the namespace is alive (sent every ``HEARTBEAT_INTERVAL``)."""
BYE = "bye"
"""A node stops serving the namespace (graceful shutdown)."""
FETCH = "ids"
"""Reply with the ids of the local clients the targets name."""
JOIN = "join"
"""Make the targeted local clients join ``room`` (no reply)."""
LEAVE = "leave"
"""Make the targeted local clients leave ``room`` (no reply)."""
DISCONNECT = "disconnect"
"""Close the targeted local clients with ``code`` (no reply)."""
CALL = "call"
"""Call the targeted local clients; reply with their outcomes."""
CANCEL = "cancel"
"""End the stream answering request ``data`` of the targeted session (the one client id
named), where it runs: a ``$cancel`` from a session resumed on another node (no reply)."""
OPS = frozenset({HEARTBEAT, BYE, FETCH, JOIN, LEAVE, DISCONNECT, CALL, CANCEL})
MAX_STREAM_ID_LENGTH = 128
"""Longest string request id a cancel order may name (a frame's ``id`` is no longer)."""

MAX_PART_BYTES = 256 * 1024
"""Largest reply part; longer answers are cut in parts (and one item never exceeds it)."""
MAX_ITEM_BYTES = MAX_PART_BYTES - 1024
"""Largest item (client id, call outcome) a reply can carry; a node turns a larger call
answer into an error outcome before replying."""
MAX_PARTS = 1024
"""Parts one node may send for one request (a node past it is dropped as malformed)."""
MAX_TARGET_NAMES = 10_000
"""Rooms and client ids one request may name, in each of its four lists."""
MAX_NAME_LENGTH = 1024
"""Longest room name or client id in a request (the node checks its own, smaller limit)."""
MAX_EVENT_LENGTH = 256
"""Longest event name of a call request."""
MAX_CALL_TIMEOUT = 300.0
"""Longest timeout a call (or fetch) request may ask a node to wait for its clients."""
REPLY_GRACE = 1.0
"""Seconds a room call's asker waits for the other nodes beyond the call's timeout (their
replies travel after their clients' timeouts); an answering node gives up then too."""
MAX_REASON_LENGTH = 123
"""Longest close reason (the WebSocket protocol's limit, in bytes)."""

_RPC = CHANNEL_PREFIX + "rpc:"
_NODE = CHANNEL_PREFIX + "node:"


class RpcError(ValueError):
    """A cluster message that is malformed, too large or out of bounds."""


def check_close(code: int, reason: str | None) -> None:
    """Raise ``ValueError`` unless ``code``/``reason`` may close a client (1000, 3000-4999)."""
    if type(code) is not int or not (code == 1000 or 3000 <= code <= 4999):
        raise ValueError(f"close code must be 1000 or 3000-4999, got {code!r}")
    if reason is not None and (type(reason) is not str or len(reason.encode()) > MAX_REASON_LENGTH):
        raise ValueError(f"close reason must be a string of at most {MAX_REASON_LENGTH} bytes")


def request_channel(namespace: str) -> str:
    """The channel of requests and heartbeats about one gateway namespace."""
    return _RPC + namespace


def reply_channel(node_id: str) -> str:
    """The channel of replies to one node's requests."""
    return _NODE + node_id


def namespace_of(channel: str) -> str | None:
    """The namespace a request channel is about, ``None`` for any other channel."""
    return channel[len(_RPC) :] if channel.startswith(_RPC) else None


def is_reply_channel(channel: str) -> bool:
    """True for a node's reply channel."""
    return channel.startswith(_NODE)


@dataclass(frozen=True, slots=True)
class Request:
    """One cluster request (or heartbeat) from node ``node``; see the module docstring."""

    op: str
    node: str
    id: int = 0
    targets: Targets = NOBODY
    exclude: Targets = NOBODY
    room: str | None = None
    code: int = 1000
    reason: str | None = None
    event: str | None = None
    data: JSONValue = None
    timeout: float = 0.0
    hello: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """One part of a node's answer to request ``id``."""

    node: str
    id: int
    part: int
    parts: int
    items: list[JSONValue]


def pack_request(request: Request) -> bytes:
    """Serialise a request for ``Broker.publish``."""
    body: dict[str, Any] = {"o": request.op, "n": request.node}
    if request.id:
        body["q"] = request.id
    for key, names in (
        ("r", request.targets.rooms),
        ("c", request.targets.clients),
        ("xr", request.exclude.rooms),
        ("xc", request.exclude.clients),
    ):
        if names:
            body[key] = list(names)
    if request.room is not None:
        body["room"] = request.room
    if request.op == DISCONNECT:
        body["code"] = request.code
        if request.reason:
            body["why"] = request.reason
    if request.op == CALL:
        body.update(e=request.event, d=request.data, t=request.timeout)
    elif request.op == CANCEL:
        body["d"] = request.data
    elif request.op == FETCH and request.timeout > 0:
        body["t"] = min(request.timeout, MAX_CALL_TIMEOUT)
    if request.hello:
        body["hi"] = True
    return dumps(body)


def _load(message: bytes, max_size: int) -> dict[str, Any]:
    if len(message) > max_size:
        raise RpcError(f"cluster message of {len(message)} bytes exceeds {max_size}")
    try:
        body = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise RpcError("cluster message is not JSON") from None
    if type(body) is not dict:
        raise RpcError("cluster message must be an object")
    node = body.get("n")
    if type(node) is not str or not 0 < len(node) <= 64:
        raise RpcError("cluster message needs a node id")
    return body


def _names(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if (
        type(value) is not list
        or len(value) > MAX_TARGET_NAMES
        or not all(type(item) is str and 0 < len(item) <= MAX_NAME_LENGTH for item in value)
    ):
        raise RpcError(f"request field {key!r} must be a list of names")
    return tuple(value)


def _timeout(body: dict[str, Any]) -> float:
    timeout = body.get("t")
    if not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_CALL_TIMEOUT:
        raise RpcError(f"request timeout must be in (0, {MAX_CALL_TIMEOUT:g}] seconds")
    return float(timeout)


def _request_id(body: dict[str, Any]) -> int:
    value = body.get("q", 0)
    if type(value) is not int or not 0 <= value < 2**53:
        raise RpcError("request id must be a non-negative integer")
    return value


def unpack_request(message: bytes, max_size: int) -> Request:
    """Parse and check a request; raises ``RpcError`` when it is not a valid one."""
    body = _load(message, max_size)
    op = body.get("o")
    if op not in OPS:
        raise RpcError("request has an unknown op")
    node = body["n"]
    if op in (HEARTBEAT, BYE):
        return Request(op, node, hello=body.get("hi") is True)
    targets = Targets(_names(body, "r"), _names(body, "c"))
    exclude = Targets(_names(body, "xr"), _names(body, "xc"))
    request = Request(op, node, _request_id(body), targets, exclude)
    if op in (JOIN, LEAVE):
        room = body.get("room")
        if type(room) is not str or not 0 < len(room) <= MAX_NAME_LENGTH:
            raise RpcError("join and leave requests need a room name")
        return Request(op, node, request.id, targets, exclude, room=room)
    if op == DISCONNECT:
        code, reason = body.get("code"), body.get("why")
        if type(code) is not int or not (code == 1000 or 3000 <= code <= 4999):
            raise RpcError("disconnect code must be 1000 or 3000-4999")
        if reason is not None and (type(reason) is not str or len(reason) > MAX_REASON_LENGTH):
            raise RpcError("disconnect reason must be a short string")
        return Request(op, node, request.id, targets, exclude, code=code, reason=reason)
    if op == CALL:
        event = body.get("e")
        if type(event) is not str or not 0 < len(event) <= MAX_EVENT_LENGTH:
            raise RpcError("call request needs an event name")
        timeout = _timeout(body)
        return Request(
            op, node, request.id, targets, exclude, event=event, data=body.get("d"), timeout=timeout
        )
    if op == CANCEL:
        stream = body.get("d")
        valid_id = (type(stream) is int and 0 <= stream < 2**53) or (
            type(stream) is str and 0 < len(stream) <= MAX_STREAM_ID_LENGTH
        )
        if not valid_id or len(targets.clients) != 1 or targets.rooms:
            raise RpcError("a cancel order names one client and one request id")
        return Request(op, node, request.id, targets, exclude, data=stream)
    if op == FETCH and "t" in body:
        return Request(op, node, request.id, targets, exclude, timeout=_timeout(body))
    return request


def pack_replies(node: str, request_id: int, items: Iterable[JSONValue]) -> list[bytes]:
    """A node's answer as reply messages, each under ``MAX_PART_BYTES``.

    An item that could not fit in a part on its own is left out (the caller keeps items
    small: call outcomes with a larger answer are turned into errors first). Never
    returns an empty list: no items is one empty part, so the requester hears back.
    """
    budget = MAX_ITEM_BYTES
    chunks: list[list[bytes]] = [[]]
    size = 0
    for item in items:
        encoded = dumps(item)
        if len(encoded) > budget:
            continue
        if size + len(encoded) + 1 > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(encoded)
        size += len(encoded) + 1
    prefix = orjson.dumps({"n": node, "q": request_id})[:-1]
    return [
        prefix + b',"p":%d,"of":%d,"i":[' % (number, len(chunks)) + b",".join(chunk) + b"]}"
        for number, chunk in enumerate(chunks)
    ]


def unpack_reply(message: bytes, max_size: int) -> Reply:
    """Parse and check one reply part; raises ``RpcError`` when it is not a valid one."""
    body = _load(message, max_size)
    part, parts, items = body.get("p"), body.get("of"), body.get("i")
    request_id = _request_id(body)
    if type(parts) is not int or not 0 < parts <= MAX_PARTS:
        raise RpcError("reply part count out of bounds")
    if type(part) is not int or not 0 <= part < parts or type(items) is not list:
        raise RpcError("reply needs a part number and items")
    return Reply(body["n"], request_id, part, parts, items)


def item_size(item: JSONValue) -> int:
    """Bytes an item takes in a reply part (compare with ``MAX_ITEM_BYTES``)."""
    return len(dumps(item))
