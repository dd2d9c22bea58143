"""The benchmark gateway served to JSON and MessagePack clients (``protocols=[MessagePack()]``)."""

from __future__ import annotations

from gatewayasgi import GatewayMiddleware
from gatewayasgi.protocol.msgpack import MessagePack

from .gateway import BenchGateway

app = GatewayMiddleware(gateways=[BenchGateway], protocols=[MessagePack()])
