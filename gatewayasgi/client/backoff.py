"""Reconnection delays: capped exponential backoff with full jitter (pure)."""

from __future__ import annotations

import random as _random
from collections.abc import Callable

_MAX_EXPONENT = 64  # 2**64 * any sane base is past any cap: no float overflow for huge attempts


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    random: Callable[[], float] = _random.random,
) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (0 for the first).

    A uniform draw from ``[0, min(cap, base * 2**attempt))``: full jitter spreads a crowd of
    clients that lost the same server over the whole window, so a restarted server is not
    hit by all of them at once (the same rule as the TypeScript client's ``backoffDelay``).
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    ceiling = cap if attempt >= _MAX_EXPONENT else min(cap, base * 2**attempt)
    return random() * max(ceiling, 0.0)
