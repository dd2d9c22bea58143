"""Per-connection rate limiting: token buckets for frames and for error replies.

Pure data: the caller passes the clock, so this is tested without an event loop.
"""

from __future__ import annotations

ALLOW = 0
"""The frame may be handled."""
REFUSE = 1
"""Drop the frame silently (the client was already told it is limited)."""
REFUSE_AND_TELL = 2
"""Drop the frame and send one "Rate limit exceeded" error frame."""
ABUSE = 3
"""Sustained abuse: close the connection with 1008."""


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` stored."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = min(tokens, self.capacity) - 1.0
            return True
        self.tokens = tokens
        return False


class Throttle:
    """Decides, frame by frame, whether one connection may go on.

    Every frame spends from the frame bucket; a frame that would be answered with
    an error frame also spends from the (smaller) error bucket, so a client cannot
    use the gateway to amplify garbage into replies. Each bucket tells the client
    once when it runs dry, and ``abuse_threshold`` refusals in a row from either
    mean abuse.
    """

    __slots__ = ("abuse_threshold", "error_strikes", "errors", "frame_strikes", "frames")

    def __init__(
        self,
        rate: float | None,
        burst: int,
        error_rate: float,
        error_burst: int,
        abuse_threshold: int,
        now: float,
    ) -> None:
        self.frames = TokenBucket(rate, burst, now) if rate is not None else None
        self.errors = TokenBucket(error_rate, error_burst, now)
        self.abuse_threshold = abuse_threshold
        self.frame_strikes = 0
        self.error_strikes = 0

    def frame(self, now: float) -> int:
        """Verdict for an incoming frame."""
        if self.frames is None or self.frames.take(now):
            self.frame_strikes = 0
            return ALLOW
        self.frame_strikes += 1
        return self._verdict(self.frame_strikes)

    def error(self, now: float) -> int:
        """Verdict for an error reply about to be sent for a bad frame."""
        if self.errors.take(now):
            self.error_strikes = 0
            return ALLOW
        self.error_strikes += 1
        return self._verdict(self.error_strikes)

    def _verdict(self, strikes: int) -> int:
        if strikes >= self.abuse_threshold:
            return ABUSE
        return REFUSE_AND_TELL if strikes == 1 else REFUSE
