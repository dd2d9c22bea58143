"""Request frames, valid and not, that ``AISDKChat`` must judge as the ``ai`` package's
own ``safeValidateWebSocketChatTransportRequest`` does (``test_validation_parity``
asks the package; ``tests/unit/test_ai.py`` keeps the verdicts without Node)."""

from __future__ import annotations

from typing import Any

SEND: dict[str, Any] = {
    "type": "send",
    "requestId": "r1",
    "id": "chat-1",
    "trigger": "submit-message",
    "headers": {},
    "body": {},
}


def send(*parts: Any, role: str = "user", **extra: Any) -> dict[str, Any]:
    return {**SEND, "messages": [{"id": "m1", "role": role, "parts": list(parts)}], **extra}


def tool(**members: Any) -> dict[str, Any]:
    return {"type": "tool-weather", "toolCallId": "t1", **members}


def dynamic(**members: Any) -> dict[str, Any]:
    return {"type": "dynamic-tool", "toolName": "weather", "toolCallId": "t1", **members}


TEXT = {"type": "text", "text": "hi"}
URL_SOURCE = {"type": "source", "sourceType": "url", "id": "s", "url": "https://x"}

CASES: list[tuple[str, Any, bool]] = [
    # (name, frame, accepted by the ai package)
    ("plain send", send(TEXT), True),
    (
        "regenerate with a message id",
        send(TEXT, trigger="regenerate-message", messageId="m1"),
        True,
    ),
    ("unknown members dropped", {**send({**TEXT, "zzz": 1}), "extra": 1}, True),
    ("metadata null", send(TEXT, metadata=None), True),
    (
        "message metadata null",
        {**SEND, "messages": [{"id": "m", "role": "user", "metadata": None, "parts": [TEXT]}]},
        True,
    ),
    ("an assistant message without parts", send(role="assistant"), True),
    ("a user message without parts", send(), False),
    ("no messages", {**SEND, "messages": []}, False),
    ("messages missing", dict(SEND), False),
    ("a bad role", send(TEXT, role="tool"), False),
    (
        "message id a number",
        {**SEND, "messages": [{"id": 1, "role": "user", "parts": [TEXT]}]},
        False,
    ),
    ("messageId null", send(TEXT, messageId=None), False),
    ("messageId a number", send(TEXT, messageId=3), False),
    ("a bad trigger", send(TEXT, trigger="nope"), False),
    ("headers not strings", send(TEXT, headers={"a": 1}), False),
    ("body an array", send(TEXT, body=[]), False),
    ("body null", send(TEXT, body=None), False),
    ("id missing", {k: v for k, v in send(TEXT).items() if k != "id"}, False),
    ("requestId a number", send(TEXT, requestId=7), False),
    ("type unknown", send(TEXT, type="sned"), False),
    ("not an object", [1, 2], False),
    ("text not a string", send({"type": "text", "text": 5}), False),
    ("text state done", send({**TEXT, "state": "done"}), True),
    ("text state bad", send({**TEXT, "state": "gone"}), False),
    (
        "text citations",
        send({**TEXT, "citations": [{"source": URL_SOURCE, "startIndex": 0}]}),
        True,
    ),
    (
        "citation index negative",
        send({**TEXT, "citations": [{"source": URL_SOURCE, "startIndex": -1}]}),
        False,
    ),
    ("provider metadata", send({**TEXT, "providerMetadata": {"openai": {"x": [1, None]}}}), True),
    ("provider metadata flat", send({**TEXT, "providerMetadata": {"openai": 1}}), False),
    ("an unknown part type", send({"type": "video"}), False),
    ("a part without type", send({"text": "hi"}), False),
    ("reasoning", send({"type": "reasoning", "text": "hm"}, role="assistant"), True),
    ("step start", send({"type": "step-start"}, role="assistant"), True),
    ("file", send({"type": "file", "mediaType": "image/png", "url": "data:x"}), True),
    ("file without url", send({"type": "file", "mediaType": "image/png"}), False),
    (
        "file reference numbers",
        send({"type": "file", "mediaType": "a", "url": "u", "providerReference": {"a": 1}}),
        False,
    ),
    (
        "source document",
        send({"type": "source-document", "sourceId": "s", "mediaType": "a", "title": "t"}),
        True,
    ),
    (
        "source document without title",
        send({"type": "source-document", "sourceId": "s", "mediaType": "a"}),
        False,
    ),
    ("steering", send({"type": "steering-message", "id": "s", "parts": [TEXT]}), True),
    (
        "steering with a step",
        send({"type": "steering-message", "id": "s", "parts": [{"type": "step-start"}]}),
        False,
    ),
    ("custom", send({"type": "custom", "kind": "k"}), True),
    ("data part", send({"type": "data-weather", "data": {"t": 1}}), True),
    ("data part with null data", send({"type": "data-weather", "data": None}), True),
    ("data part without data", send({"type": "data-weather"}), False),
    ("data part id null", send({"type": "data-weather", "data": 1, "id": None}), False),
    (
        "tool input available",
        send(tool(state="input-available", input={"c": "x"}), role="assistant"),
        True,
    ),
    ("tool input missing", send(tool(state="input-available"), role="assistant"), False),
    ("tool input streaming", send(tool(state="input-streaming"), role="assistant"), True),
    (
        "tool input streaming with output",
        send(tool(state="input-streaming", output=1), role="assistant"),
        False,
    ),
    (
        "tool title null",
        send(tool(state="input-available", input=1, title=None), role="assistant"),
        False,
    ),
    (
        "tool output",
        send(tool(state="output-available", input=1, output=2), role="assistant"),
        True,
    ),
    (
        "tool output with errorText",
        send(tool(state="output-available", input=1, output=2, errorText="e"), role="assistant"),
        False,
    ),
    ("tool output error", send(tool(state="output-error", errorText="e"), role="assistant"), True),
    ("tool output error without text", send(tool(state="output-error"), role="assistant"), False),
    ("tool unknown state", send(tool(state="thinking", input=1), role="assistant"), False),
    (
        "tool approval requested",
        send(tool(state="approval-requested", input=1, approval={"id": "a"}), role="assistant"),
        True,
    ),
    (
        "tool approval requested and answered",
        send(
            tool(state="approval-requested", input=1, approval={"id": "a", "approved": True}),
            role="assistant",
        ),
        False,
    ),
    (
        "tool approval responded",
        send(
            tool(
                state="approval-responded",
                input=1,
                approval={"id": "a", "approved": False, "reason": "no"},
            ),
            role="assistant",
        ),
        True,
    ),
    (
        "tool denied",
        send(
            tool(state="output-denied", input=1, approval={"id": "a", "approved": False}),
            role="assistant",
        ),
        True,
    ),
    (
        "tool denied but approved",
        send(
            tool(state="output-denied", input=1, approval={"id": "a", "approved": True}),
            role="assistant",
        ),
        False,
    ),
    (
        "tool output granted",
        send(
            tool(
                state="output-available", input=1, output=1, approval={"id": "a", "approved": True}
            ),
            role="assistant",
        ),
        True,
    ),
    (
        "dynamic tool",
        send(dynamic(state="output-available", input=1, output=2), role="assistant"),
        True,
    ),
    (
        "dynamic tool dynamic false",
        send(dynamic(state="input-available", input=1, dynamic=False), role="assistant"),
        True,
    ),
    (
        "dynamic tool dynamic true",
        send(dynamic(state="input-available", input=1, dynamic=True), role="assistant"),
        False,
    ),
    (
        "dynamic tool without name",
        send(
            {"type": "dynamic-tool", "toolCallId": "t", "state": "input-available", "input": 1},
            role="assistant",
        ),
        False,
    ),
    ("resume", {"type": "resume", "requestId": "r", "id": "c", "headers": {}, "body": {}}, True),
    (
        "resume from a position",
        {
            "type": "resume",
            "requestId": "r",
            "id": "c",
            "lastSequence": 4,
            "headers": {},
            "body": {},
        },
        True,
    ),
    (
        "resume negative",
        {
            "type": "resume",
            "requestId": "r",
            "id": "c",
            "lastSequence": -1,
            "headers": {},
            "body": {},
        },
        False,
    ),
    (
        "resume fraction",
        {
            "type": "resume",
            "requestId": "r",
            "id": "c",
            "lastSequence": 1.5,
            "headers": {},
            "body": {},
        },
        False,
    ),
    ("resume without headers", {"type": "resume", "requestId": "r", "id": "c", "body": {}}, False),
    ("abort", {"type": "abort", "requestId": "r"}, True),
    ("abort without id", {"type": "abort"}, False),
]
