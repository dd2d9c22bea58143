"""I/O layer: connections, gateway servers and the ASGI middleware."""
