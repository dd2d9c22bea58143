"""The gateways of the JS client's MessagePack tests: the ``/ws`` gateway of
``server_app.py`` and the ``/chat`` gateway of ``recovery_app.py``, served to JSON and
MessagePack clients (served by hypercorn from the repo root).

.venv/bin/python -m hypercorn clients.js.test.msgpack_app:app --bind 127.0.0.1:PORT
"""

from __future__ import annotations

from clients.js.test.recovery_app import RecoveryTestGateway
from clients.js.test.server_app import ClientTestGateway
from gatewayasgi import GatewayMiddleware
from gatewayasgi.protocol.msgpack import MessagePack

app = GatewayMiddleware(
    None, gateways=[ClientTestGateway, RecoveryTestGateway], protocols=[MessagePack()]
)
