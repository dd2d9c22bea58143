"""The Python package as a user gets it: ``python -m build`` on a clean copy of the checkout
writes an sdist and a wheel built from that sdist; the wheel installs with its extras and
its dependencies into a new virtualenv (nothing of the test's own environment), imports
from there, and serves the first example under its own hypercorn to a real ``websockets``
client and to the package's own client. The sdist installs on its own in another one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from tests.packaging.conftest import ROOT, clean_copy
from tests.servers import TIMEOUT, connect, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

VERSION = "0.1.0"
INSTALL = 180.0
"""Bound on one build or one install (a cold pip cache fetches the dependencies)."""
EXTRAS = "client,servers,redis,prometheus"


def run(*args: str | Path, cwd: Path, timeout: float = INSTALL) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def new_venv(path: Path) -> Path:
    """A virtualenv of the interpreter running the tests, without pip of its own (the
    test's pip installs into it with ``--python``: no ensurepip, seconds saved)."""
    run(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent, timeout=60)
    return path / "bin" / "python"


def pip_into(python: Path, *args: str | Path, cwd: Path) -> str:
    return run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", *args, cwd=cwd
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``python -m build`` (isolated: hatchling comes from the index) on a clean copy."""
    clone = clean_copy(tmp_path_factory.mktemp("clone"))
    started = time.monotonic()
    run(sys.executable, "-m", "build", "--outdir", clone / "dist", clone, cwd=clone)
    print(f"build: {time.monotonic() - started:.1f} s")
    yield clone / "dist"


def test_the_sdist_and_the_wheel_hold_the_package_and_no_build_output(dist: Path) -> None:
    with zipfile.ZipFile(dist / f"gatewayasgi-{VERSION}-py3-none-any.whl") as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"gatewayasgi-{VERSION}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"gatewayasgi-{VERSION}.dist-info/entry_points.txt").decode()
    assert "gatewayasgi/__init__.py" in names and "gatewayasgi/py.typed" in names
    assert "gatewayasgi/client/__init__.py" in names
    assert not [n for n in names if not n.startswith(("gatewayasgi/", "gatewayasgi-"))]
    for extra in EXTRAS.split(","):
        assert f"Provides-Extra: {extra}" in metadata
    assert "gatewayasgi = gatewayasgi.cli:main" in entry_points
    with tarfile.open(dist / f"gatewayasgi-{VERSION}.tar.gz") as sdist:
        members = [m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name]
    assert {"pyproject.toml", "README.md", "gatewayasgi/__init__.py"} <= set(members)
    assert not [m for m in members if "node_modules" in m or m.startswith(("site/", "dist/"))]


async def test_the_wheel_installs_with_its_extras_and_serves_the_example(
    dist: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    python = new_venv(tmp_path / "venv")
    wheel = dist / f"gatewayasgi-{VERSION}-py3-none-any.whl"
    pip_into(python, f"{wheel}[{EXTRAS}]", "fastapi", cwd=tmp_path)
    print(f"venv and install: {time.monotonic() - started:.1f} s")
    bin_ = python.parent

    # Imported from the new venv, with its extras, not from the checkout.
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    found = run(
        python,
        "-c",
        "import json, gatewayasgi, gatewayasgi.client, redis, prometheus_client, hypercorn;"
        "from gatewayasgi.brokers import RedisBroker;"
        "print(json.dumps(gatewayasgi.__file__))",
        cwd=app_dir,
        timeout=TIMEOUT,
    )
    assert json.loads(found).startswith(str(tmp_path / "venv")), found
    assert "usage" in run(bin_ / "gatewayasgi", "--help", cwd=app_dir, timeout=TIMEOUT).lower()

    # The first gateway of the docs, served the way its first line says: hypercorn main:app.
    shutil.copy(ROOT / "docs" / "examples" / "first_fastapi.py", app_dir / "main.py")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    server = await anyio.open_process(
        [str(bin_ / "hypercorn"), "main:app", "--bind", f"127.0.0.1:{port}"],
        cwd=app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await _wait_listening(port, server)
        address = f"127.0.0.1:{port}"
        async with connect(address, "/chat") as client:
            said = await client.request("say", {"text": "hello"}, id=1)
            assert said == {"event": "said", "data": {"text": "hello", "length": 5}, "id": 1}
            error = await client.request("say", {"txt": "hello"})
            assert error["event"] == "error"
            assert error["data"]["errors"][0]["loc"] == ["text"]
        # The package's own client, from the [client] extra of the new venv.
        script = (
            "import asyncio, json\n"
            "from gatewayasgi.client import GatewayClient\n"
            "async def main():\n"
            f"    async with GatewayClient('ws://{address}/chat') as client:\n"
            "        print(json.dumps(await client.call('say', {'text': 'hi'}, timeout=5)))\n"
            "asyncio.run(main())\n"
        )
        with anyio.fail_after(TIMEOUT):
            reply = await anyio.run_process([str(python), "-c", script], cwd=app_dir, env=env)
        assert json.loads(reply.stdout) == {"text": "hi", "length": 2}
    finally:
        server.terminate()
        with anyio.fail_after(TIMEOUT):
            output = await _read_all(server)
            await server.wait()
    assert b"Traceback" not in output, output.decode()
    print(f"wheel test: {time.monotonic() - started:.1f} s")


def test_the_sdist_installs_in_a_new_venv(dist: Path, tmp_path: Path) -> None:
    """pip builds the sdist with the declared backend and installs its dependencies."""
    python = new_venv(tmp_path / "venv")
    pip_into(python, dist / f"gatewayasgi-{VERSION}.tar.gz", cwd=tmp_path)
    found = run(
        python,
        "-c",
        "import gatewayasgi, importlib.metadata as m, pydantic, orjson, anyio;"
        "print(m.version('gatewayasgi'), gatewayasgi.__file__)",
        cwd=tmp_path,
        timeout=TIMEOUT,
    )
    version, path = found.split()
    assert version == VERSION and path.startswith(str(tmp_path / "venv"))


async def _wait_listening(port: int, server: anyio.abc.Process) -> None:
    with anyio.fail_after(TIMEOUT * 2):
        while True:
            if server.returncode is not None:
                output = (await _read_all(server)).decode()
                raise AssertionError(f"hypercorn exited before listening:\n{output}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


async def _read_all(process: anyio.abc.Process) -> bytes:
    assert process.stdout is not None
    chunks = [chunk async for chunk in process.stdout]
    return b"".join(chunks)
