"""gatewayasgi serving the benchmark gateway to Socket.IO clients (Engine.IO 4, Socket.IO 5).

The handlers are ``gateway.BenchGateway``'s, unchanged: this subclass only moves them to
Socket.IO's main namespace ``/``, the one python-socketio's app serves and the load
generator's ``socketio`` dialect connects to (``40``). Engine.IO is served at
``/socket.io``, python-socketio's default path.
"""

from __future__ import annotations

from gatewayasgi import GatewayMiddleware, WebSocketGateway
from gatewayasgi.socketio import SocketIO

from . import SOCKETIO_PATH
from .gateway import BenchGateway


@WebSocketGateway("/")
class SocketIOBenchGateway(BenchGateway):
    """``BenchGateway`` on the main namespace: ``io("http://host")`` reaches it."""


app = GatewayMiddleware(gateways=[SocketIOBenchGateway], socketio=SocketIO(path=SOCKETIO_PATH))
