"""Where session recovery keeps what it needs: histories of emitted frames
(``EmissionLog``) and sessions waiting for their client (``SessionStore``).

``stores.base`` holds the two contracts, ``stores.memory`` keeps both in the process,
``stores.redis`` in Redis (a ``RedisBroker`` provides them). The capability that uses
them is ``gatewayasgi.recovery``.
"""
