"""Socket.IO clients for the same gateways: Engine.IO v4 and Socket.IO v5 (``docs/socketio.md``).

``GatewayMiddleware(app, gateways=[...], socketio=SocketIO())`` serves every gateway to
socket.io-client and its kin at ``/socket.io``, beside the native-JSON WebSocket clients.
"""

from gatewayasgi.protocol.socketio import Arguments
from gatewayasgi.socketio.options import SocketIO

__all__ = ["Arguments", "SocketIO"]
