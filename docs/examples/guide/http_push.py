from fastapi import FastAPI

from gatewayasgi import GatewayMiddleware, WebSocketGateway


@WebSocketGateway("/news")
class NewsGateway:
    pass


api = FastAPI()
app = GatewayMiddleware(api, gateways=[NewsGateway])  # serve `app`


@api.post("/headlines")
async def publish(text: str) -> dict:
    await app.server_for(NewsGateway).emit("headline", {"text": text})  # every client of /news
    return {"sent": True}
