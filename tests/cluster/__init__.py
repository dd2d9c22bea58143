"""Server -> client calls, presence and cluster-wide operations (real servers, redis)."""
