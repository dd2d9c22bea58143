from fastapi import FastAPI

from gatewayasgi import GatewayMiddleware, OnGatewayInit, WebSocketGateway, WebSocketServer


class Newsroom:
    """One instance, shared by the HTTP routes and the gateway."""

    server: WebSocketServer | None = None

    async def publish(self, text: str) -> None:
        assert self.server is not None, "the gateway starts with the app's lifespan"
        await self.server.emit("headline", {"text": text})


newsroom = Newsroom()


@WebSocketGateway("/news")
class NewsGateway(OnGatewayInit):
    def __init__(self, newsroom: Newsroom) -> None:  # the instance passed in providers
        self.newsroom = newsroom

    def after_init(self, server: WebSocketServer) -> None:
        self.newsroom.server = server


api = FastAPI()
api.add_middleware(GatewayMiddleware, gateways=[NewsGateway], providers=[newsroom])


@api.post("/headlines")
async def publish(text: str) -> dict:
    await newsroom.publish(text)
    return {"sent": True}
