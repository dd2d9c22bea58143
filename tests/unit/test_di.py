"""Dependency injection: providers, instances, errors naming what is missing."""

from __future__ import annotations

import pytest

from gatewayasgi import Injectable
from gatewayasgi.di import Container
from gatewayasgi.exceptions import ConfigurationError, MissingProviderError


@Injectable
class Config:
    def __init__(self) -> None:
        self.url = "db://"


@Injectable()
class Database:
    def __init__(self, config: Config) -> None:
        self.config = config


class Repository:
    def __init__(self, db: Database, limit: int = 10) -> None:
        self.db = db
        self.limit = limit


class NeedsUnknown:
    def __init__(self, thing: Repository) -> None:
        self.thing = thing


class A:
    def __init__(self, b: B) -> None: ...


class B:
    def __init__(self, a: A) -> None: ...


def test_providers_are_singletons_resolved_recursively() -> None:
    container = Container([Config, Database, Repository])
    repo = container.build(Repository)
    assert repo.db is container.get(Database)
    assert repo.db.config is container.get(Config)
    assert repo.limit == 10


def test_ready_instances_are_used_as_they_are() -> None:
    config = Config()
    container = Container([config, Database])
    assert container.get(Database).config is config


def test_missing_provider_names_class_parameter_and_type() -> None:
    container = Container([Config])
    with pytest.raises(MissingProviderError) as info:
        container.build(NeedsUnknown)
    message = str(info.value)
    assert "NeedsUnknown" in message and "'thing'" in message and "Repository" in message


def test_unannotated_parameter_without_default_is_an_error() -> None:
    class Loose:
        def __init__(self, anything) -> None:  # type: ignore[no-untyped-def]
            self.anything = anything

    with pytest.raises(MissingProviderError, match="'anything'"):
        Container().build(Loose)


def test_cycles_are_reported_with_the_chain() -> None:
    with pytest.raises(ConfigurationError, match="A -> B -> A"):
        Container([A, B]).build(A)


def test_local_classes_under_postponed_annotations_match_by_name() -> None:
    class LocalService:
        pass

    class UsesLocal:
        def __init__(self, service: LocalService) -> None:
            self.service = service

    container = Container([LocalService])
    assert isinstance(container.build(UsesLocal).service, LocalService)


class Base:
    pass


class Impl(Base):
    pass


class Uses:
    def __init__(self, dep: Base) -> None:
        self.dep = dep


def test_a_subclass_provider_satisfies_its_base() -> None:
    assert isinstance(Container([Impl]).build(Uses).dep, Impl)
