from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    OnGatewayConnection,
    OnGatewayDisconnect,
    OnGatewayInit,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
)


class PostDto(BaseModel):  # a handler parameter typed with it is validated
    title: str
    body: str = ""


@Injectable
class Repository:  # a provider: built once, injected by type
    def __init__(self) -> None:
        self.posts: list[PostDto] = []

    async def save(self, post: PostDto) -> dict:
        self.posts.append(post)
        return {"id": len(self.posts), "title": post.title}


class TokenGuard(BaseGuard):  # a handshake guard: runs before accept
    def can_activate(self, context) -> bool:
        client = context.switch_to_ws().get_client()
        return client.query_params.get("token") == "secret"


class MemberGuard(BaseGuard):  # runs before every handler of the gateway
    def can_activate(self, context) -> bool:
        client = context.switch_to_ws().get_client()
        return client.headers.get("x-role") in ("member", "admin")


class AdminGuard(BaseGuard):
    def can_activate(self, context) -> bool:
        return context.switch_to_ws().get_client().headers.get("x-role") == "admin"


@WebSocketGateway("/events", subprotocols=["v1.events"], handshake_guards=[TokenGuard])
@UseGuards(MemberGuard)  # every handler of the gateway
class EventsGateway(OnGatewayInit, OnGatewayConnection, OnGatewayDisconnect):
    def __init__(self, repo: Repository):  # resolved from providers
        self.repo = repo

    async def after_init(self, server): ...  # once; self.server is already set
    async def on_connection(self, client): ...  # after accept and registration
    async def on_disconnect(self, client): ...  # whatever ended it; before rooms are released

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody("room"), client=ConnectedSocket()):
        await self.server.join(client, room)
        await self.server.to(room).except_(client).emit("joined", {"id": client.id})
        return {"room": room}  # -> {"event": "join", "data": {...}}

    @SubscribeMessage("post")
    @UseGuards(AdminGuard)
    async def post(self, data: PostDto = MessageBody()):  # pydantic-validated
        return {"event": "posted", "data": await self.repo.save(data)}


app = GatewayMiddleware(gateways=[EventsGateway], providers=[Repository])
