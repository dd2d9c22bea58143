"""Shared fixtures: the anyio backend for async tests."""

from __future__ import annotations

import pytest

from tests.redis_cluster import redis_cluster  # noqa: F401  (a fixture for every module)
from tests.redis_server import redis_server  # noqa: F401  (a fixture for every module)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
