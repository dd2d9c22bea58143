"""One connection attempt of a client: headers, the offer, and the ``$session`` frame."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WebSocketClosed

from gatewayasgi.client.codecs import JSON_CODEC, Codec
from gatewayasgi.client.errors import ConnectError
from gatewayasgi.client.frames import SESSION_EVENT
from gatewayasgi.client.handshake import (
    HeadersSource,
    is_terminal_close,
    open_websocket,
    resolve_headers,
)
from gatewayasgi.client.recovery import SessionRecovery

ABNORMAL_CLOSURE = 1006
_NEEDS_RECOVERY = "recover=True needs a gateway with recovery=Recovery(...)"


class Connector:
    """Opens the client's WebSockets, each with fresh headers and the current offer."""

    def __init__(
        self,
        url: str,
        headers: HeadersSource,
        subprotocols: tuple[str, ...],
        recovery: SessionRecovery,
        timeout: float,
        max_message_size: int | None,
        codec: Codec = JSON_CODEC,
    ) -> None:
        self.url = url
        self.headers = headers
        self.codec = codec
        if codec.subprotocol is not None:  # offered first, whatever else is
            subprotocols = (codec.subprotocol, *subprotocols)
        self.subprotocols = subprotocols
        self.recovery = recovery
        self.timeout = timeout
        self.max_message_size = max_message_size

    async def attempt(self) -> tuple[ClientConnection, Any]:
        """The open WebSocket, and with recovery the data of its ``$session`` frame (else
        ``None``), each step within ``timeout``. Every failure is a ``ConnectError``."""
        ws = await open_websocket(
            self.url,
            headers=await resolve_headers(self.headers),
            subprotocols=self.recovery.subprotocols(self.subprotocols),
            open_timeout=self.timeout,
            max_size=self.max_message_size,
        )
        spoken = self.codec.subprotocol
        if spoken is not None and ws.subprotocol != spoken:
            await asyncio.shield(ws.close())
            raise ConnectError(
                f"{self.url} does not speak {self.codec.name} (the handshake did not select "
                f"{spoken}): the server needs GatewayMiddleware(..., protocols=[MessagePack()])",
                terminal=True,
            )
        if not self.recovery.enabled:
            return ws, None
        try:
            return ws, await self._session(ws)
        except BaseException:
            await asyncio.shield(ws.close())
            raise

    async def _session(self, ws: ClientConnection) -> Any:
        """The first frame on a gateway with recovery is ``$session`` (docs/recovery.md)."""
        try:
            raw = await asyncio.wait_for(ws.recv(), self.timeout)
        except asyncio.TimeoutError:
            raise ConnectError(
                f"no $session frame within {self.timeout:g} s: {_NEEDS_RECOVERY}"
            ) from None
        except WebSocketClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (ABNORMAL_CLOSURE, "")
            raise ConnectError(
                f"closed before its $session frame (code {code}{': ' if reason else ''}{reason})",
                terminal=is_terminal_close(code),
            ) from exc
        frame = self.codec.decode(raw)
        if frame is None or frame.event != SESSION_EVENT:
            raise ConnectError(
                f"the gateway's first frame was not $session: {_NEEDS_RECOVERY}", terminal=True
            )
        return frame.data
