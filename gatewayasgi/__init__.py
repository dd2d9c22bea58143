"""gatewayasgi: NestJS-style WebSocket gateways as a pure ASGI middleware."""

from gatewayasgi.di import Container
from gatewayasgi.exceptions import (
    ConfigurationError,
    GatewayError,
    MissingProviderError,
    WsException,
)
from gatewayasgi.gateway.decorators import (
    Injectable,
    OnGatewayConnection,
    OnGatewayDisconnect,
    OnGatewayInit,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
)
from gatewayasgi.gateway.guards import BaseGuard, ExecutionContext, WsArgumentsHost
from gatewayasgi.gateway.params import ConnectedSocket, MessageBody
from gatewayasgi.runtime.connection import Connection
from gatewayasgi.runtime.middleware import GatewayMiddleware
from gatewayasgi.runtime.outbox import Overflow
from gatewayasgi.runtime.server import WebSocketServer

__all__ = [
    "BaseGuard",
    "ConfigurationError",
    "ConnectedSocket",
    "Connection",
    "Container",
    "ExecutionContext",
    "GatewayError",
    "GatewayMiddleware",
    "Injectable",
    "MessageBody",
    "MissingProviderError",
    "OnGatewayConnection",
    "OnGatewayDisconnect",
    "OnGatewayInit",
    "Overflow",
    "SubscribeMessage",
    "UseGuards",
    "WebSocketGateway",
    "WebSocketServer",
    "WsArgumentsHost",
    "WsException",
]

__version__ = "0.1.0"
