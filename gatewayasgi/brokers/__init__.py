"""Brokers move bytes between processes over named channels.

``MemoryBroker`` (default) needs nothing; ``RedisBroker`` (``pip install
gatewayasgi[redis]``) carries deliveries across workers and hosts.
"""

from gatewayasgi.brokers.base import Broker, MessageHandler
from gatewayasgi.brokers.memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "MessageHandler"]


def __getattr__(name: str) -> object:
    # RedisBroker is imported lazily so that ``redis`` stays an optional extra.
    if name == "RedisBroker":
        from gatewayasgi.brokers.redis import RedisBroker

        return RedisBroker
    raise AttributeError(name)
