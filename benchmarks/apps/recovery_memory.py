"""gatewayasgi with session recovery on, history in memory: the benchmark gateway unchanged."""

from __future__ import annotations

from gatewayasgi import GatewayMiddleware, Recovery

from .gateway import BenchGateway

app = GatewayMiddleware(gateways=[BenchGateway], recovery=Recovery())
