# main.py -- Socket.IO's connection state recovery too: hypercorn main:app
from fastapi import FastAPI

from gatewayasgi import GatewayMiddleware
from gatewayasgi.socketio import SocketIO

from .socketio_server import ChatGateway

api = FastAPI()
# --8<-- [start:app]
app = GatewayMiddleware(
    api,
    gateways=[ChatGateway],  # @WebSocketGateway("/chat", recovery=Recovery(window=60))
    socketio=SocketIO(connection_state_recovery=True),
)
# --8<-- [end:app]
