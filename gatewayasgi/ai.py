"""The AI SDK's ``WebSocketChatTransport``, served by a gateway: ``AISDKChat``.

The ``ai`` npm package (version 7) ships ``WebSocketChatTransport``, a ``ChatTransport``
for ``useChat`` that multiplexes chat streams over one WebSocket and defines its wire
protocol. ``AISDKChat`` is that protocol as a ``WireProtocol``; a gateway declared with
it serves the transport with no client code of ours::

    from gatewayasgi.ai import AISDKChat, ChatRequest, text_chunks

    @WebSocketGateway("/ai", protocol=AISDKChat())
    class Assistant:
        @SubscribeMessage("send")
        async def send(self, request: ChatRequest = MessageBody()):
            async for chunk in text_chunks(model.stream(request.messages)):
                yield chunk

What the transport sends, and what the gateway makes of it:

``send`` (``requestId``, chat ``id``, ``trigger``, ``messageId``, ``messages``,
``headers``, ``body``, ``metadata``)
    validated as strictly as the package's own ``safeValidateWebSocketChatTransportRequest``
    (``ChatRequest``, pydantic models of every ``UIMessage`` part), then handled as a
    request of event ``"send"`` with id ``requestId``, keyed by the chat ``id``: the
    handler's ``MessageBody()`` is the ``ChatRequest``. It must be a stream handler (one
    that yields ``UIMessageChunk`` dicts).
``abort`` (``requestId``)
    cancels that stream (``$cancel``): the generator is closed at its current ``await``.
``resume`` (``requestId``, chat ``id``, ``lastSequence``)
    re-attaches to the chat's stream (``$attach`` with the chat ``id`` as the key), from
    ``lastSequence + 1``, or from the start when it is omitted (the transport's
    ``resumeStreamIsReplay``); the frame's data is the ``ResumeRequest``.

What the gateway sends: ``start`` before a stream's first chunk; ``chunk`` (``requestId``,
``sequence`` from 0, ``chunk``) for each item; ``end`` (after the last one, after a
cancel, or as the answer to a handler that returned instead of yielding); ``error`` with
``errorText`` (bounded); ``no-active`` when a ``resume`` names no stream, or one the
gateway's ``can_attach`` does not let this client re-attach to (without ``can_attach``,
every ``resume`` is answered ``no-active``). With a Redis broker, a ``resume`` reaches a
chat whose stream runs in another worker process (``runtime.keyed_streams``). The transport
ignores frames whose ``requestId`` it does not know: emits and errors that answer no
request carry ``"requestId": ""``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from gatewayasgi._types import JSONValue
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.codec import CANCEL_EVENT, Frame, FrameError

__all__ = [
    "AISDKChat",
    "AbortRequest",
    "ChatRequest",
    "ResumeRequest",
    "UIMessage",
    "text_chunks",
]

# -- the transport's requests, as pydantic models ------------------------------------


class _Zod(BaseModel):
    """A zod ``z.object``: strict types, unknown keys dropped, an optional member absent
    or of its type (never ``null``, unless it is ``unknown``), and the members declared
    ``z.optional(z.never())`` absent."""

    model_config = ConfigDict(strict=True, extra="ignore")

    _absent: ClassVar[frozenset[str]] = frozenset()
    """Members that must not be present at all (``z.optional(z.never())``)."""
    _not_null: ClassVar[frozenset[str]] = frozenset()
    """Optional members whose type is not ``unknown``: ``null`` is not one of them."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._not_null = frozenset(
            name
            for name, info in cls.model_fields.items()
            if not info.is_required() and info.annotation is not Any
        )

    @model_validator(mode="before")
    @classmethod
    def _zod_members(cls, data: Any) -> Any:
        if type(data) is dict:
            for name in cls._absent:
                if name in data:
                    raise ValueError(f"{name} must be absent")
            for name in cls._not_null:
                if name in data and data[name] is None:
                    raise ValueError(f"{name} must not be null")
        return data


ProviderMetadata = dict[str, dict[str, Any]]
ToolMetadata = dict[str, Any]
NonNegative = Annotated[int, Field(ge=0)]
StepState = Literal["streaming", "done"]


class UrlSource(_Zod):
    type: Literal["source"]
    sourceType: Literal["url"]
    id: str
    url: str
    title: str | None = None
    providerMetadata: ProviderMetadata | None = None


