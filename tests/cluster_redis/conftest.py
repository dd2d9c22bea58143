"""The session's Redis Cluster (``tests.redis_cluster``) for this folder's tests."""

from tests.redis_cluster import redis_cluster  # noqa: F401  (a fixture for these modules)
