"""``StreamEnd``: how a stream handler ends its stream with a final value.

A handler that ``yield``s (an ``async def`` generator, or a ``def`` generator) is a stream
handler: each item it yields goes to the requester as one stream item, tied to the
request's ``id``, and the stream ends with one end frame. ``return value`` is not allowed
in an async generator, so the final value is yielded instead::

    @SubscribeMessage("prompt")
    async def prompt(self, body: Prompt = MessageBody()):
        async for token in self.llm.stream(body.text):
            yield {"type": "text-delta", "delta": token}
        yield StreamEnd({"tokens": 42})  # the end frame's data; nothing after it is read
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Yielded by a stream handler: the stream ends, with ``value`` as its final data."""

    value: Any = None
