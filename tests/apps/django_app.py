"""A real Django ASGI app (``get_asgi_application()``) with a gateway in front.

Django's ASGI handler serves HTTP only: it raises on the ``lifespan`` scope (and on
``websocket``). Its views push to gateway clients through the gateway's server. Served in
worker processes by ``tests.workers.start_node`` (``tests.apps.django_app:app``, one
``RedisBroker`` each: ``GATEWAYASGI_TEST_REDIS_URL``), and in the test's own loop by
``build(broker)``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
    )
    django.setup()

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayInit,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import Broker, RedisBroker

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))


@WebSocketGateway("/news")
class NewsGateway(OnGatewayInit):
    def __init__(self) -> None:
        self.initialised = False

    def after_init(self, server: Any) -> None:
        self.initialised = True

    @SubscribeMessage("follow")
    async def follow(
        self, topic: str = MessageBody("topic"), client: Any = ConnectedSocket()
    ) -> Any:
        await self.server.join(client, topic)
        return {"event": "following", "data": {"topic": topic, "node": NODE}}


served: list[GatewayMiddleware] = []
"""The middlewares built around ``django_app``; views use the last one's gateway."""


def _gateway() -> NewsGateway:
    gateway: NewsGateway = served[-1].get(NewsGateway)
    return gateway


async def state(request: HttpRequest) -> HttpResponse:
    """``GET /state``: this node, and whether the gateway's ``after_init`` ran."""
    return JsonResponse({"node": NODE, "initialised": _gateway().initialised})


async def publish(request: HttpRequest) -> HttpResponse:
    """``POST /publish`` ``{"topic", "text"}``: an emit to the topic's room, on every node."""
    body = json.loads(request.body)
    server = _gateway().server
    sent = await server.to(body["topic"]).emit("news", {"text": body["text"], "by": NODE})
    return JsonResponse({"node": NODE, "local": sent})


urlpatterns = [path("state", state), path("publish", publish)]

django_app = get_asgi_application()


def build(broker: Broker | None = None) -> GatewayMiddleware:
    """The Django app behind a new ``GatewayMiddleware`` (the views use the newest)."""
    middleware = GatewayMiddleware(django_app, gateways=[NewsGateway], broker=broker)
    served.append(middleware)
    return middleware


def _worker_app() -> GatewayMiddleware:
    url = os.environ.get("GATEWAYASGI_TEST_REDIS_URL")
    if url is None:
        return build()
    return build(RedisBroker(url, reconnect_delay=0.05, max_reconnect_delay=1.0))


app = _worker_app()
