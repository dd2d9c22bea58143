"""``GatewayMiddleware`` -> its AsyncAPI 3.0.0 document, a plain ``dict``.

One channel per gateway (address = namespace), one message per event, a ``receive``
operation per handler (with a ``reply`` when it answers) and a ``send`` operation per
event declared with ``@Emits``, plus the protocol's own error and ``$session`` frames.
The output depends only on the gateways: the same app gives the same document.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

from gatewayasgi.asyncapi import frames
from gatewayasgi.asyncapi.schemas import SchemaRegistry, is_any
from gatewayasgi.dispatch.handler import HandlerDescription
from gatewayasgi.dispatch.table import GatewayTable
from gatewayasgi.gateway.decorators import EmitDeclaration, declared_emits
from gatewayasgi.recovery import Recovery

ASYNCAPI_VERSION = "3.0.0"
WS_BINDING_VERSION = "0.1.0"
ERROR_KEY = "error"
SESSION_KEY = "session"
GAP_KEY = "gap"
_COMPONENT = {
    ERROR_KEY: "gatewayasgi.error",
    SESSION_KEY: "gatewayasgi.session",
    GAP_KEY: "gatewayasgi.gap",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")


def asyncapi_document(
    middleware: Any,
    *,
    title: str | None = None,
    version: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every gateway ``middleware`` serves.

    ``title`` and ``version`` default to the wrapped app's (FastAPI sets both), else
    ``"gatewayasgi"`` and ``"0.1.0"``.
    """
    registry = SchemaRegistry()
    tables: list[GatewayTable] = sorted(middleware.tables, key=lambda t: t.meta.namespace)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    recovering = gapping = False
    brokered = getattr(middleware, "backplane", None) is not None
    for table, channel_id in zip(tables, _unique(table.name for table in tables), strict=True):
        recovery = _recovery_on(middleware, table)
        recovering = recovering or recovery
        # Behind a broker, a gateway without recovery tells of lost frames ($gap).
        gap = brokered and not recovery
        gapping = gapping or gap
        builder = _Gateway(table, channel_id, registry, recovery, gap)
        channels[channel_id] = builder.channel
        operations.update(builder.operations)
    registry.resolve()
    messages = {_COMPONENT[ERROR_KEY]: frames.ERROR_MESSAGE}
    if recovering:
        messages[_COMPONENT[SESSION_KEY]] = frames.SESSION_MESSAGE
    if gapping:
        messages[_COMPONENT[GAP_KEY]] = frames.GAP_MESSAGE
    app = getattr(middleware, "app", None)
    info: dict[str, Any] = {
        "title": title or _text(getattr(app, "title", None)) or "gatewayasgi",
        "version": version or _text(getattr(app, "version", None)) or "0.1.0",
    }
    if description:
        info["description"] = description
    document = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {
            "schemas": dict(sorted(registry.definitions.items())),
            "messages": messages,
        },
    }
    return copy.deepcopy(document)  # shares nothing with this module's constants


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _recovery_on(middleware: Any, table: GatewayTable) -> bool:
    chosen = table.meta.recovery
    if chosen is None:
        chosen = getattr(middleware, "recovery", None)
    return isinstance(chosen, Recovery)


def _unique(names: Iterable[str]) -> list[str]:
    """``names`` made safe as document keys and distinct (``Name``, ``Name_2``...)."""
    taken: set[str] = set()
    result = []
    for name in names:
        base = _UNSAFE.sub("_", name) or "_"
        key, count = base, 1
        while key in taken:
            count += 1
            key = f"{base}_{count}"
        taken.add(key)
        result.append(key)
    return result


def _doc_fields(doc: str | None) -> dict[str, str]:
    if not doc:
        return {}
    summary = doc.strip().split("\n\n", 1)[0].replace("\n", " ")
    fields = {"summary": summary}
    if doc.strip() != summary:
        fields["description"] = doc.strip()
    return fields


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)}


