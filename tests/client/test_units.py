"""Pure layers of the client: backoff, recovery bookkeeping, frames, calls (no network)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from gatewayasgi.client import CallError, ConnectionClosed, backoff_delay, is_terminal_close
from gatewayasgi.client.calls import PendingCalls, answer_call
from gatewayasgi.client.frames import InboundFrame, Message, decode, encode_event, error_parts
from gatewayasgi.client.handshake import is_terminal_status
from gatewayasgi.client.inbox import Inbox
from gatewayasgi.client.recovery import SessionRecovery

TOKEN = "A" * 43
SESSION = {
    "id": "c_" + "a" * 32,
    "token": TOKEN,
    "epoch": "e1",
    "offset": "5-0",
    "recovered": False,
    "reason": None,
}


# -- backoff ---------------------------------------------------------------------------


def test_backoff_is_a_uniform_draw_below_the_capped_exponential() -> None:
    top = 1.0 - 1e-12  # random() is in [0, 1)
    assert [backoff_delay(n, 0.5, 30.0, lambda: top) for n in range(8)] == pytest.approx(
        [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    )
    assert backoff_delay(3, 0.5, 30.0, lambda: 0.0) == 0.0
    assert backoff_delay(3, 0.5, 30.0, lambda: 0.25) == pytest.approx(1.0)


def test_backoff_is_full_jitter_and_survives_huge_attempts() -> None:
    import random

    rng = random.Random(7)
    draws = [backoff_delay(4, 1.0, 10.0, rng.random) for _ in range(2000)]
    assert all(0.0 <= d < 10.0 for d in draws)
    # Full jitter: spread over the whole window, not bunched near its top.
    assert min(draws) < 0.5 and max(draws) > 9.5
    assert 4.5 < sum(draws) / len(draws) < 5.5
    assert backoff_delay(10_000, 1.0, 10.0, lambda: 0.5) == 5.0
    with pytest.raises(ValueError):
        backoff_delay(-1, 1.0, 10.0)


def test_terminal_closes_and_refusals() -> None:
    assert is_terminal_close(1008) and is_terminal_close(4000) and is_terminal_close(4999)
    assert not any(is_terminal_close(code) for code in (1000, 1001, 1006, 1011, 1012, 1013, 3000))
    assert is_terminal_status(403) and is_terminal_status(404) and is_terminal_status(401)
    assert not any(is_terminal_status(status) for status in (408, 429, 500, 502, 503))


# -- recovery bookkeeping ----------------------------------------------------------------


def frame(event: str, data: Any = None, offset: str | None = None) -> InboundFrame:
    return InboundFrame(event, data, offset=offset)


def test_recovery_off_offers_only_the_users_subprotocols() -> None:
    recovery = SessionRecovery(enabled=False)
    assert recovery.subprotocols(["v1"]) == ["v1"]
    recovery.session_frame(SESSION)  # $session frames are read even so
    assert recovery.client_id == SESSION["id"]
    assert recovery.subprotocols(["v1"]) == ["v1"]


def test_recovery_offers_the_protocol_then_the_credential_of_the_last_offset() -> None:
    recovery = SessionRecovery(enabled=True)
    assert recovery.subprotocols() == ["gatewayasgi"]  # nothing to resume yet
    session = recovery.session_frame(SESSION)
    assert session is not None and session.id == SESSION["id"] and not recovery.recovered
    resume = f"gatewayasgi.resume.{SESSION['id']}.{TOKEN}.e1"
    assert recovery.subprotocols(["v1", "gatewayasgi"]) == ["gatewayasgi", f"{resume}.5-0", "v1"]
    recovery.observe(frame("tick", 1, offset="6-0"))
    recovery.observe(frame("reply"))  # replies carry no offset: the position stays
    recovery.observe(frame("tick", 2, offset="7-3"))
    assert recovery.credential() == f"{resume}.7-3"


def test_recovery_takes_every_session_frame() -> None:
    recovery = SessionRecovery(enabled=True)
    recovery.session_frame(SESSION)
    recovery.observe(frame("tick", offset="9-0"))
    recovery.connection_opened()
    assert not recovery.recovered
    recovery.session_frame({**SESSION, "offset": "9-0", "recovered": True})
    assert recovery.recovered and recovery.offset == "9-0"
    # Later, on the open connection: the history was lost; new epoch and position.
    recovery.session_frame({**SESSION, "epoch": "e2", "offset": "1-0", "reason": "epoch"})
    assert not recovery.recovered and recovery.session is not None
    assert recovery.session.reason == "epoch"
    assert recovery.credential() == f"gatewayasgi.resume.{SESSION['id']}.{TOKEN}.e2.1-0"
    # A failed resume: a new session replaces the credential.
    recovery.session_frame({**SESSION, "id": "c_" + "b" * 32, "reason": "expired"})
    assert recovery.client_id == "c_" + "b" * 32


def test_recovery_ignores_malformed_session_frames_and_forgets() -> None:
    recovery = SessionRecovery(enabled=True)
    recovery.session_frame(SESSION)
    for bad in (None, [], {**SESSION, "token": 5}, {**SESSION, "reason": 1}, {"id": "x"}):
        assert recovery.session_frame(bad) is None
    assert recovery.client_id == SESSION["id"]
    # A part that is not an HTTP token is never offered (it would break the handshake).
    recovery.observe(frame("tick", offset="a b"))
    assert recovery.credential() is None and recovery.subprotocols() == ["gatewayasgi"]
    recovery.forget()
    assert recovery.session is None and recovery.offset is None


# -- frames, calls, inbox ---------------------------------------------------------------------


def test_decode_keeps_only_well_formed_fields() -> None:
    assert decode('{"event":"a","data":1,"id":3,"ack":4,"offset":"1-0"}') == InboundFrame(
        "a", 1, 3, 4, "1-0"
    )
    assert decode(b'{"event":"a","id":true,"ack":"x","offset":2}') == InboundFrame("a", None)
    for raw in ("[1]", "nope", '{"data":1}', '{"event":""}', '{"event":3}'):
        assert decode(raw) is None
    assert encode_event("e", {"a": 1}, 5) == '{"event":"e","data":{"a":1},"id":5}'
    with pytest.raises(TypeError, match="'e' is not JSON-serialisable"):
        encode_event("e", object())
    assert error_parts({"message": "m", "errors": []}) == ("m", {"errors": []})
    assert error_parts("text") == ("text", {})


@pytest.mark.anyio
async def test_answer_call_outcomes() -> None:
    question = InboundFrame("q", 2, ack=9)

    async def async_handler(data: int) -> int:
        return data + 1

    def raising(data: Any) -> None:
        raise KeyError("k")

    assert await answer_call(async_handler, question, 9) == '{"event":"$ack","id":9,"data":3}'
    assert await answer_call(lambda d: None, question, 9) == '{"event":"$ack","id":9,"data":null}'
    assert await answer_call(raising, question, 9) == (
        '{"event":"$ack","id":9,"error":{"message":"\'k\'"}}'
    )
    unserialisable = await answer_call(lambda d: object(), question, 9)
    assert "Answer is not JSON-serialisable" in unserialisable
    assert "No handler for server event 'q'" in await answer_call(None, question, 9)


@pytest.mark.anyio
async def test_pending_calls_reject_only_what_went_out_on_the_closed_connection() -> None:
    calls = PendingCalls()
    first, sent = calls.open("a")
    second, unsent = calls.open("b")
    third, replied = calls.open("c")
    assert (first, second, third) == (1, 2, 3)
    calls.sent(first, 1)
    calls.sent(third, 1)
    assert calls.settle(InboundFrame("error", {"message": "no", "x": 1}, id=third))
    calls.reject_sent(1, ConnectionClosed(1006, "", terminal=False))
    assert isinstance(sent.exception(), ConnectionClosed)
    assert not unsent.done() and len(calls) == 1
    error = replied.exception()
    assert isinstance(error, CallError) and (error.message, error.details) == ("no", {"x": 1})
    assert not calls.settle(InboundFrame("late", 1, id=first))  # a late reply matches nothing
    calls.reject_all(ConnectionClosed(1000, "", terminal=True))
    assert isinstance(unsent.exception(), ConnectionClosed)


@pytest.mark.anyio
async def test_inbox_drops_the_oldest_when_full() -> None:
    inbox = Inbox(2)
    for index in range(4):
        inbox.put(Message("e", index))
    assert inbox.dropped == 2 and len(inbox) == 2
    assert [inbox.take(), inbox.take(), inbox.take()] == [Message("e", 2), Message("e", 3), None]
    waiter = asyncio.ensure_future(inbox.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    inbox.put(Message("e", 4))
    await asyncio.wait_for(waiter, 1)
    assert inbox.take() == Message("e", 4)
    # After a wake (the client closed) and an empty take, wait() waits again: no busy loop.
    inbox.wake()
    assert inbox.take() is None
    waiter = asyncio.ensure_future(inbox.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(ValueError):
        Inbox(0)


# -- packaging ----------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_core_package_never_imports_websockets() -> None:
    result = run_python(
        "import sys, gatewayasgi, gatewayasgi.testing, gatewayasgi.emitter\n"
        "assert 'websockets' not in sys.modules, 'websockets imported'\n"
        "assert 'gatewayasgi.client' not in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr


def test_without_websockets_the_client_says_how_to_install_it() -> None:
    result = run_python(
        "import sys\nsys.modules['websockets'] = None\n"
        "try:\n    import gatewayasgi.client\nexcept ImportError as exc:\n    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "gatewayasgi[client]"' in result.stdout