class DocumentSource(_Zod):
    type: Literal["source"]
    sourceType: Literal["document"]
    id: str
    mediaType: str
    title: str
    filename: str | None = None
    providerMetadata: ProviderMetadata | None = None


class Citation(_Zod):
    source: Annotated[UrlSource | DocumentSource, Field(discriminator="sourceType")]
    startIndex: NonNegative | None = None
    endIndex: NonNegative | None = None
    citedText: str | None = None


class TextUIPart(_Zod):
    type: Literal["text"]
    text: str
    citations: list[Citation] | None = None
    state: StepState | None = None
    providerMetadata: ProviderMetadata | None = None


class ReasoningUIPart(_Zod):
    type: Literal["reasoning"]
    id: str | None = None
    text: str
    state: StepState | None = None
    providerMetadata: ProviderMetadata | None = None


class CustomContentUIPart(_Zod):
    type: Literal["custom"]
    kind: str
    providerMetadata: ProviderMetadata | None = None


class SourceUrlUIPart(_Zod):
    type: Literal["source-url"]
    sourceId: str
    url: str
    title: str | None = None
    providerMetadata: ProviderMetadata | None = None


class SourceDocumentUIPart(_Zod):
    type: Literal["source-document"]
    sourceId: str
    mediaType: str
    title: str
    filename: str | None = None
    providerMetadata: ProviderMetadata | None = None


class FileUIPart(_Zod):
    type: Literal["file"]
    mediaType: str
    filename: str | None = None
    url: str
    providerReference: dict[str, str] | None = None
    providerMetadata: ProviderMetadata | None = None


class ReasoningFileUIPart(_Zod):
    type: Literal["reasoning-file"]
    mediaType: str
    url: str
    providerMetadata: ProviderMetadata | None = None


class SteeringText(_Zod):
    type: Literal["text"]
    text: str
    providerMetadata: ProviderMetadata | None = None


class SteeringFile(_Zod):
    type: Literal["file"]
    mediaType: str
    filename: str | None = None
    url: str
    providerReference: dict[str, str] | None = None
    providerMetadata: ProviderMetadata | None = None


class SteeringMessageUIPart(_Zod):
    type: Literal["steering-message"]
    id: str
    parts: list[Annotated[SteeringText | SteeringFile, Field(discriminator="type")]]


class StepStartUIPart(_Zod):
    type: Literal["step-start"]


StaticUIPart = Annotated[
    TextUIPart
    | ReasoningUIPart
    | CustomContentUIPart
    | SourceUrlUIPart
    | SourceDocumentUIPart
    | FileUIPart
    | ReasoningFileUIPart
    | SteeringMessageUIPart
    | StepStartUIPart,
    Field(discriminator="type"),
]


class DataUIPart(_Zod):
    type: Annotated[str, StringConstraints(pattern=r"^data-")]
    id: str | None = None
    data: Any


class ApprovalRequested(_Zod):
    _absent = frozenset({"approved", "reason"})
    id: str
    descriptor: Any = None
    requestReason: str | None = None
    isAutomatic: bool | None = None
    signature: str | None = None
    inputSchemaInput: Any = None


class ApprovalResponded(_Zod):
    id: str
    approved: bool
    reason: str | None = None
    descriptor: Any = None
    requestReason: str | None = None
    isAutomatic: bool | None = None
    signature: str | None = None
    inputSchemaInput: Any = None


class ApprovalGranted(ApprovalResponded):
    approved: Literal[True]


class ApprovalDenied(ApprovalResponded):
    approved: Literal[False]


class _ToolPart(_Zod):
    type: Annotated[str, StringConstraints(pattern=r"^tool-")]
    toolCallId: str
    title: str | None = None
    toolMetadata: ToolMetadata | None = None
    providerExecuted: bool | None = None
    callProviderMetadata: ProviderMetadata | None = None


class ToolInputStreaming(_ToolPart):
    _absent = frozenset({"output", "errorText", "approval"})
    state: Literal["input-streaming"]
    input: Any = None
    rawInput: str | None = None
    inputEncoding: Literal["json", "text"] | None = None


class ToolInputAvailable(_ToolPart):
    _absent = frozenset({"output", "errorText", "approval"})
    state: Literal["input-available"]
    input: Any