class _Gateway:
    """Builds one gateway's channel and operations."""

    def __init__(
        self,
        table: GatewayTable,
        channel_id: str,
        registry: SchemaRegistry,
        recovery: bool,
        gap: bool,
    ) -> None:
        self.table, self.channel_id, self.registry = table, channel_id, registry
        self.recovery = recovery
        self.messages: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.streams = False
        """Some handler streams: the channel takes ``$cancel`` too."""
        self._taken = {ERROR_KEY, *([SESSION_KEY] if recovery else []), *([GAP_KEY] if gap else [])}
        handlers = sorted(
            (h.description for h in table.handlers.values() if h.description is not None),
            key=lambda d: d.event,
        )
        for handler in handlers:
            self._receive(handler)
        if self.streams:
            self._cancel()
        for event, declaration in sorted(declared_emits(table.cls).items()):
            self._send(self._key(event), self._emitted(declaration), declaration.description)
        self.messages[ERROR_KEY] = _ref("components", "messages", _COMPONENT[ERROR_KEY])
        self._send(ERROR_KEY, None, None)
        if recovery:
            self.messages[SESSION_KEY] = _ref("components", "messages", _COMPONENT[SESSION_KEY])
            self._send(SESSION_KEY, None, None)
        if gap:
            self.messages[GAP_KEY] = _ref("components", "messages", _COMPONENT[GAP_KEY])
            self._send(GAP_KEY, None, None)
        self.channel = self._channel()

    def _key(self, event: str, suffix: str = "") -> str:
        base = (_UNSAFE.sub("_", event) or "_") + suffix
        key, count = base, 1
        while key in self._taken:
            count += 1
            key = f"{base}_{count}"
        self._taken.add(key)
        return key

    def _message_ref(self, key: str) -> dict[str, str]:
        return _ref("channels", self.channel_id, "messages", key)

    def _channel_ref(self) -> dict[str, str]:
        return _ref("channels", self.channel_id)

    # -- client -> server -------------------------------------------------------

    def _receive(self, handler: HandlerDescription) -> None:
        key = self._key(handler.event)
        data, required = self._request_data(handler)
        self.messages[key] = {
            "name": handler.event,
            "title": handler.event,
            **_doc_fields(handler.doc),
            "payload": frames.envelope(
                frames.event_name(handler.event), data, data_required=required
            ),
            "correlationId": frames.CORRELATION,
        }
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": self._channel_ref(),
            "title": handler.qualname,
            **_doc_fields(handler.doc),
            "messages": [self._message_ref(key)],
        }
        if handler.guards:
            operation["x-gatewayasgi-guards"] = list(handler.guards)
        replies = [self._message_ref(ERROR_KEY)]
        if handler.streams:
            keys = []
            for suffix, message in self._stream_replies(handler):
                keys.append(self._key(handler.event, suffix))
                self.messages[keys[-1]] = message
            replies[:0] = [self._message_ref(stream_key) for stream_key in keys]
            self.streams = True
        elif handler.returns is not type(None):
            reply_key = self._key(handler.event, ".reply")
            self.messages[reply_key] = self._reply(handler)
            replies.insert(0, self._message_ref(reply_key))
        operation["reply"] = {"channel": self._channel_ref(), "messages": replies}
        self.operations[f"{self.channel_id}.receive.{key}"] = operation

    def _request_data(self, handler: HandlerDescription) -> tuple[dict[str, Any], bool]:
        """The schema of the frame's ``data`` and whether the frame must carry it."""
        body = handler.body
        if body is not None and not is_any(body.annotation):
            whole = self.registry.schema(body.annotation, "validation")
            return whole, not self.registry.accepts_none(body.annotation)
        fields = handler.body_fields
        if not fields:
            return {}, False
        required = sorted(
            key for key, annotation in fields.items() if not self.registry.accepts_none(annotation)
        )
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                key: self.registry.schema(annotation, "validation")
                for key, annotation in sorted(fields.items())
            },
        }
        if required:
            schema["required"] = required
        return schema, bool(required)

    def _cancel(self) -> None:
        """``$cancel``: the client ends the stream answering its request ``id``."""
        key = self._key("$cancel")
        self.messages[key] = {
            "name": "$cancel",
            "title": "$cancel",
            "summary": "Ends the stream that answers the request with this id.",
            "payload": {
                "type": "object",
                "properties": {"event": frames.event_name("$cancel"), "id": frames.FRAME_ID},
                "required": ["event", "id"],
            },
            "correlationId": frames.CORRELATION,
        }
        self.operations[f"{self.channel_id}.receive.{key}"] = {
            "action": "receive",
            "channel": self._channel_ref(),
            "title": "$cancel",
            "messages": [self._message_ref(key)],
        }

    def _stream_replies(self, handler: HandlerDescription) -> list[tuple[str, dict[str, Any]]]:
        """A stream's frames: its items (``seq`` from 1) and its one end."""
        event = frames.event_name(handler.event)
        item: dict[str, Any] = (
            {} if handler.item is None else self.registry.schema(handler.item, "serialization")
        )
        sequence = {"type": "integer", "minimum": 1, "description": "The item's place, from 1."}
        item_payload = frames.envelope(event, item, data_required=True, extra={"seq": sequence})
        item_payload["required"] = ["event", "data", "id", "seq"]
        end_extra = {
            "end": {"const": True},
            "cancelled": {"type": "boolean", "description": "Present when it was cancelled."},
        }
        end_payload = frames.envelope(event, {}, data_required=True, extra=end_extra)
        end_payload["required"] = ["event", "data", "id", "end"]
        return [
            (
                ".item",
                {
                    "name": f"{handler.event}.item",
                    "title": f"{handler.event} (stream item)",
                    "summary": f"One item of the stream answering {handler.event}.",
                    "payload": item_payload,
                    "correlationId": frames.CORRELATION,
                },
            ),
            (
                ".end",
                {
                    "name": f"{handler.event}.end",
                    "title": f"{handler.event} (stream end)",
                    "summary": (
                        f"The end of the stream answering {handler.event}: the value of a "
                        "yielded StreamEnd (or null), or cancelled."
                    ),
                    "payload": end_payload,
                    "correlationId": frames.CORRELATION,
                },
            ),
        ]

    def _reply(self, handler: HandlerDescription) -> dict[str, Any]:
        if handler.returns is None:
            # Unannotated: any value, and a ``{"event", "data"}`` dict answers under its own
            # event, so neither is known.
            event: dict[str, Any] = {"type": "string"}
            data: dict[str, Any] = {}
        else:
            event = frames.event_name(handler.event)
            data = self.registry.schema(handler.returns, "serialization")
        return {
            "name": handler.event,
            "title": f"{handler.event} (reply)",
            "summary": f"The answer to {handler.event}, with the request's id.",
            "payload": frames.envelope(event, data, data_required=True),
            "correlationId": frames.CORRELATION,
        }

    # -- server -> client -------------------------------------------------------

    def _emitted(self, declaration: EmitDeclaration) -> dict[str, Any]:
        data = self.registry.schema(declaration.payload, "serialization")
        extra = {"offset": frames.OFFSET} if self.recovery else None
        message: dict[str, Any] = {
            "name": declaration.event,
            "title": declaration.event,
            **_doc_fields(declaration.description),
            "payload": frames.envelope(
                frames.event_name(declaration.event), data, data_required=True, extra=extra
            ),
        }
        return message

    def _send(self, key: str, message: Mapping[str, Any] | None, doc: str | None) -> None:
        if message is not None:
            self.messages[key] = dict(message)
        operation: dict[str, Any] = {
            "action": "send",
            "channel": self._channel_ref(),
            **_doc_fields(doc),
            "messages": [self._message_ref(key)],
        }
        self.operations[f"{self.channel_id}.send.{key}"] = operation

    # -- the channel --------------------------------------------------------------

    def _channel(self) -> dict[str, Any]:
        meta, cls = self.table.meta, self.table.cls
        channel: dict[str, Any] = {"address": meta.namespace, "title": cls.__name__}
        own_doc = cls.__dict__.get("__doc__")  # not a base class's (OnGatewayInit...)
        channel.update(_doc_fields(inspect.cleandoc(own_doc) if own_doc else None))
        channel["messages"] = dict(sorted(self.messages.items()))
        parameters = _PARAM.findall(meta.namespace)
        if parameters:
            channel["parameters"] = {
                name: {"description": f"The `{name}` path segment (client.path_params)."}
                for name in parameters
            }
        binding: dict[str, Any] = {"method": "GET", "bindingVersion": WS_BINDING_VERSION}
        if meta.subprotocols or self.recovery:
            offered = ", ".join(f"`{name}`" for name in meta.subprotocols)
            text = f"One of {offered}. " if offered else ""
            binding["headers"] = {
                "type": "object",
                "properties": {
                    "Sec-WebSocket-Protocol": {
                        "type": "string",
                        "description": text + (frames.RESUME_PROTOCOL if self.recovery else ""),
                    }
                },
            }
        channel["bindings"] = {"ws": binding}
        if self.table.handshake_guards:
            channel["x-gatewayasgi-handshake-guards"] = [
                type(guard).__name__ for guard in self.table.handshake_guards
            ]
        return channel
