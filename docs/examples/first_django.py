# asgi.py of your Django project -- serve with: hypercorn mysite.asgi:app
import django
from django.conf import settings

if not settings.configured:  # in a project, DJANGO_SETTINGS_MODULE does this
    settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="change me")
    django.setup()

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from pydantic import BaseModel, Field

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


class Say(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("say")
    async def say(self, body: Say = MessageBody()) -> dict:
        return {"event": "said", "data": {"text": body.text, "length": len(body.text)}}


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("health", health)]

app = GatewayMiddleware(get_asgi_application(), gateways=[ChatGateway])
