"""Exception filters and interceptors (NestJS-style), through the in-process client."""

from __future__ import annotations

import pytest

from gatewayasgi import (
    BaseWsExceptionFilter,
    Catch,
    ConnectedSocket,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    NestInterceptor,
    SubscribeMessage,
    UseFilters,
    UseInterceptors,
    WebSocketGateway,
    WsException,
)
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.testing import GatewayTestClient, WebSocketClosed

pytestmark = pytest.mark.anyio


class DomainError(Exception):
    pass


@Catch(DomainError)
class DomainFilter(BaseWsExceptionFilter):
    def catch(self, exception, host):
        ws = host.switch_to_ws()
        return {"event": "domain_error", "data": {"reason": str(exception), "on": ws.get_event()}}


@Catch(KeyError)
class ClosingFilter(BaseWsExceptionFilter):
    async def catch(self, exception, host):
        client = host.switch_to_ws().get_client()
        await client.send_json({"event": "bye", "data": None})
        await client.close(4000, "missing key")


@Catch(ValueError)
class PassOnFilter(BaseWsExceptionFilter):
    def catch(self, exception, host):
        return super().catch(exception, host)


@Injectable
class Clock:
    def __init__(self) -> None:
        self.ticks = 0


class Timing(NestInterceptor):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def intercept(self, context, next):
        self.clock.ticks += 1
        result = await next.handle()
        return {"wrapped": result, "handler": context.get_handler().__name__}


class Upper(NestInterceptor):
    async def intercept(self, context, next):
        return str(await next.handle()).upper()


@WebSocketGateway("/ext")
@UseFilters(DomainFilter)
class ExtGateway:
    @SubscribeMessage("domain")
    def domain(self, data=MessageBody()):
        raise DomainError(data)

    @SubscribeMessage("missing")
    @UseFilters(ClosingFilter)
    def missing(self):
        raise KeyError("k")

    @SubscribeMessage("value")
    @UseFilters(PassOnFilter)
    def value(self):
        raise ValueError("secret internals")

    @SubscribeMessage("ws")
    def ws(self):
        raise WsException("nope", code=7)

    @SubscribeMessage("shout")
    @UseInterceptors(Timing, Upper)
    def shout(self, data=MessageBody(), client=ConnectedSocket()):
        return data


async def ws_session():
    app = GatewayMiddleware(gateways=[ExtGateway], providers=[Clock])
    return app, GatewayTestClient(app, lifespan=False)


async def test_filter_chosen_by_catch_type_decides_the_frame() -> None:
    _app, client = await ws_session()
    async with client, client.websocket_connect("/ext") as ws:
        await ws.emit("domain", "bad thing", id=3)
        assert await ws.receive_json() == {
            "event": "domain_error",
            "data": {"reason": "bad thing", "on": "domain"},
            "id": 3,
        }
        await ws.emit("ws")  # not caught by DomainFilter: the default error frame
        assert await ws.receive_json() == {"event": "error", "data": {"message": "nope", "code": 7}}


async def test_handler_filter_may_close_the_connection() -> None:
    _app, client = await ws_session()
    async with client, client.websocket_connect("/ext") as ws:
        await ws.emit("missing")
        assert await ws.receive_json() == {"event": "bye", "data": None}
        with pytest.raises(WebSocketClosed) as info:
            await ws.receive_json()
        assert (info.value.code, info.value.reason) == (4000, "missing key")


async def test_base_filter_falls_back_to_the_default_treatment() -> None:
    _app, client = await ws_session()
    async with client, client.websocket_connect("/ext") as ws:
        await ws.emit("value")
        assert await ws.receive_json() == {
            "event": "error",
            "data": {"message": "Internal server error"},
        }
        with pytest.raises(WebSocketClosed) as info:
            await ws.receive_json()
        assert info.value.code == 1011


async def test_interceptors_wrap_outermost_first_and_are_injected() -> None:
    app, client = await ws_session()
    async with client, client.websocket_connect("/ext") as ws:
        await ws.emit("shout", "hi")
        assert await ws.receive_json() == {
            "event": "shout",
            "data": {"wrapped": "HI", "handler": "shout"},
        }
    assert app.get(Clock).ticks == 1


def test_filter_without_catch_method_is_a_startup_error() -> None:
    @WebSocketGateway("/badfilter")
    @UseFilters(object())
    class Bad:
        @SubscribeMessage("x")
        def x(self): ...

    with pytest.raises(ConfigurationError, match="catch"):
        GatewayMiddleware(gateways=[Bad])
