"""``module:attribute`` -> the ``GatewayMiddleware`` inside that ASGI app."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from gatewayasgi.exceptions import ConfigurationError

MAX_DEPTH = 32


def find_middleware(app: Any) -> Any:
    """The ``GatewayMiddleware`` that is ``app`` or that ``app`` wraps.

    Follows ``.app`` links (how ASGI middlewares hold what they wrap) and builds a
    Starlette app's middleware stack when ``add_middleware`` left it unbuilt.
    """
    from gatewayasgi.middleware import GatewayMiddleware

    current = app
    for _ in range(MAX_DEPTH):
        if isinstance(current, GatewayMiddleware):
            return current
        build = getattr(current, "build_middleware_stack", None)
        if callable(build) and getattr(current, "middleware_stack", False) is None:
            current.middleware_stack = build()  # what Starlette does on its first call
        inner = getattr(current, "middleware_stack", None) or getattr(current, "app", None)
        if inner is None or inner is current:
            break
        current = inner
    raise ConfigurationError(f"{app!r} is not a GatewayMiddleware and does not wrap one")


def load_middleware(target: str, app_dir: str = ".") -> Any:
    """Import ``module:attribute`` (``attribute`` may be dotted; ``app`` by default) with
    ``app_dir`` first on ``sys.path``, and return its ``GatewayMiddleware``."""
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise ConfigurationError(f"expected module:app, got {target!r}")
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module = importlib.import_module(module_name)
    value: Any = module
    for part in (attribute or "app").split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(
                f"{module_name} has no attribute {attribute or 'app'!r}"
            ) from None
    return find_middleware(value)
