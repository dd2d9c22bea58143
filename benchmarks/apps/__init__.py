"""One ASGI app per peer, all speaking the benchmark protocol.

Client frames are ``{"event": ..., "data": ...}`` (python-socketio: the same event and
data in Socket.IO framing):

- ``echo``: the server answers ``{"event": "echo", "data": <data>}``.
- ``join`` with a room name: the connection joins it; the server answers ``joined``.
- ``publish`` with ``{"room", "payload"}``: every member of the room gets
  ``{"event": "message", "data": <payload>}``; the publisher gets no reply.
- ``fill`` with ``{"count", "size"}``: the server sends ``count`` frames of ``size``
  bytes to the caller alone (used to fill a stalled client's socket buffers).

Every module exposes ``app``; the websocket path is ``/ws``, or Engine.IO's ``/socket.io``
for the Socket.IO peers (python-socketio and ``gateway_socketio``).
"""

PATH = "/ws"
SOCKETIO_PATH = "/socket.io"
