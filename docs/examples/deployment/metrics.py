# main.py -- hypercorn main:app
from fastapi import FastAPI
from prometheus_client import make_asgi_app

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway
from gatewayasgi.metrics import PrometheusMetrics
from gatewayasgi.tracing import OpenTelemetryTracing


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("say")
    async def say(self, text: str = MessageBody("text")) -> dict:
        return {"text": text}


# --8<-- [start:mount]
api = FastAPI()  # or starlette.applications.Starlette()
api.mount("/metrics", make_asgi_app())  # scrape http://host/metrics/
# --8<-- [end:mount]

app = GatewayMiddleware(
    api,
    gateways=[ChatGateway],
    instrumentation=[PrometheusMetrics(), OpenTelemetryTracing()],
)
