"""The AsyncAPI document as an ASGI endpoint (``GatewayMiddleware(asyncapi_url=...)``)."""

from __future__ import annotations

import json
from typing import Any

from gatewayasgi._types import ASGIApp, Receive, Scope, Send
from gatewayasgi.asyncapi.document import asyncapi_document


def document_endpoint(middleware: Any) -> ASGIApp:
    """An ASGI app answering with ``middleware``'s AsyncAPI document as JSON.

    The document is built here, once: an annotation it cannot describe shows at startup,
    and a request costs one send.
    """
    body = json.dumps(asyncapi_document(middleware), indent=2).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = scope.get("method") == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    return endpoint
