"""The AI example (examples/ai) in real headless Chromium: both pages, a fake model.

The app (``make_app(debug=True)``) runs under hypercorn on loopback, behind a TCP proxy
(``tests/recovery/cut_proxy.py``) that can cut every connection as a network would. Page 1
is the ``ai`` package's own chat and ``WebSocketChatTransport`` (bundled by esbuild into
examples/ai/dist/chat.js); page 2 is the TypeScript client (clients/js/dist). For each:
a whole answer; a stop mid-stream (the server's generator reports ``cancelled``, the
answer stays partial); a reload mid-stream and a cut of the connection mid-stream (the
answer completes once: every value the page shows is a prefix of the answer, so no token
is duplicated or skipped, and it ends whole). On failure a screenshot and the page's log
are left in the test's temp dir. One test without a browser checks the example's
``can_attach`` rule: another browser's token can neither resume a chat nor ask in it.

Needs ``chromium`` (``make chromium``), the page bundle (``make ai-example``) and the
TypeScript client (``make chat-client``): outside CI a missing one skips the test with
the command to run; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from examples.ai.app import BUNDLE, CLIENT_DIST, answer, make_app
from tests.browser.cdp import INSTALL, Page, PageError, chromium, find_chromium
from tests.recovery.cut_proxy import CutProxy
from tests.servers import run_server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DELAY = 0.04
"""The fake model's pace: a ``long`` answer (101 tokens) takes about 4 s."""
LONG = "long story"
SHORT = "hello"


def require(condition: bool, message: str) -> None:
    """Skip outside CI; in CI a missing prerequisite is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the browser test must run)")
    pytest.skip(message)


class Example:
    """The served app behind its proxy, the browser, and the pages opened on it."""

    def __init__(self, browser: Any, proxy: CutProxy, tmp_path: Path) -> None:
        self.browser = browser
        self.proxy = proxy
        self.base = f"http://{proxy.address}"
        self.tmp_path = tmp_path
        self.pages: list[Page] = []

    async def open(self, path: str) -> Page:
        page = await self.browser.new_page(self.base + path)
        self.pages.append(page)
        return page

    async def closed(self, page: Page) -> dict[str, str]:
        """``GET /debug/streams``, fetched by the page: chat id -> how its generator ended."""
        state = await page.evaluate("fetch('/debug/streams').then((r) => r.json())")
        return dict(state["closed"])

    async def closed_how(self, page: Page, chat: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            how = (await self.closed(page)).get(chat)
            if how is not None:
                return how
            await asyncio.sleep(0.05)
        raise AssertionError(f"the generator of chat {chat} did not close in {timeout} s")

    async def keep_artifacts(self) -> None:
        for number, page in enumerate(self.pages):
            try:
                await page.screenshot(self.tmp_path / f"page{number}.png")
                lines = await page.evaluate(
                    "[...document.querySelectorAll('#log li')].map((li) => li.textContent)"
                )
                (self.tmp_path / f"page{number}.log").write_text("\n".join(lines or []))
            except Exception as exc:  # the failure itself matters more
                print(f"no screenshot of page {number}: {exc!r}")
        print(f"browser test artifacts (screenshots, page logs): {self.tmp_path}")


@asynccontextmanager
async def example(tmp_path: Path) -> AsyncIterator[Example]:
    binary = find_chromium()
    require(binary is not None, f"chromium not found: install it with `{INSTALL}`")
    require((BUNDLE / "chat.js").is_file(), f"{BUNDLE}/chat.js is not built: run `make ai-example`")
    require((CLIENT_DIST / "index.js").is_file(), "clients/js is not built: run `make chat-client`")
    assert binary is not None
    async with run_server(make_app(debug=True, delay=DELAY)) as address:
        async with CutProxy(address).running() as proxy:
            async with chromium(binary, tmp_path / "profile", tmp_path / "chromium.log") as browser:
                running = Example(browser, proxy, tmp_path)
                try:
                    yield running
                except BaseException:
                    await running.keep_artifacts()
                    raise


# -- what the pages show ------------------------------------------------------------------

ANSWER = "document.querySelector('#answer').textContent"
STATUS = "document.body.dataset.status"
LOG = "[...document.querySelectorAll('#log li')].map((li) => li.textContent)"


def logged(text: str) -> str:
    return f"{LOG}.some((line) => line.includes({json.dumps(text)}))"


async def ask(page: Page, prompt: str) -> None:
    await page.wait_for(f"{STATUS} === 'ready'", "the page to be ready")
    await page.evaluate(
        f"""(() => {{
          document.querySelector('#prompt').value = {json.dumps(prompt)};
          document.querySelector('#ask').requestSubmit();
          return true;
        }})()"""
    )


async def tokens_shown(page: Page, count: int) -> str:
    """Wait until the answer shows at least ``count`` numbered tokens; the answer then."""
    return str(
        await page.wait_for(
            f"(({ANSWER}).match(/ t\\d+ /g) ?? []).length >= {count} && {ANSWER}",
            f"{count} tokens of the answer",
            timeout=10,
        )
    )


async def watch_answer(page: Page, expected: str, timeout: float = 20.0) -> list[str]:
    """Poll the answer until it is ``expected`` and the page is ready: every value seen on
    the way must be a prefix of it (a duplicated token or a gap would not be). Returns the
    values seen. Bounded by ``timeout``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text, status = await page.evaluate(f"[{ANSWER}, {STATUS}]")
        except PageError:  # navigating (a reload), or the module has not run yet
            await asyncio.sleep(0.05)
            continue
        if not seen or seen[-1] != text:
            seen.append(text)
        assert expected.startswith(text), f"the page showed {text!r}: not a prefix of the answer"
        if text == expected and status == "ready":
            return seen
        await asyncio.sleep(0.03)
    raise AssertionError(f"the answer was not whole in {timeout} s; last seen: {seen[-1:]!r}")


