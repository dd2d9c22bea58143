"""A small gateway app for the granian smoke test (granian imports apps by module path)."""

from __future__ import annotations

from typing import Any

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
)


class AdminOnly(BaseGuard):
    def can_activate(self, context: Any) -> bool:
        return bool((context.switch_to_ws().get_data() or {}).get("admin"))


@WebSocketGateway("/granian")
class GranianGateway:
    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> Any:
        return data

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody("room"), client: Any = ConnectedSocket()) -> None:
        await self.server.join(client, room)  # type: ignore[attr-defined]
        await self.server.to(room).emit("joined", {"room": room})  # type: ignore[attr-defined]

    @SubscribeMessage("admin")
    @UseGuards(AdminOnly)
    async def admin(self) -> str:
        return "ok"

    @SubscribeMessage("crash")
    async def crash(self) -> None:
        raise RuntimeError("internal detail")


app = GatewayMiddleware(gateways=[GranianGateway])
