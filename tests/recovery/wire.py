"""A recovering client driven by hand with ``websockets``: the wire protocol of
``docs/recovery.md`` itself, with nothing of ``gatewayasgi.client`` in between."""

from __future__ import annotations

import json
from typing import Any

import anyio
import websockets

from tests.servers import TIMEOUT


class Session:
    """A hand-driven recovering client: keeps what ``docs/recovery.md`` says to keep."""

    def __init__(self, address: str, path: str = "/chat") -> None:
        self.address = address
        self.path = path
        self.ws: Any = None
        self.session: dict[str, Any] = {}
        self.positions: dict[str, str] = {}
        """The last offset per partition (``<p>~`` prefix; ``""`` for a plain offset)."""

    @property
    def offset(self) -> str:
        """The position to resume from: the kept offsets joined by ``_``."""
        return "_".join(self.positions[key] for key in sorted(self.positions))

    @offset.setter
    def offset(self, position: str) -> None:
        self.positions = {}
        for item in position.split("_"):
            self.keep(item)

    def keep(self, offset: str) -> None:
        self.positions[offset.partition("~")[0] if "~" in offset else ""] = offset

    async def open(self, resume: bool = False) -> dict[str, Any]:
        protocols = ["gatewayasgi"]
        if resume:
            s = self.session
            protocols.append(
                f"gatewayasgi.resume.{s['id']}.{s['token']}.{s['epoch']}.{self.offset}"
            )
        self.ws = await websockets.connect(
            f"ws://{self.address}{self.path}", subprotocols=protocols, open_timeout=TIMEOUT
        )
        assert self.ws.subprotocol == "gatewayasgi"
        first = await self.recv_raw()
        assert first["event"] == "$session", first
        self.session = first["data"]
        self.offset = self.session["offset"]
        return self.session

    async def recv_raw(self) -> dict[str, Any]:
        with anyio.fail_after(TIMEOUT):
            return json.loads(await self.ws.recv())  # type: ignore[no-any-return]

    async def recv(self) -> dict[str, Any]:
        frame = await self.recv_raw()
        if "offset" in frame:
            self.keep(frame["offset"])
        return frame

    async def request(self, event: str, data: Any, frame_id: int = 1) -> Any:
        await self.ws.send(json.dumps({"event": event, "data": data, "id": frame_id}))
        while True:
            frame = await self.recv()
            if frame.get("id") == frame_id:
                return frame["data"]

    def cut(self) -> None:
        """Drop the TCP connection: no close frame, as a network failure would."""
        self.ws.transport.abort()

    async def talk(self, room: str, count: int, frame_id: int) -> list[tuple[str, Any]]:
        """Send a ``talk`` request (the test apps' handler that emits ``count`` frames to
        ``room`` and to the caller, then replies ``{"done": count}``); the ``(event, data)``
        of every frame that arrived before its reply."""
        await self.ws.send(
            json.dumps({"event": "talk", "data": {"room": room, "count": count}, "id": frame_id})
        )
        before: list[tuple[str, Any]] = []
        while True:
            frame = await self.recv()
            if frame.get("id") == frame_id:
                assert frame["data"] == {"done": count}, frame
                return before
            before.append((frame["event"], frame["data"]))

    async def reply(self, frame_id: int) -> Any:
        """Read (keeping offsets) until the reply to ``frame_id`` arrives."""
        while True:
            frame = await self.recv()
            if frame.get("id") == frame_id:
                return frame["data"]
