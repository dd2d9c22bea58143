"""``SocketIO``: the options of the Socket.IO / Engine.IO endpoint (``docs/socketio.md``)."""

from __future__ import annotations

from dataclasses import dataclass

from gatewayasgi.exceptions import ConfigurationError

TRANSPORTS = ("polling", "websocket")


@dataclass(frozen=True, slots=True)
class SocketIO:
    """Serve the middleware's gateways to Socket.IO clients at ``path``.

    Pass it as ``GatewayMiddleware(..., socketio=SocketIO())``. Times are in seconds.
    """

    path: str = "/socket.io"
    """Where Engine.IO answers (HTTP long-polling and WebSocket), as socket.io's ``path``."""
    ping_interval: float = 25.0
    """The server pings every client this often (Engine.IO ``pingInterval``)."""
    ping_timeout: float = 20.0
    """A client that does not answer a ping within this is closed (``pingTimeout``)."""
    max_payload: int = 1_000_000
    """Largest packet (WebSocket message) or polling request body a client may send."""
    connect_timeout: float = 45.0
    """A connection that joined no namespace within this is closed."""
    transports: tuple[str, ...] = TRANSPORTS
    """Transports accepted: ``"polling"`` (then upgrades) and ``"websocket"``."""
    max_polling_sessions: int = 10_000
    """Sessions on HTTP long-polling held at once; more are refused (503)."""
    max_namespaces: int = 32
    """Namespaces one connection may join at once; more are refused (CONNECT_ERROR)."""
    connect_rate: float = 5.0
    """Namespace CONNECT packets one connection may send per second (each may run a
    gateway's handshake guards), beyond ``connect_burst`` at once; past it the
    connection closes."""
    connect_burst: int = 32
    """CONNECT packets one connection may send at once before ``connect_rate`` applies."""
    connection_state_recovery: bool = False
    """Socket.IO's connection state recovery (socket.io's ``connectionStateRecovery``)
    for the gateways with ``recovery=Recovery(...)``. On: the CONNECT answer carries a
    ``pid`` and every event its offset as a last argument, so socket.io-client resumes
    (``socket.recovered``). Off (the default): Socket.IO clients get plain events, as
    python-socketio's handlers expect (it passes every argument on, the offset too), and
    each connection is a new session; native clients of those gateways keep recovery."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigurationError(f"SocketIO path must start with '/', got {self.path!r}")
        object.__setattr__(self, "path", self.path.rstrip("/") or "/")
        for name in ("ping_interval", "ping_timeout", "connect_timeout", "connect_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigurationError(
                    f"SocketIO {name} must be a positive number, got {value!r}"
                )
        for name in ("max_payload", "max_polling_sessions", "max_namespaces", "connect_burst"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigurationError(f"SocketIO {name} must be a positive int, got {value!r}")
        if type(self.connection_state_recovery) is not bool:
            raise ConfigurationError(
                "SocketIO connection_state_recovery must be True or False, "
                f"got {self.connection_state_recovery!r}"
            )
        transports = tuple(self.transports)
        if not transports or any(name not in TRANSPORTS for name in transports):
            raise ConfigurationError(
                f"SocketIO transports must be among {TRANSPORTS}, got {self.transports!r}"
            )
        object.__setattr__(self, "transports", transports)
