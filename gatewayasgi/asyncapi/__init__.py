"""AsyncAPI 3.0 from the gateways, and TypeScript client types from that document.

``asyncapi_document(middleware)`` describes every gateway a ``GatewayMiddleware`` serves;
``client_types(document)`` turns it into the event maps ``@gatewayasgi/client`` accepts.
``gatewayasgi asyncapi module:app`` and ``gatewayasgi generate client-types module:app``
run them from the command line, and ``GatewayMiddleware(..., asyncapi_url=...)`` serves
the document over HTTP.
"""

from gatewayasgi.asyncapi.document import ASYNCAPI_VERSION, asyncapi_document
from gatewayasgi.asyncapi.typescript import client_types

__all__ = [
    "ASYNCAPI_VERSION",
    "asyncapi_document",
    "client_types",
]