class ToolApprovalRequested(_ToolPart):
    _absent = frozenset({"output", "errorText"})
    state: Literal["approval-requested"]
    input: Any
    approval: ApprovalRequested


class ToolApprovalResponded(_ToolPart):
    _absent = frozenset({"output", "errorText"})
    state: Literal["approval-responded"]
    input: Any
    approval: ApprovalResponded


class ToolOutputAvailable(_ToolPart):
    _absent = frozenset({"errorText"})
    state: Literal["output-available"]
    input: Any
    output: Any
    resultProviderMetadata: ProviderMetadata | None = None
    preliminary: bool | None = None
    approval: ApprovalGranted | None = None


class ToolOutputError(_ToolPart):
    _absent = frozenset({"output"})
    state: Literal["output-error"]
    input: Any = None
    rawInput: Any = None
    errorText: str
    resultProviderMetadata: ProviderMetadata | None = None
    approval: ApprovalGranted | None = None


class ToolOutputDenied(_ToolPart):
    _absent = frozenset({"output", "errorText"})
    state: Literal["output-denied"]
    input: Any
    approval: ApprovalDenied


ToolUIPart = Annotated[
    ToolInputStreaming
    | ToolInputAvailable
    | ToolApprovalRequested
    | ToolApprovalResponded
    | ToolOutputAvailable
    | ToolOutputError
    | ToolOutputDenied,
    Field(discriminator="state"),
]


class _Dynamic(_Zod):
    type: Annotated[str, StringConstraints(pattern=r"^dynamic-tool$")]
    dynamic: Literal[False] | None = None
    toolName: str


class DynamicInputStreaming(_Dynamic, ToolInputStreaming):
    pass


class DynamicInputAvailable(_Dynamic, ToolInputAvailable):
    pass


class DynamicApprovalRequested(_Dynamic, ToolApprovalRequested):
    pass


class DynamicApprovalResponded(_Dynamic, ToolApprovalResponded):
    pass


class DynamicOutputAvailable(_Dynamic, ToolOutputAvailable):
    pass


class DynamicOutputError(_Dynamic, ToolOutputError):
    pass


class DynamicOutputDenied(_Dynamic, ToolOutputDenied):
    pass


DynamicToolUIPart = Annotated[
    DynamicInputStreaming
    | DynamicInputAvailable
    | DynamicApprovalRequested
    | DynamicApprovalResponded
    | DynamicOutputAvailable
    | DynamicOutputError
    | DynamicOutputDenied,
    Field(discriminator="state"),
]


def _part_kind(part: Any) -> str:
    """Which schema a part is validated with, chosen by its ``type`` as the SDK does."""
    kind = part.get("type") if type(part) is dict else getattr(part, "type", None)
    if type(kind) is str:
        if kind.startswith("data-"):
            return "data"
        if kind.startswith("tool-"):
            return "tool"
        if kind == "dynamic-tool":
            return "dynamic-tool"
    return "static"


UIMessagePart = Annotated[
    Union[  # noqa: UP007 (tagged members)
        Annotated[StaticUIPart, Tag("static")],
        Annotated[DataUIPart, Tag("data")],
        Annotated[ToolUIPart, Tag("tool")],
        Annotated[DynamicToolUIPart, Tag("dynamic-tool")],
    ],
    Discriminator(_part_kind),
]


class UIMessage(_Zod):
    """One ``UIMessage`` of the conversation: a system or user message needs a part."""

    id: str
    role: Literal["system", "user", "assistant"]
    metadata: Any = None
    parts: list[UIMessagePart]

    @model_validator(mode="after")
    def _has_parts(self) -> UIMessage:
        if self.role != "assistant" and not self.parts:
            raise ValueError("Message must contain at least one part")
        return self


class ChatRequest(_Zod):
    """The transport's ``send`` request, validated as ``safeValidateWebSocketChatTransport
    Request`` does (unknown members of the request and of its messages dropped)."""

    type: Literal["send"]
    requestId: str
    id: str
    """The chat's id: the key of its stream (a ``resume`` names it)."""
    trigger: Literal["submit-message", "regenerate-message"]
    messageId: str | None = None
    messages: Annotated[list[UIMessage], Field(min_length=1)]
    headers: dict[str, str]
    body: dict[str, Any]
    metadata: Any = None


