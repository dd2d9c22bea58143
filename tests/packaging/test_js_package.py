"""The TypeScript client as a user gets it: ``npm pack`` on a clean copy of ``clients/js``
(its ``prepack`` builds ``dist/``) writes a tarball; a new Node project installs it from
the file, compiles against it with tsc in strict mode (the types come from the tarball: a
``@ts-expect-error`` line proves they are not ``any``), and runs the result against a real
gateway. The TypeScript blocks of the client's README, which the site shows as the
TypeScript client page, compile in that project too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.docs.test_samples import sample
from tests.packaging.conftest import ROOT, clean_copy
from tests.servers import TIMEOUT, run_server

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        shutil.which("npm") is None or shutil.which("node") is None,
        reason="node and npm are needed: make node, or install Node.js >= 20",
    ),
]

NPM = 180.0
"""Bound on one npm command (a cold cache downloads typescript)."""
CLIENT = json.loads((ROOT / "clients" / "js" / "package.json").read_text())


def npm(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["npm", *args, "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=NPM,
    )
    assert done.returncode == 0, f"npm {args}\n{done.stdout}\n{done.stderr}"
    assert "npm warn" not in done.stderr.lower(), done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    started = time.monotonic()
    clone = clean_copy(tmp_path_factory.mktemp("clone"), "clients/js") / "clients" / "js"
    assert not (clone / "dist").exists()
    npm("ci", cwd=clone)
    packed = json.loads(npm("pack", "--json", cwd=clone))
    print(f"npm ci and pack: {time.monotonic() - started:.1f} s")
    yield clone / packed[0]["filename"]


def test_the_tarball_holds_the_build_and_its_types_only(tarball: Path) -> None:
    with tarfile.open(tarball) as tar:
        names = {m.name.removeprefix("package/") for m in tar.getmembers()}
    assert {"package.json", "README.md", "dist/index.js", "dist/index.d.ts"} <= names
    assert not [n for n in names if n.startswith(("src/", "test/", "node_modules/"))]
    assert {n.removesuffix(".js") for n in names if n.endswith(".js")} == {
        n.removesuffix(".d.ts") for n in names if n.endswith(".d.ts")
    }


MAIN = """\
import { WebSocket } from "ws";
import { AckError, GatewayClient } from "@gatewayasgi/client";

interface ServerEvents {
  said: { text: string; length: number };
}
interface ClientEvents {
  say: (body: { text: string }) => { text: string; length: number };
}

const url = process.argv[2] ?? "ws://127.0.0.1:8000/chat";
const client = new GatewayClient<ServerEvents, ClientEvents>(url, { WebSocket });
await client.connect();
const said = await client.emitWithAck("say", { text: "hello" }, { timeout: 5000 });
const length: number = said.length;
let errors: unknown = null;
try {
  // @ts-expect-error the package's types know say's payload: text, not txt
  await client.emitWithAck("say", { txt: "hello" }, { timeout: 5000 });
} catch (error) {
  if (!(error instanceof AckError)) throw error;
  errors = error.data["errors"];
}
client.close();
console.log(JSON.stringify({ said, length, errors }));
"""

# What the README's blocks use without defining (they are excerpts of an app).
README_PRELUDES = [
    "declare function getToken(): Promise<string>;\n"
    "declare const window: { confirm(text: string): boolean };\n",
    'import type { GatewayClient } from "@gatewayasgi/client";\n'
    "declare const client: GatewayClient;\n"
    "declare function resync(reason?: string | null): void;\n",
    'import type { GatewayClient } from "@gatewayasgi/client";\n'
    "declare const client: GatewayClient;\n"
    "declare function render(item: unknown): void;\n",
    'import type { GatewayClient } from "@gatewayasgi/client";\n'
    "declare const client: GatewayClient;\n"
    "declare const chatId: string;\n"
    "declare function render(item: unknown): void;\n"
    "declare function showNothingRunning(): void;\n",
]


def readme_blocks() -> list[str]:
    readme = (ROOT / "clients" / "js" / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```ts\n(.*?)```\n", readme, re.DOTALL)


@pytest.fixture(scope="module")
def consumer(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Node project of its own that depends on the tarball, built with tsc."""
    started = time.monotonic()
    project = tmp_path_factory.mktemp("consumer")
    dev = CLIENT["devDependencies"]
    package = {
        "name": "gatewayasgi-consumer",
        "private": True,
        "type": "module",
        "dependencies": {"@gatewayasgi/client": f"file:{tarball}", "ws": dev["ws"]},
        "devDependencies": {k: dev[k] for k in ("typescript", "@types/ws", "@types/node")},
    }
    (project / "package.json").write_text(json.dumps(package, indent=2))
    blocks = readme_blocks()
    assert len(blocks) == len(README_PRELUDES), "a TypeScript block of the README is unchecked"
    for n, (prelude, block) in enumerate(zip(README_PRELUDES, blocks, strict=True)):
        (project / f"readme{n}.ts").write_text(prelude + block)
    (project / "main.ts").write_text(MAIN)
    config = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "lib": ["ES2022"],
            "types": ["node"],
            "strict": True,
            "skipLibCheck": False,
            "outDir": "dist",
        },
        "include": ["*.ts"],
    }
    (project / "tsconfig.json").write_text(json.dumps(config, indent=2))
    npm("install", cwd=project)
    installed = project / "node_modules" / "@gatewayasgi" / "client"
    assert not installed.is_symlink() and (installed / "dist" / "index.d.ts").is_file()
    build = subprocess.run(
        [str(project / "node_modules" / ".bin" / "tsc"), "-p", str(project)],
        capture_output=True,
        text=True,
        timeout=NPM,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    print(f"consumer install and tsc: {time.monotonic() - started:.1f} s")
    return project


async def test_a_node_project_builds_against_the_tarball_and_runs_it(consumer: Path) -> None:
    module = sample("first_fastapi")
    async with run_server(module.app, "hypercorn") as address:
        with anyio.fail_after(TIMEOUT * 2):
            done = await anyio.run_process(
                ["node", "dist/main.js", f"ws://{address}/chat"], cwd=consumer, check=False
            )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert result["said"] == {"text": "hello", "length": 5} and result["length"] == 5
    assert result["errors"] == [{"type": "missing", "loc": ["text"], "msg": "Field required"}]
