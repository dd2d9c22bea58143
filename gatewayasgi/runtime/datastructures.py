"""Read-only views of the handshake scope, in Starlette's vocabulary, without Starlette."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from gatewayasgi._types import Scope


class Address(NamedTuple):
    """The peer's ``host`` and ``port`` (``client.client.host``)."""

    host: str
    port: int


class Headers(Mapping[str, str]):
    """Case-insensitive handshake headers; ``getlist`` returns every value of a name."""

    __slots__ = ("_list",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._list = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]

    def __getitem__(self, key: str) -> str:
        key = key.lower()
        for name, value in self._list:
            if name == key:
                return value
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(name == key.lower() for name, _ in self._list)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._list))

    def __len__(self) -> int:
        return len(dict.fromkeys(name for name, _ in self._list))

    def getlist(self, key: str) -> list[str]:
        """Every value sent for ``key``, in order."""
        key = key.lower()
        return [value for name, value in self._list if name == key]

    def raw(self) -> list[tuple[str, str]]:
        """All (name, value) pairs, names lower-cased."""
        return list(self._list)

    def __repr__(self) -> str:
        return f"Headers({self._list!r})"


class QueryParams(Mapping[str, str]):
    """The query string; ``params[key]`` is the last value, ``getlist`` all of them."""

    __slots__ = ("_dict", "_list")

    def __init__(self, query_string: bytes | str) -> None:
        text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
        self._list = parse_qsl(text, keep_blank_values=True)
        self._dict = dict(self._list)

    def __getitem__(self, key: str) -> str:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in order."""
        return [value for name, value in self._list if name == key]

    def __repr__(self) -> str:
        return f"QueryParams({self._list!r})"


class URL(str):
    """The connection URL as a string, with ``scheme``, ``hostname``, ``port``,
    ``path`` and ``query`` attributes."""

    scheme: str
    hostname: str | None
    port: int | None
    path: str
    query: str

    @classmethod
    def from_scope(cls, scope: Scope) -> URL:
        scheme = scope.get("scheme") or "ws"
        server = scope.get("server")
        path, root_path = scope.get("path", "/"), scope.get("root_path", "")
        if root_path and not path.startswith(root_path):
            path = root_path + path
        query = scope.get("query_string", b"").decode("latin-1")
        host_header = Headers(scope.get("headers", [])).get("host")
        if host_header:
            netloc = host_header
        elif server:
            netloc = f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
        else:
            netloc = ""
        url = cls(f"{scheme}://{netloc}{path}" + (f"?{query}" if query else ""))
        url.scheme = scheme
        hostname, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
        url.hostname = hostname or None
        url.port = int(port) if port.isdigit() else None
        url.path = path
        url.query = query
        return url


class State:
    """Attribute bag for per-connection data (``client.state.user = ...``)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__setattr__("_data", data if data is not None else {})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"'State' object has no attribute '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __delattr__(self, name: str) -> None:
        self._data.pop(name, None)