async def stays(page: Page, text: str, seconds: float) -> None:
    """The answer shows ``text`` and nothing more for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await page.evaluate(ANSWER) == text, "the answer grew after the stop"
        await asyncio.sleep(0.05)


# -- page 1: the ai package's chat and WebSocketChatTransport ------------------------------

ASSISTANTS = "document.querySelectorAll('#messages .assistant').length"
CHAT_ID = "window.aiExample.chatId"


async def ai_page(running: Example) -> tuple[Page, str]:
    page = await running.open("/")
    chat = await page.wait_for("window.aiExample && window.aiExample.chatId", "the chat")
    return page, str(chat)


async def test_ai_sdk_page_shows_a_whole_answer(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ai_page(running)
        await ask(page, SHORT)
        await watch_answer(page, answer(SHORT))
        assert await page.evaluate(ASSISTANTS) == 1
        assert await running.closed_how(page, chat) == "finished"
        # A second question in the same chat gets its own answer.
        await ask(page, "again")
        await watch_answer(page, answer("again"))
        assert await page.evaluate(ASSISTANTS) == 2


async def test_ai_sdk_page_stop_cancels_the_generator(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ai_page(running)
        await ask(page, LONG)
        await tokens_shown(page, 5)
        await page.evaluate("document.querySelector('#stop').click(), true")
        assert await running.closed_how(page, chat) == "cancelled"
        await page.wait_for(f"{STATUS} === 'ready'", "the chat to be ready after the stop")
        partial = str(await page.evaluate(ANSWER))
        assert answer(LONG).startswith(partial) and len(partial) < len(answer(LONG))
        await stays(page, partial, 10 * DELAY)
        await page.wait_for(logged("stopped"), "the stop in the page's log")


async def test_ai_sdk_page_resumes_after_a_reload(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ai_page(running)
        await ask(page, LONG)
        before = await tokens_shown(page, 5)
        assert len(before) < len(answer(LONG))
        await page.send("Page.reload")
        await page.wait_for(logged("resuming the answer in progress"), "the reloaded page")
        assert await page.evaluate(CHAT_ID) == chat
        await watch_answer(page, answer(LONG))
        assert await page.evaluate(ASSISTANTS) == 1
        assert await running.closed_how(page, chat) == "finished"


async def test_ai_sdk_page_stops_a_resumed_answer(tmp_path: Path) -> None:
    """A stop after a reload aborts the resume request: the gateway cancels the stream."""
    async with example(tmp_path) as running:
        page, chat = await ai_page(running)
        await ask(page, LONG)
        await tokens_shown(page, 5)
        await page.send("Page.reload")
        await page.wait_for(logged("resuming the answer in progress"), "the reloaded page")
        await tokens_shown(page, 10)
        await page.evaluate("document.querySelector('#stop').click(), true")
        assert await running.closed_how(page, chat) == "cancelled"
        await page.wait_for(f"{STATUS} === 'ready'", "the chat to be ready after the stop")
        partial = str(await page.evaluate(ANSWER))
        assert answer(LONG).startswith(partial) and len(partial) < len(answer(LONG))
        await stays(page, partial, 10 * DELAY)


async def test_ai_sdk_page_resumes_after_the_connection_is_cut(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ai_page(running)
        await ask(page, LONG)
        await tokens_shown(page, 5)
        assert running.proxy.cut() >= 1
        seen = await watch_answer(page, answer(LONG))
        await page.wait_for(logged("connection lost: resuming"), "the page to see the cut")
        assert await page.evaluate(ASSISTANTS) == 1
        assert await running.closed_how(page, chat) == "finished"
        assert len(seen) > 1


# -- page 2: the TypeScript client -----------------------------------------------------------

TS_CHAT = "window.tsExample.state.chat"


async def ts_page(running: Example) -> tuple[Page, str]:
    page = await running.open("/ts")
    chat = await page.wait_for(f"window.tsExample && {TS_CHAT}", "the TypeScript page")
    await page.wait_for(
        "document.querySelector('#connection').textContent === 'connected'", "its connection"
    )
    return page, str(chat)


async def test_ts_page_shows_a_whole_answer(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ts_page(running)
        await ask(page, SHORT)
        await watch_answer(page, answer(SHORT))
        assert await running.closed_how(page, chat) == "finished"


async def test_ts_page_stop_cancels_the_generator(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ts_page(running)
        await ask(page, LONG)
        await tokens_shown(page, 5)
        await page.evaluate("document.querySelector('#stop').click(), true")
        assert await running.closed_how(page, chat) == "cancelled"
        await page.wait_for(f"{STATUS} === 'ready'", "the page to be ready after the stop")
        partial = str(await page.evaluate(ANSWER))
        assert answer(LONG).startswith(partial) and len(partial) < len(answer(LONG))
        await stays(page, partial, 10 * DELAY)
        await page.wait_for(logged("stopped"), "the stop in the page's log")


async def test_ts_page_attaches_after_a_reload(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ts_page(running)
        await ask(page, LONG)
        await tokens_shown(page, 5)
        await page.send("Page.reload")
        await page.wait_for(logged("resuming after token"), "the reloaded page")
        assert await page.evaluate(TS_CHAT) == chat
        await watch_answer(page, answer(LONG))
        assert await running.closed_how(page, chat) == "finished"


async def test_ts_page_stops_an_attached_answer(tmp_path: Path) -> None:
    """A stop after a reload aborts the attached stream: the gateway cancels the stream."""
    async with example(tmp_path) as running:
        page, chat = await ts_page(running)
        await ask(page, LONG)
        await tokens_shown(page, 5)
        await page.send("Page.reload")
        await page.wait_for(logged("resuming after token"), "the reloaded page")
        await tokens_shown(page, 10)
        await page.evaluate("document.querySelector('#stop').click(), true")
        assert await running.closed_how(page, chat) == "cancelled"
        await page.wait_for(f"{STATUS} === 'ready'", "the page to be ready after the stop")
        partial = str(await page.evaluate(ANSWER))
        assert answer(LONG).startswith(partial) and len(partial) < len(answer(LONG))
        await stays(page, partial, 10 * DELAY)


async def test_ts_page_attaches_after_the_connection_is_cut(tmp_path: Path) -> None:
    async with example(tmp_path) as running:
        page, chat = await ts_page(running)
        await ask(page, LONG)
        await tokens_shown(page, 5)
        assert running.proxy.cut() >= 1
        await watch_answer(page, answer(LONG))
        await page.wait_for(logged("connection lost: re-attaching"), "the page to see the cut")
        assert await running.closed_how(page, chat) == "finished"


# -- the can_attach rule, without a browser ---------------------------------------------------


def _send(chat: str, request_id: str, text: str = LONG) -> str:
    message = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": text}]}
    return json.dumps(
        {
            "type": "send",
            "requestId": request_id,
            "id": chat,
            "trigger": "submit-message",
            "messages": [message],
            "headers": {},
            "body": {},
        }
    )


def _resume(chat: str, request_id: str) -> str:
    return json.dumps(
        {"type": "resume", "requestId": request_id, "id": chat, "headers": {}, "body": {}}
    )


async def _frame(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def test_only_the_owner_of_a_chat_may_pick_its_stream_up() -> None:
    ann, bob = "a" * 22, "b" * 22
    chat = f"{ann}.chat"
    async with run_server(make_app(debug=True, delay=DELAY)) as address:
        async with connect(f"ws://{address}/ai?owner={ann}", open_timeout=10) as first:
            await first.send(_send(chat, "r1"))
            assert (await _frame(first))["type"] == "start"
            # Another browser's token: its resume finds nothing to read (the gateway refuses
            # the attach), and the native gateway refuses its $attach.
            async with connect(f"ws://{address}/ai?owner={bob}", open_timeout=10) as other:
                await other.send(_resume(chat, "r2"))
                refused = await _frame(other)
                assert refused["type"] in ("no-active", "error"), refused
                assert refused["requestId"] == "r2"
                with pytest.raises(asyncio.TimeoutError):  # and nothing of ann's stream
                    await asyncio.wait_for(other.recv(), 5 * DELAY)
                # Asking in ann's chat is refused by the handler's guard.
                await other.send(_send(chat, "r3"))
                denied = await _frame(other)
                assert denied["type"] == "error" and denied["requestId"] == "r3", denied
            async with connect(f"ws://{address}/tokens?owner={bob}", open_timeout=10) as other:
                attach = {"event": "$attach", "key": chat, "after": 0, "id": 5}
                await other.send(json.dumps(attach))
                error = await _frame(other)
                assert error["event"] == "error" and error["id"] == 5, error
            # The same browser on a new socket (a reload) gets the stream from its start.
            async with connect(f"ws://{address}/ai?owner={ann}", open_timeout=10) as again:
                await again.send(_resume(chat, "r4"))
                assert (await _frame(again))["type"] == "start"
                chunk = await _frame(again)
                assert chunk["type"] == "chunk" and chunk["sequence"] == 0, chunk
        # No token, or a malformed one: the handshake is refused.
        for query in ("", "?owner=short"):
            with pytest.raises((InvalidStatus, ConnectionClosed)):
                async with connect(f"ws://{address}/ai{query}", open_timeout=10) as ws:
                    await asyncio.wait_for(ws.recv(), 10)
