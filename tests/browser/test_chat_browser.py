"""The example chat page (examples/chat) in real headless Chromium, with the TS client.

The app runs under hypercorn in a subprocess, as ``make run`` serves it. Two pages (two
browser contexts) join one room and chat; one goes offline and gets the message it missed
back (session recovery); the server is restarted on the same port; both pages show that
they reconnected, rejoin, and chat again. On failure a screenshot of each page, the page
logs and the server and browser output are left in the test's temp dir.

Needs ``chromium`` (``make chromium``) and the built client (``make chat-client``):
outside CI the test is skipped without them, with the command to run; with ``CI=true``
it fails instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.browser.cdp import INSTALL, Page, chromium, find_chromium, stop

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "js" / "dist" / "index.js"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, message: str) -> None:
    """Skip outside CI; in CI a missing prerequisite is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the browser test must run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def chat_server(port: int, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``hypercorn examples.chat.app:app`` on ``port``, a process of its own."""
    command = [sys.executable, "-m", "hypercorn", "examples.chat.app:app"]
    command += ["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "1"]
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"the chat server exited with {process.returncode}; see {log}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the chat server did not listen in 30 s; see {log}"
                    ) from None
                await asyncio.sleep(0.05)
            else:
                writer.close()
                break
        yield process
    finally:
        await stop(process)


LOG = "[...document.querySelectorAll('#log p')].map((p) => p.textContent)"


def logged(text: str) -> str:
    """A page expression: true once a line of the log contains ``text``."""
    return f"{LOG}.some((line) => line.includes({json.dumps(text)}))"


def members(*names: str) -> str:
    """A page expression: true once the member list is exactly ``names``."""
    wanted = json.dumps(sorted(names), separators=(",", ":"))
    items = "[...document.querySelectorAll('#members li')].map((li) => li.textContent)"
    return f"JSON.stringify({items}) === {json.dumps(wanted)}"


async def fill_and_submit(page: Page, form: str, values: dict[str, str]) -> None:
    """Type into the form's inputs (as input events see it) and submit it."""
    await page.evaluate(
        f"""(() => {{
          const form = document.querySelector({json.dumps(form)});
          for (const [name, value] of Object.entries({json.dumps(values)})) {{
            const input = form.elements[name];
            input.value = value;
            input.dispatchEvent(new Event("input", {{bubbles: true}}));
          }}
          form.requestSubmit();
          return true;
        }})()"""
    )


async def say(page: Page, text: str) -> None:
    await page.wait_for(
        "!document.querySelector('#say input').disabled", "the message box to be enabled"
    )
    await fill_and_submit(page, "#say", {"text": text})


async def connections(page: Page, count: int, what: str) -> None:
    """Wait for the page's ``count``-th connect, with the client connected."""
    await page.wait_for(
        f"Number(document.body.dataset.connections) >= {count} "
        "&& document.body.dataset.state === 'connected'",
        what,
        timeout=30,
    )


@pytest.mark.timeout(180)
async def test_two_pages_chat_recover_a_missed_message_and_survive_a_server_restart(
    tmp_path: Path,
) -> None:
    binary = find_chromium()
    require(binary is not None, f"chromium not found: install it with `{INSTALL}`")
    require(CLIENT.is_file(), f"{CLIENT} is not built: run `make chat-client`")
    assert binary is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server_log = tmp_path / "server.log"
    pages: dict[str, Page] = {}
    async with chromium(binary, tmp_path / "profile", tmp_path / "chromium.log") as browser:
        try:
            async with chat_server(port, server_log):
                ann = pages["ann"] = await browser.new_page(url)
                bob = pages["bob"] = await browser.new_page(url)
                for name, page in pages.items():
                    await connections(page, 1, f"{name}'s first connection")
                    await fill_and_submit(page, "#join", {"name": name, "room": "lobby"})
                    await page.wait_for(logged("joined #lobby as"), f"{name} to join #lobby")
                    await page.wait_for(logged("ack join:"), f"{name}'s join ack")
                for name, page in pages.items():
                    await page.wait_for(members("ann", "bob"), f"both in {name}'s member list")

                await say(ann, "hello bob")
                await bob.wait_for(logged("ann: hello bob"), "ann's message on bob's page")
                await ann.wait_for(logged("ack say:"), "the ack of ann's message")
                await say(bob, "hi ann")
                await ann.wait_for(logged("bob: hi ann"), "bob's message on ann's page")

                # Validation details of an error frame: the form sent with an empty name.
                await fill_and_submit(bob, "#join", {"name": "", "room": "lobby"})
                await bob.wait_for(logged("Invalid payload for WebSocket event"), "the error")
                await bob.wait_for(logged("name: String should have at least 1"), "its details")

                # Recovery: bob drops his connection (the session waits), ann speaks meanwhile,
                # and what bob says offline waits in his client's send buffer.
                await bob.evaluate("document.querySelector('#offline').click(), true")
                await bob.wait_for("document.body.dataset.state === 'offline'", "bob offline")
                await say(ann, "while you were away")
                await say(bob, "written offline")
                await bob.wait_for(logged("waits in the send buffer (1)"), "bob's buffered line")
                assert await bob.evaluate("window.chat.client.bufferedCount") == 1
                await connections(bob, 2, "bob's reconnection after going offline")
                await ann.wait_for(logged("bob: written offline"), "bob's buffered message")
                await bob.wait_for(
                    f"{LOG}.filter((line) => line.includes('ack say:')).length >= 2",
                    "the ack of bob's buffered message",
                )
                await bob.wait_for(
                    "document.body.dataset.recovered === 'true'", "bob's session recovered"
                )
                await bob.wait_for(logged("session recovered"), "'session recovered' shown")
                await bob.wait_for(
                    logged("ann: while you were away"), "the missed message replayed to bob"
                )

            # The server restarts on the same port: a new process, a new session history.
            async with chat_server(port, server_log):
                await connections(ann, 2, "ann's reconnection after the restart")
                await connections(bob, 3, "bob's reconnection after the restart")
                for name, page in pages.items():
                    await page.wait_for(logged("reconnected: new session"), f"{name}: shown")
                    await page.wait_for(
                        "document.body.dataset.recovered === 'false'", f"{name}: a new session"
                    )
                    await page.wait_for(
                        f"{LOG}.filter((line) => line.includes('joined #lobby as')).length >= 2",
                        f"{name} to rejoin #lobby",
                    )
                for name, page in pages.items():
                    await page.wait_for(members("ann", "bob"), f"both listed again for {name}")
                await say(bob, "back again")
                await ann.wait_for(logged("bob: back again"), "bob's message after the restart")
                await say(ann, "welcome back")
                await bob.wait_for(logged("ann: welcome back"), "ann's message after the restart")

                # Switching rooms leaves the old one.
                await fill_and_submit(ann, "#join", {"name": "ann", "room": "garden"})
                await ann.wait_for(logged("(left #lobby)"), "ann to switch to #garden")
                await bob.wait_for(logged("ann left"), "ann leaving, on bob's page")
                await bob.wait_for(members("bob"), "bob alone in #lobby")
                await ann.wait_for(members("ann"), "ann alone in #garden")
        except BaseException:
            for name, page in pages.items():
                try:
                    await page.screenshot(tmp_path / f"{name}.png")
                    lines = await page.evaluate(LOG)
                    (tmp_path / f"{name}.log").write_text("\n".join(lines or []))
                except Exception as exc:  # the failure itself matters more
                    print(f"no screenshot of {name}'s page: {exc!r}")
            print(f"browser test artifacts (screenshots, page logs, server log): {tmp_path}")
            raise
