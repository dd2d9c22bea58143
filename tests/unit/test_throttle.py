"""Token buckets and the per-connection throttle, with an explicit clock."""

from __future__ import annotations

from gatewayasgi.runtime.throttle import (
    ABUSE,
    ALLOW,
    REFUSE,
    REFUSE_AND_TELL,
    Throttle,
    TokenBucket,
)


def test_bucket_spends_its_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(rate=10, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.1)  # one token after 1/rate seconds
    assert not bucket.take(0.1)


def test_bucket_never_stores_more_than_capacity() -> None:
    bucket = TokenBucket(rate=1000, capacity=2, now=0.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


def test_throttle_tells_once_then_refuses_silently_then_calls_abuse() -> None:
    throttle = Throttle(1, 1, 1, 1, abuse_threshold=4, now=0.0)
    assert throttle.frame(0.0) == ALLOW
    verdicts = [throttle.frame(0.0) for _ in range(4)]
    assert verdicts == [REFUSE_AND_TELL, REFUSE, REFUSE, ABUSE]


def test_an_allowed_frame_resets_the_strikes() -> None:
    throttle = Throttle(1, 1, 1, 1, abuse_threshold=3, now=0.0)
    throttle.frame(0.0)
    assert throttle.frame(0.0) == REFUSE_AND_TELL
    assert throttle.frame(5.0) == ALLOW
    assert throttle.frame(5.0) == REFUSE_AND_TELL


def test_error_budget_is_separate_and_smaller() -> None:
    throttle = Throttle(None, 1, error_rate=1, error_burst=2, abuse_threshold=100, now=0.0)
    assert all(throttle.frame(0.0) == ALLOW for _ in range(1000))  # rate_limit=None: off
    assert [throttle.error(0.0) for _ in range(3)] == [ALLOW, ALLOW, REFUSE_AND_TELL]


def test_good_frames_do_not_reset_the_error_streak() -> None:
    throttle = Throttle(1000, 1000, error_rate=1, error_burst=1, abuse_threshold=3, now=0.0)
    verdicts = []
    for _ in range(4):
        assert throttle.frame(0.0) == ALLOW
        verdicts.append(throttle.error(0.0))
    assert verdicts == [ALLOW, REFUSE_AND_TELL, REFUSE, ABUSE]
