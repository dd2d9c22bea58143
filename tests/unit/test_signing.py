"""Shared-secret HMAC on backplane messages: pure, no Redis."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gatewayasgi.brokers.signing import MAGIC, OVERHEAD, Signer, looks_signed

SECRET = "a shared secret of 32 characters"
OTHER = b"another secret, also long enough"


def test_a_signed_message_verifies_and_gives_back_the_payload() -> None:
    signer = Signer(SECRET)
    signed = signer.sign("chan", b"payload")
    assert len(signed) == len(b"payload") + OVERHEAD
    assert looks_signed(signed)
    assert signer.verify("chan", signed) == b"payload"
    assert Signer(SECRET).verify("chan", signer.sign("chan", b"")) == b""


def test_the_tag_is_hmac_sha256_over_channel_length_channel_and_payload() -> None:
    """Pinned, so another implementation (a publisher in another language) can match it."""
    expected = hmac.new(SECRET.encode(), b"\x00\x00\x00\x04chan" + b"data", hashlib.sha256)
    assert Signer(SECRET).sign("chan", b"data") == MAGIC + expected.digest() + b"data"


def test_str_and_bytes_secrets_are_the_same_key() -> None:
    assert Signer(SECRET.encode()).verify("c", Signer(SECRET).sign("c", b"x")) == b"x"


@pytest.mark.parametrize(
    "forge",
    [
        lambda signed: b"plain unsigned envelope",
        lambda signed: b"",
        lambda signed: MAGIC,
        lambda signed: signed[:-1],
        lambda signed: signed + b"!",
        lambda signed: signed[:-1] + bytes([signed[-1] ^ 1]),
        lambda signed: (
            signed[: len(MAGIC)] + bytes([signed[len(MAGIC)] ^ 1]) + signed[1 + len(MAGIC) :]
        ),
        lambda signed: b"\x01" + signed[1:],
    ],
    ids=[
        "unsigned",
        "empty",
        "magic-only",
        "truncated",
        "extended",
        "payload-flipped",
        "tag-flipped",
        "magic-changed",
    ],
)
def test_altered_or_unsigned_messages_do_not_verify(forge: object) -> None:
    signer = Signer(SECRET)
    signed = signer.sign("chan", b"some payload")
    assert callable(forge)
    assert signer.verify("chan", forge(signed)) is None


def test_a_message_signed_with_another_secret_does_not_verify() -> None:
    assert Signer(SECRET).verify("chan", Signer(OTHER).sign("chan", b"x")) is None


def test_a_message_signed_for_one_channel_does_not_verify_on_another() -> None:
    signer = Signer(SECRET)
    assert signer.verify("other", signer.sign("chan", b"x")) is None
    # The channel's length is signed too, so "a" + "bc" cannot pass for "ab" + "c".
    moved = signer.sign("a", b"bc")
    assert signer.verify("ab", moved[:OVERHEAD] + b"c") is None


def test_rotation_signs_with_the_first_secret_and_verifies_with_any() -> None:
    old, rotating, new = Signer(OTHER), Signer([SECRET, OTHER]), Signer(SECRET)
    assert rotating.verify("c", old.sign("c", b"from old")) == b"from old"
    assert rotating.verify("c", new.sign("c", b"from new")) == b"from new"
    assert new.verify("c", rotating.sign("c", b"x")) == b"x"
    assert old.verify("c", rotating.sign("c", b"x")) is None


@pytest.mark.parametrize("secret", ["short", b"15 bytes secret", ["x" * 16, "too short"]])
def test_secrets_shorter_than_16_bytes_are_refused_without_echoing_them(secret: object) -> None:
    with pytest.raises(ValueError, match="at least 16") as caught:
        Signer(secret)  # type: ignore[arg-type]
    assert "short" not in str(caught.value) and "15 bytes secret" not in str(caught.value)


def test_no_secret_or_a_wrong_type_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Signer([])
    with pytest.raises(TypeError, match="str or bytes"):
        Signer([1234567890123456789])  # type: ignore[list-item]


def test_a_16_byte_secret_is_enough() -> None:
    assert Signer("x" * 16).verify("c", Signer(b"x" * 16).sign("c", b"ok")) == b"ok"
