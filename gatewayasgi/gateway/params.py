"""Handler parameter markers, used as default values (``data=MessageBody()``)."""

from __future__ import annotations

from typing import Any


class MessageBody:
    """Inject the incoming frame's ``data``, or ``data[key]`` when a key is given.

    Annotate the parameter with a pydantic model (or any type pydantic validates)
    to have the payload validated and converted before the handler runs.
    """

    __slots__ = ("key",)

    def __init__(self, key: str | None = None) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"MessageBody({self.key!r})" if self.key is not None else "MessageBody()"


class ConnectedSocket:
    """Inject the connection (the client) that sent the frame."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ConnectedSocket()"


def is_marker(value: Any) -> bool:
    """True for a ``MessageBody`` or ``ConnectedSocket`` default value."""
    return isinstance(value, (MessageBody, ConnectedSocket))
