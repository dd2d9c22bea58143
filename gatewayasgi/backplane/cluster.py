"""One node's part in cluster requests: asking the other nodes, and answering them.

A ``ClusterNode`` belongs to a ``Backplane`` (one per middleware and process). Each
gateway server registers a ``Responder`` for its namespace: the function that carries a
request out on the node's own clients. Then:

* ``ask`` publishes a request and gathers the answers of every live node (``peers``)
  until all answered, the ones that did not stopped being live, or the timeout passed;
* ``order`` publishes a request nobody answers (join, leave, disconnect); with
  ``acknowledge_joins`` (what the backplane asks) a join is asked instead, returning once
  every live node reported its clients joined (their room channels subscribed), at
  most ``JOIN_TIMEOUT`` seconds;
* requests from other nodes run in the backplane's task group, with two budgets so
  that calls waiting on clients that never answer cannot starve the rest: at most
  ``MAX_SERVING_CALLS`` room calls (and ``MAX_SERVING_CALL_BYTES`` of their messages,
  which they hold until their clients answer), and apart from them at most ``MAX_SERVING`` other
  requests (fetches, presence, orders). A call past its budget is still answered, at
  once, from the other budget: its clients are reported as not answering (the responder
  runs with ``busy=True``). A request past ``MAX_SERVING`` is dropped and counted;
* each request is served within its asker's deadline (a call's timeout plus
  ``REPLY_GRACE``, a fetch's ``t``, ``ORDER_TIMEOUT`` for orders): past it the asker no
  longer listens, so the work is cancelled and the answer never sent;
* answers go back on the requester's reply channel in parts (``rpc.pack_replies``);
* dropped and late requests are counted (``dropped_requests``, ``late_answers``) and
  logged at most once per ``DROP_LOG_INTERVAL`` per kind, with a count;
* a heartbeat per namespace every ``HEARTBEAT_INTERVAL`` tells the others this node is
  alive; a goodbye on shutdown lets them stop waiting for it at once.

Without a started backplane (no broker, or no lifespan) there are no peers: every
request is answered by the local node alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from time import monotonic
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from gatewayasgi._types import JSONValue
from gatewayasgi.backplane import rpc
from gatewayasgi.backplane.peers import HEARTBEAT_INTERVAL, MAX_PEERS, Peers
from gatewayasgi.brokers.base import Broker
from gatewayasgi.exceptions import GatewayError

logger = logging.getLogger("gatewayasgi")


class Responder(Protocol):
    """Runs a request on this node's clients of one namespace; returns the reply items.

    With ``busy=True`` (a call past ``MAX_SERVING_CALLS``) it calls nobody and reports
    the targeted clients as not answering, at once.
    """

    def __call__(self, request: rpc.Request, *, busy: bool = False) -> Awaitable[list[JSONValue]]:
        """Carry out ``request`` here."""
        ...


MAX_PENDING_REQUESTS = 1024
"""Requests this node may wait on at once; one more raises ``ClusterBusyError``."""
MAX_SERVING = 256
"""Requests from other nodes other than calls (fetches, presence, joins, leaves,
disconnects) served at once, plus calls answered ``busy``; more are dropped."""
MAX_SERVING_CALLS = 1024
"""Room calls from other nodes served at once (each waits for its clients up to its
timeout); more are answered at once with their clients as not answering."""
MAX_SERVING_CALL_BYTES = 64 * 1024 * 1024
"""Bytes of call requests served at once (each holds its data until it is answered);
past it, calls are answered at once as past ``MAX_SERVING_CALLS``."""
ORDER_TIMEOUT = 10.0
"""Seconds an order (join, leave, disconnect) may take here before it is given up."""
JOIN_TIMEOUT = 5.0
"""Seconds an acknowledged join waits for the other nodes (``acknowledge_joins``)."""
FETCH_TIMEOUT = 5.0
"""Seconds to answer a fetch that does not say how long its asker waits (older nodes)."""
DROP_LOG_INTERVAL = 10.0
"""At most one warning per kind of drop in this many seconds (with the count)."""
PRUNE_INTERVAL = 0.25
"""How often a waiting request stops waiting for nodes that are no longer live."""
REPLY_GRACE = rpc.REPLY_GRACE


class _Drops:
    """Counts dropped cluster messages by kind; one warning per kind per interval."""

    __slots__ = ("_example", "_last", "_unreported")

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._unreported: dict[str, int] = {}
        self._example: dict[str, str] = {}

    def add(self, kind: str, example: str, now: float) -> None:
        """Count one drop of ``kind`` (a fixed word: the dicts stay small)."""
        self._unreported[kind] = self._unreported.get(kind, 0) + 1
        self._example[kind] = example
        if now - self._last.get(kind, -DROP_LOG_INTERVAL) >= DROP_LOG_INTERVAL:
            self._report(kind, now)

    def flush(self, now: float) -> None:
        """Report the kinds whose interval has passed (called with the heartbeats)."""
        for kind in list(self._unreported):
            if now - self._last.get(kind, -DROP_LOG_INTERVAL) >= DROP_LOG_INTERVAL:
                self._report(kind, now)

    def _report(self, kind: str, now: float) -> None:
        count = self._unreported.pop(kind)
        example = self._example.pop(kind)
        self._last[kind] = now
        logger.warning(
            "cluster: %d %s in the last %g s (latest: %s)", count, kind, DROP_LOG_INTERVAL, example
        )


class ClusterBusyError(GatewayError):
    """This node already waits on ``MAX_PENDING_REQUESTS`` cluster requests."""


@dataclass(slots=True)
class _Gather:
    """The answers to one request, node by node."""

    expected: set[str]
    parts: dict[str, dict[int, list[JSONValue]]] = field(default_factory=dict)
    finished: dict[str, list[JSONValue]] = field(default_factory=dict)
    done: anyio.Event = field(default_factory=anyio.Event)

    def add(self, reply: rpc.Reply) -> None:
        if reply.node in self.finished:
            return
        if reply.node not in self.parts and len(self.parts) + len(self.finished) >= MAX_PEERS:
            return  # no more nodes than a namespace remembers: the store stays bounded
        parts = self.parts.setdefault(reply.node, {})
        parts[reply.part] = reply.items
        if len(parts) == reply.parts:
            del self.parts[reply.node]
            self.finished[reply.node] = [item for n in sorted(parts) for item in parts[n]]
            self.check()

    def check(self, live: set[str] | None = None) -> None:
        if live is not None:
            self.expected &= live | set(self.finished)
        if self.expected <= self.finished.keys():
            self.done.set()


@dataclass(frozen=True, slots=True)
class Gathered:
    """What the other nodes answered to one request."""

    items: list[JSONValue]
    """Every item of every node that answered in full, node after node."""
    nodes: int
    """Nodes that answered in full."""
    missing: int
    """Live nodes that did not answer in time (their clients are not in ``items``)."""


class ClusterNode:
    """Asks and answers cluster requests for one backplane node (module docstring)."""

    def __init__(
        self,
        broker: Broker,
        node_id: str,
        *,
        max_message_size: int,
        acknowledge_joins: bool = False,
    ) -> None:
        self.broker = broker
        self.node_id = node_id
        self.acknowledge_joins = acknowledge_joins
        """Joins wait for every live node's report (interest routing: the join edge)."""
        self.peers = Peers()
        self.dropped_requests = 0
        """Requests from other nodes dropped: malformed, or past ``MAX_SERVING``."""
        self.busy_calls = 0
        """Calls from other nodes answered at once, past ``MAX_SERVING_CALLS``."""
        self.late_answers = 0
        """Requests from other nodes given up at their asker's deadline."""
        self._max_message = max_message_size
        self._responders: dict[str, Responder] = {}
        self._pending: dict[int, _Gather] = {}
        self._next_id = 0
        self._serving = 0
        self._serving_calls = 0
        self._serving_call_bytes = 0
        self._drops = _Drops()
        self._tasks: TaskGroup | None = None
        self._wake: anyio.Event | None = None

    @property
    def started(self) -> bool:
        """True between ``start`` and ``close``: requests reach the other nodes."""
        return self._tasks is not None

    def serve(self, namespace: str, responder: Responder) -> None:
        """Answer requests about ``namespace`` with ``responder`` (before ``start``)."""
        self._responders[namespace] = responder

    def channels(self) -> list[str]:
        """The channels this node listens on: one per namespace, plus its reply channel."""
        return [*map(rpc.request_channel, self._responders), rpc.reply_channel(self.node_id)]

    async def start(self, task_group: TaskGroup) -> None:
        """Subscribe (the broker is started), then heartbeat in ``task_group``."""
        for channel in self.channels():
            await self.broker.subscribe(channel)
        self._tasks = task_group
        self._wake = anyio.Event()
        task_group.start_soon(self._heartbeats)

    async def close(self) -> None:
        """Say goodbye on every namespace; requests are local-only from now on."""
        if self._tasks is None:
            return
        self._tasks = None
        for namespace in self._responders:
            await self._publish(namespace, rpc.Request(rpc.BYE, self.node_id))

    # -- asking ---------------------------------------------------------------------

    async def ask(self, namespace: str, request: rpc.Request, within: float) -> Gathered:
        """Publish ``request`` and gather every live node's answer (see the module)."""
        expected = self.peers.live(namespace, monotonic()) if self.started else set()
        if not expected:
            return Gathered([], 0, 0)
        if len(self._pending) >= MAX_PENDING_REQUESTS:
            raise ClusterBusyError(f"{MAX_PENDING_REQUESTS} cluster requests are in flight")
        self._next_id += 1
        request_id = self._next_id
        gather = self._pending[request_id] = _Gather(set(expected))
        try:
            sent = await self._publish(
                namespace, replace(request, node=self.node_id, id=request_id)
            )
            if sent:
                with anyio.move_on_after(within):
                    while not gather.done.is_set():
                        with anyio.move_on_after(PRUNE_INTERVAL):
                            await gather.done.wait()
                        gather.check(self.peers.live(namespace, monotonic()))
        finally:
            del self._pending[request_id]
        items = [item for answer in gather.finished.values() for item in answer]
        missing = len(gather.expected - gather.finished.keys())
        return Gathered(items, len(gather.finished), missing)

    async def order(self, namespace: str, request: rpc.Request) -> None:
        """Publish a request no node answers (join, leave, disconnect).

        With ``acknowledge_joins`` a join waits for every live node instead: each one
        answers once its clients joined, so a frame emitted after this returns reaches
        them.
        """
        if request.op == rpc.JOIN and self.acknowledge_joins:
            try:
                await self.ask(namespace, request, JOIN_TIMEOUT)
                return
            except ClusterBusyError:
                pass  # too many requests in flight: ordered, unacknowledged
        if self.started:
            await self._publish(namespace, replace(request, node=self.node_id, id=0))

    async def _publish(self, namespace: str, request: rpc.Request) -> bool:
        try:
            sent = await self.broker.publish(
                rpc.request_channel(namespace), rpc.pack_request(request)
            )
        except Exception:
            logger.exception("gateway %s: cluster request %r failed", namespace, request.op)
            return False
        return sent is not False

    # -- answering --------------------------------------------------------------------

    def on_message(self, channel: str, data: bytes) -> None:
        """A message on one of ``channels()``; never blocks, never raises."""
        namespace = rpc.namespace_of(channel)
        try:
            if namespace is not None:
                request = rpc.unpack_request(data, self._max_message)
                self._on_request(namespace, request, len(data))
            elif channel == rpc.reply_channel(self.node_id):
                reply = rpc.unpack_reply(data, self._max_message)
                gather = self._pending.get(reply.id)
                if gather is not None:
                    gather.add(reply)
        except rpc.RpcError as exc:
            self.dropped_requests += 1
            self._drops.add("malformed messages dropped", f"{channel}: {exc}", monotonic())

    def _on_request(self, namespace: str, request: rpc.Request, size: int = 0) -> None:
        if request.node == self.node_id:
            return  # our own echo: the requester serves its clients itself
        if request.op == rpc.HEARTBEAT:
            if self.peers.heard(namespace, request.node, monotonic()) and request.hello:
                self._wake_heartbeats()
            return
        if request.op == rpc.BYE:
            self.peers.gone(namespace, request.node)
            for gather in self._pending.values():
                gather.check(self.peers.live(namespace, monotonic()))
            return
        responder = self._responders.get(namespace)
        tasks = self._tasks
        if responder is None or tasks is None:
            return
        busy = False
        if request.op == rpc.CALL:
            if (
                self._serving_calls < MAX_SERVING_CALLS
                and self._serving_call_bytes + size <= MAX_SERVING_CALL_BYTES
            ):
                self._serving_calls += 1
                self._serving_call_bytes += size
                tasks.start_soon(self._answer, namespace, responder, request, size, False)
                return
            busy = True  # answered at once, from the other budget
        if self._serving >= MAX_SERVING:
            self.dropped_requests += 1
            example = f"gateway {namespace}: {MAX_SERVING} served at once, dropped a {request.op!r}"
            self._drops.add("cluster requests dropped", example, monotonic())
            return
        if busy:
            self.busy_calls += 1
            example = (
                f"gateway {namespace}: {self._serving_calls} calls "
                f"({self._serving_call_bytes} bytes) served at once"
            )
            self._drops.add("calls answered as not answering", example, monotonic())
        self._serving += 1
        tasks.start_soon(self._answer, namespace, responder, request, None, busy)

    async def _answer(
        self,
        namespace: str,
        responder: Responder,
        request: rpc.Request,
        call_size: int | None,
        busy: bool,
    ) -> None:
        """Serve ``request``; ``call_size``: its size, when it counts as a call served."""
        try:
            with anyio.move_on_after(_deadline(request)) as scope:
                items = await responder(request, busy=busy)
                if request.id:
                    channel = rpc.reply_channel(request.node)
                    for part in rpc.pack_replies(self.node_id, request.id, items):
                        await self.broker.publish(channel, part)
            if scope.cancelled_caught:
                self.late_answers += 1
                example = f"gateway {namespace}: a {request.op!r} from {request.node}"
                self._drops.add("requests given up at their deadline", example, monotonic())
        except Exception:
            logger.exception("gateway %s: serving cluster request %r failed", namespace, request.op)
        finally:
            if call_size is not None:
                self._serving_calls -= 1
                self._serving_call_bytes -= call_size
            else:
                self._serving -= 1

    # -- heartbeats ---------------------------------------------------------------------

    def _wake_heartbeats(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _heartbeats(self) -> None:
        hello = True  # the first one asks the others to announce themselves at once
        while self._tasks is not None:
            wake = self._wake = anyio.Event()
            for namespace in self._responders:
                beat = rpc.Request(rpc.HEARTBEAT, self.node_id, hello=hello)
                await self._publish(namespace, beat)
            hello = False
            with anyio.move_on_after(HEARTBEAT_INTERVAL):
                await wake.wait()
            now = monotonic()
            self.peers.prune(now)
            self._drops.flush(now)


def _deadline(request: rpc.Request) -> float:
    """Seconds this node may spend on ``request``: its asker no longer listens after."""
    if request.op == rpc.CALL:
        return request.timeout + REPLY_GRACE
    if request.op == rpc.FETCH:
        return request.timeout or FETCH_TIMEOUT
    return ORDER_TIMEOUT
