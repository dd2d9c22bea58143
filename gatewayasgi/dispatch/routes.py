"""Namespace routing: a websocket path -> the gateway that owns it, plus path params."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gatewayasgi.exceptions import DuplicateNamespaceError

T = TypeVar("T")
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")


@dataclass(frozen=True, slots=True)
class _Pattern(Generic[T]):
    regex: re.Pattern[str]
    target: T


def route_path(path: str, root_path: str) -> str:
    """The path a namespace is matched against: ``path`` without ``root_path`` and
    without a trailing slash."""
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


class Routes(Generic[T]):
    """Exact namespaces in a dict, parametrised ones (``/rooms/{room_id}``) as regexes."""

    def __init__(self, entries: Iterable[tuple[str, T, str]]) -> None:
        self._exact: dict[str, T] = {}
        self._patterns: list[_Pattern[T]] = []
        seen: dict[str, str] = {}
        for namespace, target, owner in entries:
            shape = _PARAM.sub("{}", namespace)
            if shape in seen:
                raise DuplicateNamespaceError(
                    f"Gateways {seen[shape]} and {owner} both use namespace '{namespace}'"
                )
            seen[shape] = owner
            if _PARAM.search(namespace):
                regex = "".join(
                    f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part)
                    for index, part in enumerate(_PARAM.split(namespace))
                )
                self._patterns.append(_Pattern(re.compile(f"^{regex}$"), target))
            else:
                self._exact[namespace] = target

    def match(self, path: str) -> tuple[T, dict[str, str]] | None:
        """The target owning ``path`` and its path parameters, or ``None``."""
        target = self._exact.get(path)
        if target is not None:
            return target, {}
        for pattern in self._patterns:
            found = pattern.regex.match(path)
            if found is not None:
                return pattern.target, found.groupdict()
        return None

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)
