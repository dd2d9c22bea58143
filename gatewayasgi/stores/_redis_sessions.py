"""``RedisSessionStore``: sessions in Redis hashes, changed only by their owner.

One hash per session, ``<prefix>session:<client id>``, with a TTL (the recovery window):
``owner``, ``token`` (the hex SHA-256 of the session's token) and ``data`` (orjson:
epoch, rooms, state, detached). Every change is a Lua script that compares the owner
(and, for a claim, the token hash) and writes in one step. The token hash is compared
in Lua with ``==``: it is the hash of a 256-bit secret, so timing reveals nothing useful.

``state`` leaves the process as JSON: values orjson cannot serialise are left out (their
keys logged once each, at warning level), and values it can (datetimes, dataclasses,
UUIDs) come back in their JSON form.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from gatewayasgi.stores import _redis_scripts as scripts
from gatewayasgi.stores.base import WRONG_IDENTITY, SessionRecord, SessionStore, WrongIdentity

try:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import RedisClusterException, RedisError
except ImportError as exc:  # pragma: no cover - the broker's import says the same
    raise ImportError(
        'RedisSessionStore needs the "redis" package: pip install "gatewayasgi[redis]"'
    ) from exc

logger = logging.getLogger("gatewayasgi.stores.redis")

# IndexError: redis-py's cluster client reading the layout of a cluster still forming
# (a node that knows no master yet).
_IO_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError, IndexError)
_MAX_CLIENT_ID = 128
# Keys of unserialisable state values already reported (bounded, so a stream of odd
# keys cannot grow it forever).
_MAX_REPORTED = 256


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisSessionStore(SessionStore):
    """A ``SessionStore`` any worker sharing the Redis server sees (``shared = True``).

    Usually made by ``RedisBroker.session_store(namespace)``; ``client`` may be a
    ``RedisCluster`` (every script touches one key: one slot). ``save`` returns ``False`` and
    ``claim`` returns ``None`` when Redis is unreachable (logged); ``drop`` raises the
    error (the record still expires with its TTL).
    """

    shared = True

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        key_prefix: str = "gatewayasgi:",
        owns_client: bool = True,
    ) -> None:
        self._client = client
        self._owns_client = owns_client
        self._prefix = key_prefix + "session:"
        self._save = client.register_script(scripts.SAVE)
        self._claim = client.register_script(scripts.CLAIM)
        self._drop = client.register_script(scripts.DROP)
        self._reported: set[str] = set()
        self._failing = False

    def key(self, client_id: str) -> str:
        """The Redis key of a session."""
        return self._prefix + client_id

    async def save(self, record: SessionRecord, owner: str, ttl: float) -> bool:
        data = {
            "e": record.epoch,
            "r": list(record.rooms),
            "s": self._portable(record.state),
            "d": record.detached,
            "t": _portable_offset(record.start),
            "m": {room: _portable_offset(offset) for room, offset in record.marks.items()},
        }
        if record.starts:
            data["p"] = {
                str(part): _portable_offset(offset) for part, offset in record.starts.items()
            }
        args: list[str | bytes | int] = [
            owner,
            record.token_hash,
            orjson.dumps(data),
            _ms(ttl),
            record.identity or "",
        ]
        try:
            written = await self._save(keys=[self.key(record.id)], args=args)
        except _IO_ERRORS as exc:
            self._failed("save", exc)
            return False
        self._recovered()
        return bool(written)

    async def claim(
        self,
        client_id: str,
        token_hash: str,
        owner: str,
        ttl: float,
        *,
        identity: str | None = None,
        new_token_hash: str | None = None,
    ) -> SessionRecord | WrongIdentity | None:
        if not client_id or len(client_id) > _MAX_CLIENT_ID:
            return None
        args: list[str | int] = [token_hash, owner, _ms(ttl), identity or "", new_token_hash or ""]
        try:
            data = await self._claim(keys=[self.key(client_id)], args=args)
        except _IO_ERRORS as exc:
            self._failed("claim", exc)
            return None
        self._recovered()
        if data is None:
            return None
        if data == -1:
            return WRONG_IDENTITY
        fields = orjson.loads(data)
        return SessionRecord(
            client_id,
            new_token_hash or token_hash,
            fields["e"],
            tuple(fields["r"]),
            fields["s"],
            fields["d"],
            identity,
            int(fields.get("t", 0)),
            {room: int(offset) for room, offset in fields.get("m", {}).items()},
            {int(part): int(offset) for part, offset in fields.get("p", {}).items()},
        )

    async def drop(self, client_id: str, owner: str) -> bool:
        return bool(await self._drop(keys=[self.key(client_id)], args=[owner]))

    async def close(self) -> None:
        """Release the connections (unless the client is shared, as with the broker's)."""
        if not self._owns_client:
            return
        if isinstance(self._client, RedisCluster):
            await self._client.aclose()
        else:
            await self._client.aclose(close_connection_pool=True)

    def _portable(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` without the values orjson cannot serialise."""
        try:
            orjson.dumps(state)
        except TypeError:
            pass
        else:
            return state
        kept: dict[str, Any] = {}
        for key, value in state.items():
            try:
                orjson.dumps({key: value})
            except TypeError:
                self._report(str(key), value)
            else:
                kept[key] = value
        return kept

    def _report(self, key: str, value: object) -> None:
        if key in self._reported or len(self._reported) >= _MAX_REPORTED:
            return
        self._reported.add(key)
        logger.warning(
            "session store: client.state[%r] (a %s) is not JSON-serialisable; it is not "
            "kept for a resume on another worker",
            key,
            type(value).__name__,
        )

    def _failed(self, operation: str, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            logger.warning("session store: %s failed: %s", operation, exc)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("session store: Redis answers again")


def _portable_offset(offset: int) -> int | str:
    """An offset as JSON can carry it: a partitioned history's offsets pass 64 bits (the
    partition sits below the stream id), so those travel as decimal strings."""
    return offset if offset < 1 << 63 else str(offset)