class ResumeRequest(_Zod):
    """The transport's ``resume`` request: re-attach to chat ``id``'s stream."""

    type: Literal["resume"]
    requestId: str
    id: str
    lastSequence: NonNegative | None = None
    """The last chunk the client has (from 0); ``None``: replay from the start."""
    headers: dict[str, str]
    body: dict[str, Any]
    metadata: Any = None


class AbortRequest(_Zod):
    """The transport's ``abort`` request: stop request ``requestId``'s stream."""

    type: Literal["abort"]
    requestId: str


# -- the protocol -------------------------------------------------------------------

INVALID_FRAME = "Invalid WebSocket chat request frame."
INVALID_ABORT = "Invalid WebSocket chat abort request."
INVALID_SEQUENCE = "Invalid WebSocket chat resume sequence."
INVALID_SEND = "Invalid WebSocket chat send request."
INVALID_MESSAGES = "Invalid UI messages in WebSocket chat request."
"""The messages of the ``ai`` package's own validator."""

MAX_ERROR_TEXT = 512
"""Characters of an ``errorText`` kept: no input makes an error frame grow."""
_MAX_SAFE_INTEGER = 2**53 - 1
SEND_EVENT = "send"


def _bounded_error(exc: ValidationError) -> str:
    """``INVALID_MESSAGES`` and where the first error is, bounded."""
    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = ".".join(str(item)[:32] for item in first["loc"][:8])
    return f"{INVALID_MESSAGES[:-1]}: {where}: {first['msg']}"[:MAX_ERROR_TEXT]


def _string_record(value: object) -> bool:
    return type(value) is dict and all(type(item) is str for item in value.values())


class AISDKChat(WireProtocol):
    """The ``ai`` package's ``WebSocketChatTransport`` protocol (see the module).

    ``@WebSocketGateway("/ai", protocol=AISDKChat())`` serves it on the gateway's path,
    to every client of that path. Stateless: one instance may serve several gateways.
    """

    name = "ai-sdk-chat"
    streams = True

    def decode(self, raw: str | bytes) -> Frame:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise FrameError(INVALID_FRAME) from None
        if type(value) is not dict or type(value.get("type")) is not str:
            raise FrameError(INVALID_FRAME, self._request_id(value))
        kind = value["type"]
        request_id = value.get("requestId")
        if kind == "abort":
            if type(request_id) is not str:
                raise FrameError(INVALID_ABORT)
            return tuple.__new__(Frame, (CANCEL_EVENT, None, request_id))
        answer_to = self._request_id(value)
        if (
            type(request_id) is not str
            or type(value.get("id")) is not str
            or not _string_record(value.get("headers"))
            or type(value.get("body")) is not dict
        ):
            raise FrameError(INVALID_FRAME, answer_to)
        if len(request_id) > codec.MAX_ID_LENGTH:
            raise FrameError(codec.ID_TOO_LONG)
        if kind == "resume":
            last = value.get("lastSequence")
            if last is not None and (type(last) is not int or not 0 <= last <= _MAX_SAFE_INTEGER):
                raise FrameError(INVALID_SEQUENCE, request_id)
            if "lastSequence" in value and last is None:
                raise FrameError(INVALID_SEQUENCE, request_id)
            resume = ResumeRequest.model_validate(value)
            # The runtime counts items from 1 and ``after`` is the last one the client
            # has (0: none); the transport counts chunks from 0.
            after = 0 if last is None else last + 1
            return codec.stream_frame(codec.ATTACH_EVENT, resume, request_id, value["id"], after)
        message_id = value.get("messageId", "")
        if (
            kind != SEND_EVENT
            or value.get("trigger") not in ("submit-message", "regenerate-message")
            or type(message_id) is not str
        ):
            raise FrameError(INVALID_SEND, request_id)
        try:
            request = ChatRequest.model_validate(value)
        except ValidationError as exc:
            raise FrameError(_bounded_error(exc), request_id) from None
        return codec.stream_frame(SEND_EVENT, request, request_id, value["id"])

    @staticmethod
    def _request_id(value: object) -> str | None:
        """The ``requestId`` an error about ``value`` can answer, when it has one."""
        if type(value) is not dict:
            return None
        request_id = value.get("requestId")
        if type(request_id) is str and len(request_id) <= codec.MAX_ID_LENGTH:
            return request_id
        return None

    @staticmethod
    def _frame(kind: str, frame_id: str | int | None, **members: Any) -> str:
        request_id = "" if frame_id is None else str(frame_id)
        return codec.dumps({"type": kind, "requestId": request_id, **members}).decode()

    def encode_reply(self, event: str, result: Any, frame_id: str | int | None) -> str | None:
        # The transport has no reply: a request a handler answered by returning ends.
        return None if frame_id is None else self._frame("end", frame_id)

    def encode_error(
        self, message: str, frame_id: str | int | None = None, details: dict[str, Any] | None = None
    ) -> str:
        if message == codec.STREAM_ATTACH_REFUSED and frame_id is not None:
            # A ``resume`` the gateway's ``can_attach`` refused (or that has no
            # ``can_attach``) is told what an unknown chat is told: the transport's
            # ``reconnectToStream`` resolves to ``null``, and a refusal does not say
            # whether the chat exists.
            return self._frame("no-active", frame_id)
        return self._frame("error", frame_id, errorText=message[:MAX_ERROR_TEXT])

    def encode_emit(self, event: str, data: JSONValue) -> str:
        # Ignored by the transport (it knows no request ""); other readers see the event.
        return self._frame("emit", None, event=event, data=data)

    def transcode(self, frame: Payload) -> str:
        canonical = orjson.loads(frame)
        members = {"event": canonical.get("event"), "data": canonical.get("data")}
        if "offset" in canonical:
            members["offset"] = canonical["offset"]
        return self._frame("emit", None, **members)

    def with_offset(self, frame: str | bytes, offset: str) -> str:
        text = frame if isinstance(frame, str) else frame.decode()
        return f'{text[:-1]},"offset":"{offset}"}}'

    def encode_stream_start(self, event: str, frame_id: str | int) -> str:
        return self._frame("start", frame_id)

    def encode_stream_item(self, event: str, item: Any, frame_id: str | int, sequence: int) -> str:
        return self._frame("chunk", frame_id, sequence=sequence - 1, chunk=item)

    def encode_stream_end(
        self, event: str, value: Any, frame_id: str | int, *, cancelled: bool = False
    ) -> str:
        # The transport's end carries nothing: a StreamEnd's value has no place here.
        return self._frame("end", frame_id)

    def encode_stream_missing(self, event: str, frame_id: str | int) -> str:
        return self._frame("no-active", frame_id)

    def carrier(self, raw: str | bytes) -> Mapping[str, str] | None:
        return None


