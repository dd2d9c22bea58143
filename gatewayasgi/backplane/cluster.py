"""One node's part in cluster requests: asking the other nodes, and answering them.

A ``ClusterNode`` belongs to a ``Backplane`` (one per middleware and process). Each
gateway server registers a ``Responder`` for its namespace: the function that carries a
request out on the node's own clients. Then:

* ``ask`` publishes a request and gathers the answers of every live node (``peers``)
  until all answered, the ones that did not stopped being live, or the timeout passed;
* ``order`` publishes a request nobody answers (join, leave, disconnect);
* requests from other nodes run in the backplane's task group, at most
  ``MAX_SERVING`` at a time (more are dropped and counted), and their answers go back
  on the requester's reply channel in parts (``rpc.pack_replies``);
* a heartbeat per namespace every ``HEARTBEAT_INTERVAL`` tells the others this node is
  alive; a goodbye on shutdown lets them stop waiting for it at once.

Without a started backplane (no broker, or no lifespan) there are no peers: every
request is answered by the local node alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from time import monotonic

import anyio
from anyio.abc import TaskGroup

from gatewayasgi._types import JSONValue
from gatewayasgi.backplane import rpc
from gatewayasgi.backplane.peers import HEARTBEAT_INTERVAL, Peers
from gatewayasgi.brokers.base import Broker
from gatewayasgi.exceptions import GatewayError

logger = logging.getLogger("gatewayasgi")

Responder = Callable[[rpc.Request], Awaitable[list[JSONValue]]]
"""Runs a request on this node's clients of one namespace; returns the reply items."""

MAX_PENDING_REQUESTS = 1024
"""Requests this node may wait on at once; one more raises ``ClusterBusyError``."""
MAX_SERVING = 256
"""Requests from other nodes served at once; more are dropped (``dropped_requests``)."""
PRUNE_INTERVAL = 0.25
"""How often a waiting request stops waiting for nodes that are no longer live."""


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

    def __init__(self, broker: Broker, node_id: str, *, max_message_size: int) -> None:
        self.broker = broker
        self.node_id = node_id
        self.peers = Peers()
        self.dropped_requests = 0
        """Requests from other nodes dropped: malformed, or past ``MAX_SERVING``."""
        self._max_message = max_message_size
        self._responders: dict[str, Responder] = {}
        self._pending: dict[int, _Gather] = {}
        self._next_id = 0
        self._serving = 0
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
        """Publish a request no node answers (join, leave, disconnect)."""
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
                self._on_request(namespace, rpc.unpack_request(data, self._max_message))
            elif channel == rpc.reply_channel(self.node_id):
                reply = rpc.unpack_reply(data, self._max_message)
                gather = self._pending.get(reply.id)
                if gather is not None:
                    gather.add(reply)
        except rpc.RpcError as exc:
            self.dropped_requests += 1
            logger.warning("dropped a cluster message on %s: %s", channel, exc)

    def _on_request(self, namespace: str, request: rpc.Request) -> None:
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
        if self._serving >= MAX_SERVING:
            self.dropped_requests += 1
            logger.warning(
                "gateway %s: %d cluster requests served, dropped one", namespace, MAX_SERVING
            )
            return
        self._serving += 1
        tasks.start_soon(self._answer, namespace, responder, request)

    async def _answer(self, namespace: str, responder: Responder, request: rpc.Request) -> None:
        try:
            items = await responder(request)
            if request.id:
                channel = rpc.reply_channel(request.node)
                for part in rpc.pack_replies(self.node_id, request.id, items):
                    await self.broker.publish(channel, part)
        except Exception:
            logger.exception("gateway %s: serving cluster request %r failed", namespace, request.op)
        finally:
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
            self.peers.prune(monotonic())
