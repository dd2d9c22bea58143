"""``gatewayasgi generate gateway --name chat [--path DIR]``: scaffold a gateway file.

``gatewayasgi asyncapi module:app``: print the gateways' AsyncAPI 3.0 document.
``gatewayasgi generate client-types module:app [-o FILE]``: write their TypeScript event maps.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = '''"""The {title} gateway.

Serve it from this file's directory (the module must be importable from where the server
starts): hypercorn {module}:app
"""

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


@WebSocketGateway(namespace="/{namespace}")
class {cls}:
    @SubscribeMessage("ping")
    async def ping(self, data=MessageBody()):
        return {{"event": "pong", "data": data}}


app = GatewayMiddleware(gateways=[{cls}])
'''

_WORD = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def gateway_source(name: str) -> tuple[str, str]:
    """(file name, source) of a generated gateway called ``name``.

    ``chat``, ``user-events``, ``UserEvents`` and ``UserEventsGateway`` all work: the
    words make the file (``user_events_gateway.py``), the class (``UserEventsGateway``)
    and the namespace (``/user-events``).
    """
    words = [word for chunk in _WORD.findall(name) for word in _CAMEL.findall(chunk)]
    if len(words) > 1 and words[-1].lower() == "gateway":
        words.pop()
    if not words or not words[0][0].isalpha():
        raise ValueError(f"gateway name must start with a letter, got {name!r}")
    lower = [word.lower() for word in words]
    cls = "".join(word[:1].upper() + word[1:] for word in words) + "Gateway"
    module = "_".join(lower) + "_gateway"
    source = TEMPLATE.format(
        title=" ".join(lower), module=module, namespace="-".join(lower), cls=cls
    )
    return f"{module}.py", source


def _generate_gateway(args: argparse.Namespace) -> int:
    try:
        filename, source = gateway_source(args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    directory = Path(args.path)
    target = directory / filename
    if target.exists() and not args.force:
        print(f"error: {target} already exists (use --force to overwrite)", file=sys.stderr)
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(source, encoding="utf-8")
    print(f"created {target}")
    print(f"serve it with:\n  {serve_command(directory, target.stem)}")
    return 0


def serve_command(directory: Path, module: str) -> str:
    """The shell command that serves ``module:app`` written into ``directory``.

    The server imports ``module`` from its working directory, so a file written
    elsewhere needs the server started there (hypercorn has no ``--app-dir``).
    """
    command = f"hypercorn {module}:app"
    if directory.resolve() == Path.cwd().resolve():
        return command
    return f"cd {shlex.quote(str(directory))} && {command}"


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"created {target}", file=sys.stderr)


def _document(args: argparse.Namespace) -> dict[str, object] | None:
    from gatewayasgi.asyncapi import asyncapi_document
    from gatewayasgi.exceptions import ConfigurationError
    from gatewayasgi.loader import load_middleware

    try:
        middleware = load_middleware(args.app, args.app_dir)
    except (ConfigurationError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return asyncapi_document(middleware)


def _asyncapi(args: argparse.Namespace) -> int:
    document = _document(args)
    if document is None:
        return 1
    _write(json.dumps(document, indent=2) + "\n", args.output)
    return 0


def _client_types(args: argparse.Namespace) -> int:
    from gatewayasgi.asyncapi import client_types

    document = _document(args)
    if document is None:
        return 1
    _write(client_types(document), args.output)
    return 0


def _app_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    parser.add_argument("app", help="the ASGI app, module:attribute (e.g. main:app)")
    parser.add_argument("-o", "--output", help=f"write {output} there instead of stdout")
    parser.add_argument("--app-dir", default=".", help="directory to import the module from")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatewayasgi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", aliases=["g"], help="scaffold code")
    kinds = generate.add_subparsers(dest="kind", required=True)
    gateway = kinds.add_parser("gateway", help="write NAME_gateway.py")
    gateway.add_argument("-n", "--name", required=True, help="gateway name, e.g. chat")
    gateway.add_argument("-p", "--path", default=".", help="directory to write into")
    gateway.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    gateway.set_defaults(handler=_generate_gateway)
    types = kinds.add_parser(
        "client-types", help="write the TypeScript event maps of an app's gateways"
    )
    _app_arguments(types, "the .ts file")
    types.set_defaults(handler=_client_types)
    asyncapi = commands.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of an app")
    _app_arguments(asyncapi, "the JSON")
    asyncapi.set_defaults(handler=_asyncapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gatewayasgi`` command."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