# -- text as UIMessageChunk items ---------------------------------------------------

GENERIC_ERROR = "An error occurred."


async def text_chunks(
    text: AsyncIterable[str],
    *,
    message_id: str | None = None,
    text_id: str = "text-1",
    metadata: JSONValue = None,
    on_error: Callable[[Exception], str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """A plain async iterator of text as ``UIMessageChunk`` dicts, for a handler to relay::

        async for chunk in text_chunks(model.stream(prompt)):
            yield chunk

    ``start`` (with ``messageId`` and ``messageMetadata`` when given), ``text-start``, a
    ``text-delta`` per non-empty piece, ``text-end`` and ``finish``. An exception of the
    iterator ends it with one ``error`` chunk instead of ``text-end`` and ``finish``; its
    ``errorText`` is ``on_error(exc)``, or ``"An error occurred."`` (an exception's text
    may hold what a browser should not see). Closing this iterator closes ``text``.
    """
    start: dict[str, Any] = {"type": "start"}
    if message_id is not None:
        start["messageId"] = message_id
    if metadata is not None:
        start["messageMetadata"] = metadata
    yield start
    yield {"type": "text-start", "id": text_id}
    try:
        async for piece in text:
            if type(piece) is not str:
                raise TypeError(f"text_chunks reads str, got {type(piece).__name__}")
            if piece:
                yield {"type": "text-delta", "id": text_id, "delta": piece}
    except Exception as exc:
        error_text = GENERIC_ERROR if on_error is None else on_error(exc)
        yield {"type": "error", "errorText": str(error_text)[:MAX_ERROR_TEXT]}
        return
    finally:
        close = getattr(text, "aclose", None)
        if close is not None:
            await close()
    yield {"type": "text-end", "id": text_id}
    yield {"type": "finish", "finishReason": "stop"}
