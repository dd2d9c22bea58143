"""A provider whose constructor needs a value (not a provider) says to pass an instance."""

from __future__ import annotations

from typing import Optional

import pytest

from gatewayasgi import GatewayMiddleware, Injectable, WebSocketGateway
from gatewayasgi.di import Container
from gatewayasgi.exceptions import MissingProviderError


@Injectable
class Repository:
    def __init__(self, url: str) -> None:
        self.url = url


@Injectable
class Cache:
    def __init__(self, hosts: list[str], ttl: Optional[int]) -> None:  # noqa: UP045
        self.hosts = hosts


class Unregistered:
    pass


@Injectable
class NeedsAClass:
    def __init__(self, other: Unregistered) -> None:
        self.other = other


@WebSocketGateway("/repo")
class RepoGateway:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo


@WebSocketGateway("/configured")
class ConfiguredGateway:
    def __init__(self, url: str) -> None:
        self.url = url


def test_a_str_parameter_says_to_pass_an_instance() -> None:
    with pytest.raises(MissingProviderError) as info:
        GatewayMiddleware(gateways=[RepoGateway], providers=[Repository])
    message = str(info.value)
    assert "constructor parameter 'url' needs str, which is not a provider" in message
    assert "pass the instance" in message
    assert "providers=[Repository(url=...)]" in message


def test_the_instance_it_suggests_works() -> None:
    middleware = GatewayMiddleware(gateways=[RepoGateway], providers=[Repository("sqlite://")])
    assert middleware.get(RepoGateway).repo.url == "sqlite://"


def test_generic_and_optional_values_say_the_same() -> None:
    with pytest.raises(MissingProviderError, match=r"providers=\[Cache\(hosts=\.\.\.\)\]"):
        Container([Cache]).get(Cache)


def test_a_missing_class_still_says_to_add_it_to_providers() -> None:
    with pytest.raises(MissingProviderError) as info:
        Container([NeedsAClass]).get(NeedsAClass)
    assert str(info.value).endswith("add it to GatewayMiddleware(providers=[...])")


def test_a_gateway_needing_a_value_is_told_to_use_a_provider() -> None:
    with pytest.raises(MissingProviderError, match="a gateway's constructor receives providers"):
        GatewayMiddleware(gateways=[ConfiguredGateway])
