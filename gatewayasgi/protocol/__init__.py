"""Pure protocol layer: no I/O, no event loop, no ASGI callables."""
