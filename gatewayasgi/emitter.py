"""Public home of the emitters (they live in ``gatewayasgi.backplane.emitter``)."""

from gatewayasgi.backplane.emitter import EmitOperator, Emitter, RedisEmitter

__all__ = ["EmitOperator", "Emitter", "RedisEmitter"]
