"""gatewayasgi: NestJS-style WebSocket gateways as a pure ASGI middleware."""

from gatewayasgi.backplane.cluster import ClusterBusyError
from gatewayasgi.di import Container
from gatewayasgi.exceptions import (
    ConfigurationError,
    GatewayError,
    MissingProviderError,
    PayloadValidationError,
    WsException,
)
from gatewayasgi.gateway.decorators import (
    Emits,
    Injectable,
    OnGatewayConnection,
    OnGatewayDisconnect,
    OnGatewayInit,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
)
from gatewayasgi.gateway.filters import BaseWsExceptionFilter, Catch, UseFilters
from gatewayasgi.gateway.guards import BaseGuard, ExecutionContext, WsArgumentsHost
from gatewayasgi.gateway.interceptors import CallHandler, NestInterceptor, UseInterceptors
from gatewayasgi.gateway.params import ConnectedSocket, MessageBody
from gatewayasgi.gateway.streams import StreamEnd
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.middleware import GatewayMiddleware
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.recovery import Recovery
from gatewayasgi.runtime.calls import (
    CallClosedError,
    CallDeadlockError,
    CallError,
    CallLimitError,
    CallRejectedError,
    CallTimeoutError,
)
from gatewayasgi.runtime.connection import Connection, ConnectionState
from gatewayasgi.runtime.operations import CallResults, Presence
from gatewayasgi.runtime.room_streams import RoomStream
from gatewayasgi.runtime.server import BroadcastOperator, WebSocketServer
from gatewayasgi.settings import Overflow, Settings

__all__ = [
    "BaseGuard",
    "BaseWsExceptionFilter",
    "BroadcastOperator",
    "CallClosedError",
    "CallDeadlockError",
    "CallError",
    "CallHandler",
    "CallLimitError",
    "CallRejectedError",
    "CallResults",
    "CallTimeoutError",
    "Catch",
    "CloseCode",
    "ClusterBusyError",
    "ConfigurationError",
    "ConnectedSocket",
    "Connection",
    "ConnectionState",
    "Container",
    "Emits",
    "ExecutionContext",
    "GatewayError",
    "GatewayMiddleware",
    "Injectable",
    "Instrumentation",
    "MessageBody",
    "MissingProviderError",
    "NestInterceptor",
    "OnGatewayConnection",
    "OnGatewayDisconnect",
    "OnGatewayInit",
    "Overflow",
    "PayloadValidationError",
    "Presence",
    "Recovery",
    "RoomStream",
    "Settings",
    "StreamEnd",
    "SubscribeMessage",
    "UseFilters",
    "UseGuards",
    "UseInterceptors",
    "WebSocketGateway",
    "WebSocketServer",
    "WsArgumentsHost",
    "WsException",
]

__version__ = "0.1.0"
