"""What a capability plugs into a connection's life: the runtime's side of the seam.

The runtime calls these at fixed points of every connection of a gateway that has them;
capabilities implement them (``gatewayasgi.recovery.keeper.SessionKeeper`` keeps
sessions beyond their socket). Nothing here knows a capability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gatewayasgi.protocol.resume import Credential, Invalid

if TYPE_CHECKING:
    from gatewayasgi.runtime.connection import Connection


class SessionHooks(Protocol):
    """A connection's life as a capability that keeps sessions sees it.

    ``open`` runs after the handshake guards and before the client is registered;
    ``start`` once it is (before ``on_connection``); then exactly one of ``detach``
    (the socket went away, the session may come back), ``end`` (the session ends now)
    or neither (another connection took the session over); ``release`` always, last.
    """

    async def open(self, client: Connection, credential: Credential | Invalid | None) -> Any:
        """Resume the session ``credential`` names, or start one; what ``start`` needs."""

    async def start(self, client: Connection, opening: Any) -> bool:
        """Tell the client its session and send what it missed; False when it left."""

    async def detach(self, client: Connection) -> None:
        """Keep the session of a socket that went away."""

    async def end(self, client: Connection) -> None:
        """The session ends now."""

    def release(self, client: Connection) -> None:
        """The socket is gone: forget what tied the session to it."""
