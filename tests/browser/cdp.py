"""Headless Chromium driven over the Chrome DevTools Protocol, from Python.

No WebDriver and no npm package: Chromium is started with ``--remote-debugging-port=0``,
writes the port it chose to ``DevToolsActivePort`` in its profile directory, and the test
speaks CDP over one WebSocket (``websockets``), one flattened session per page. Every
call and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CALL_TIMEOUT = 15.0
INSTALL = "apt-get install chromium  (or: make chromium, as root on Debian/Ubuntu)"


def find_chromium() -> str | None:
    """``$CHROMIUM``, else the first of Debian's and Google's names on ``PATH``."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class PageError(AssertionError):
    """A script raised in the page, or a wait ran out."""


class Browser:
    """One CDP connection to the browser; ``send`` is a bounded request/response."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                future = self.pending.pop(message.get("id", -1), None)
                if future is not None and not future.done():
                    future.set_result(message)
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the browser's CDP socket closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, CALL_TIMEOUT)
        if "error" in reply:
            raise PageError(f"CDP {method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def new_page(self, url: str) -> Page:
        """A new tab in its own browser context (no shared storage), opened at ``url``."""
        context = await self.send("Target.createBrowserContext")
        target = await self.send(
            "Target.createTarget",
            {"url": "about:blank", "browserContextId": context["browserContextId"]},
        )
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        # Both tabs count as visible and focused: no background-tab timer throttling.
        await page.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
        await page.send("Page.navigate", {"url": url})
        return page


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (awaited if it is a promise), or ``PageError``."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise PageError(f"{expression!r} raised in the page: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy; after ``timeout``, ``PageError`` naming
        ``what``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with suppress(PageError):  # e.g. during a navigation, or before the module ran
                last = await self.evaluate(expression)
                if last:
                    return last
            await asyncio.sleep(0.1)
        raise PageError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@asynccontextmanager
async def chromium(binary: str, profile: Path, log: Path) -> AsyncIterator[Browser]:
    """Start headless Chromium with a fresh profile; stop it (bounded) on exit."""
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    args = [
        binary,
        "--headless=new",
        "--no-sandbox",  # root in containers and CI has no user namespace sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if process.returncode is not None:
                raise RuntimeError(f"chromium exited with {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port in 30 s; see {log}")
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        async with connect(
            f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=CALL_TIMEOUT
        ) as ws:
            browser = Browser(ws)
            try:
                yield browser
            finally:
                with suppress(Exception):
                    await browser.send("Browser.close")
                browser.reader.cancel()
    finally:
        await stop(process)


async def stop(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace`` seconds."""
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except asyncio.TimeoutError:
        process.kill()
        await asyncio.wait_for(process.wait(), grace)
