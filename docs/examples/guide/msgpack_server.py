# main.py -- JSON and MessagePack clients of the same gateway: hypercorn main:app
from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway
from gatewayasgi.protocol.msgpack import MessagePack


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("upload")
    async def upload(self, name: str = MessageBody("name"), body: bytes = MessageBody("body")):
        return {"name": name, "size": len(body), "head": body[:4]}  # bytes go out as bytes


app = GatewayMiddleware(gateways=[ChatGateway], protocols=[MessagePack()])
