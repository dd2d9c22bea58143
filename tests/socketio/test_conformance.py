"""The official Socket.IO protocol test suite against ``conformance_app`` under real servers.

``conformance/`` holds socket.io-protocol's ``test-suite/`` unchanged (see its
``NOTICE.md``); ``make test`` installs its node_modules (``npm ci``). The suite
hard-codes ``http://localhost:3000``, so the app is served on 127.0.0.1:3000 in a
subprocess, and node resolves ``localhost`` IPv4 first. A lock file keeps two runs of this
module on one machine (other checkouts included) from sharing the port at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = Path(__file__).resolve().parent / "conformance"
PORT = 3000
EXPECTED_PASSES = 32
MOCHA_TIMEOUT = 120.0
START_TIMEOUT = 20.0
LOCK = Path(tempfile.gettempdir()) / f"gatewayasgi-socketio-conformance-{PORT}.lock"

pytestmark = [
    pytest.mark.timeout(MOCHA_TIMEOUT + 2 * START_TIMEOUT + 60),
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npx") is None,
        reason="node and npx are needed for the Socket.IO test suite (make node)",
    ),
    pytest.mark.skipif(
        not (SUITE / "node_modules" / ".bin" / "mocha").exists(),
        reason="tests/socketio/conformance/node_modules is missing: "
        "run `npm ci --no-audit --no-fund` there (make test does)",
    ),
]

SERVER_COMMANDS = {
    "hypercorn": ["hypercorn", "--bind", f"127.0.0.1:{PORT}", "--log-level", "WARNING"],
    "uvicorn": ["uvicorn", "--host", "127.0.0.1", "--port", str(PORT), "--log-level", "warning"],
}


MOCHA = ["npx", "--no-install", "mocha", "test-suite.js", "--reporter", "json"]
MOCHA += ["--require", "./browser-events.cjs"]  # browsers' event order for ws (see the file)
MOCHA += ["--exit"]  # a socket the suite leaves open cannot hold mocha past its report


def _port_open() -> bool:
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
    except OSError:
        return False
    return True


@contextmanager
def _port_lock() -> Iterator[None]:
    """Hold the machine-wide lock on the port, waiting (bounded) for another run."""
    with LOCK.open("w") as lock:
        deadline = time.monotonic() + MOCHA_TIMEOUT + START_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another run held {LOCK} for too long")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _log_tail(log: Any) -> str:
    # pread: the server writes through a descriptor that shares this file's offset.
    size = os.fstat(log.fileno()).st_size
    start = max(0, size - 4000)
    return os.pread(log.fileno(), size - start, start).decode(errors="replace")


@contextmanager
def _serve(server: str) -> Iterator[Any]:
    """Run the app under ``server`` on 127.0.0.1:3000; yields the server's log file."""
    if _port_open():
        pytest.fail(f"127.0.0.1:{PORT} is already in use: the suite needs that port")
    command = [sys.executable, "-m", *SERVER_COMMANDS[server], "tests.socketio.conformance_app:app"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _port_open():
                if process.poll() is not None:
                    pytest.fail(f"{server} exited with {process.returncode}:\n{_log_tail(log)}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{server} did not listen within {START_TIMEOUT} s:\n{_log_tail(log)}"
                    )
                time.sleep(0.05)
            yield log
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server's whole process group: SIGTERM, then SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _failures(report: dict[str, Any]) -> str:
    lines = []
    for test in report.get("failures", []):
        error = test.get("err", {})
        lines.append(f"- {test.get('fullTitle')}: {error.get('message', error)}")
    return "\n".join(lines)


@pytest.mark.parametrize("server", list(SERVER_COMMANDS))
def test_socketio_protocol_suite(server: str) -> None:
    env = {**os.environ, "NODE_OPTIONS": "--dns-result-order=ipv4first", "NO_COLOR": "1"}
    with _port_lock(), _serve(server) as log:
        try:
            mocha = subprocess.run(
                MOCHA,
                cwd=SUITE,
                env=env,
                capture_output=True,
                text=True,
                timeout=MOCHA_TIMEOUT,
            )
        except subprocess.TimeoutExpired as timeout:
            pytest.fail(f"mocha ran over {MOCHA_TIMEOUT} s:\n{timeout.stdout!r}\n{_log_tail(log)}")
        output = mocha.stdout
        try:
            report = json.loads(output[output.index("{") :])
        except ValueError:
            pytest.fail(
                f"mocha gave no JSON report (exit {mocha.returncode}):\n"
                f"{output[-3000:]}\n{mocha.stderr[-3000:]}\nserver log:\n{_log_tail(log)}"
            )
        stats = report["stats"]
        counts = {key: stats[key] for key in ("passes", "failures", "pending")}
        assert counts == {"passes": EXPECTED_PASSES, "failures": 0, "pending": 0}, (
            f"{server}: {counts}\n{_failures(report)}\nserver log:\n{_log_tail(log)}"
        )
