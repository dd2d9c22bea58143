"""Several instruments as one (``instrumentation.combine``), the wrapping hooks, and the
trace-context carriers that frames and backplane envelopes bring. No server here: the
real-server tests are ``tests/e2e/test_tracing.py``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import orjson
import pytest

from gatewayasgi import GatewayMiddleware
from gatewayasgi.backplane.envelope import Envelope, pack, unpack
from gatewayasgi.backplane.node import Backplane
from gatewayasgi.brokers.memory import MemoryBroker, MemoryHub
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.instrumentation import (
    Client,
    Instrumentation,
    Instruments,
    Outcome,
    Watch,
    combine,
)
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.carrier import MAX_CARRIER_BYTES, MAX_CARRIER_FIELDS, bounded, fitted
from gatewayasgi.protocol.json import JSON
from gatewayasgi.protocol.targets import NOBODY, Targets

NS = "/chat"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Noted:
    """A ``Watch`` that notes how it ended."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def end(self, outcome: Outcome, error: BaseException | None = None) -> None:
        self.log.append(f"end {self.name} {outcome} {type(error).__name__ if error else '-'}")


class Counting(Instrumentation):
    """Counts frames in and wraps handlers, publishes and receives."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def on_frame_in(self, namespace: str, event: str) -> None:
        self.log.append(f"{self.name} in {event}")

    def wrap_handler(
        self, namespace: str, event: str, client: Client, carrier: Mapping[str, str] | None
    ) -> Watch | None:
        self.log.append(f"open {self.name} {event} {dict(carrier or {})}")
        return Noted(self.name, self.log)

    def wrap_publish(self, namespace: str, carrier: dict[str, str]) -> Watch | None:
        carrier["traceparent"] = TRACEPARENT
        self.log.append(f"publish {self.name}")
        return Noted(f"publish {self.name}", self.log)

    def wrap_receive(self, namespace: str, carrier: Mapping[str, str] | None) -> Watch | None:
        self.log.append(f"receive {self.name} {dict(carrier or {})}")
        return Noted(f"receive {self.name}", self.log)


class OnlyCloses(Instrumentation):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def on_close(self, namespace: str, code: int) -> None:
        self.log.append(f"close {code}")


class FakeClient:
    id = "c_" + "0" * 32
    scope: Mapping[str, Any] = {"headers": []}


# -- combine -------------------------------------------------------------------------


def test_none_and_one_instrument_stay_as_they_are() -> None:
    one = OnlyCloses([])
    assert combine(None) is None
    assert combine([]) is None
    assert combine([None, None]) is None
    assert combine(one) is one
    assert combine([None, one, one]) is one  # the same object twice is one instrument


def test_several_are_one_object_that_reaches_only_what_each_overrides() -> None:
    log: list[str] = []
    first, second, closes = Counting("a", log), Counting("b", log), OnlyCloses(log)
    both = combine([first, second, closes])
    assert isinstance(both, Instruments)
    assert both.members == (first, second, closes)
    assert both._on_frame_in == (first.on_frame_in, second.on_frame_in)
    assert both._on_close == (closes.on_close,)
    assert both._on_handler == ()  # nobody overrides it: nothing is called
    both.on_frame_in(NS, "say")
    both.on_close(NS, 1000)
    both.on_handler(NS, "say", 0.1)
    assert log == ["a in say", "b in say", "close 1000"]


def test_nested_combinations_flatten() -> None:
    a, b, c = OnlyCloses([]), OnlyCloses([]), OnlyCloses([])
    nested = combine([combine([a, b]), c])
    assert isinstance(nested, Instruments)
    assert nested.members == (a, b, c)


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError, match="PrometheusMetrics"):
        combine([OnlyCloses([]), "prometheus"])  # type: ignore[list-item]


def test_wrapping_is_known_per_class_and_per_combination() -> None:
    log: list[str] = []
    assert Instrumentation.wraps_handlers is False
    assert OnlyCloses.wraps_handlers is False
    assert Counting.wraps_handlers is True
    assert combine([OnlyCloses(log), OnlyCloses(log)]).wraps_handlers is False  # type: ignore[union-attr]
    assert combine([OnlyCloses(log), Counting("a", log)]).wraps_handlers is True  # type: ignore[union-attr]


def test_watches_open_in_order_and_end_innermost_first() -> None:
    log: list[str] = []
    both = combine([Counting("a", log), OnlyCloses(log), Counting("b", log)])
    assert both is not None
    watch = both.wrap_handler(NS, "say", FakeClient(), {"traceparent": TRACEPARENT})
    assert watch is not None
    watch.end("error", ValueError("x"))
    assert log == [
        f"open a say {{'traceparent': '{TRACEPARENT}'}}",
        f"open b say {{'traceparent': '{TRACEPARENT}'}}",
        "end b error ValueError",
        "end a error ValueError",
    ]


def test_nothing_opened_is_no_watch() -> None:
    both = combine([OnlyCloses([]), OnlyCloses([])])
    assert both is not None
    assert both.wrap_handler(NS, "say", FakeClient(), None) is None
    assert both.wrap_publish(NS, {}) is None
    assert both.wrap_receive(NS, None) is None


def test_the_middleware_takes_a_list_and_metrics_joins_it() -> None:
    log: list[str] = []
    metrics, tracer = OnlyCloses(log), Counting("t", log)
    app = GatewayMiddleware(gateways=[], metrics=metrics, instrumentation=[tracer])
    assert isinstance(app.metrics, Instruments)
    assert app.metrics.members == (metrics, tracer)
    assert GatewayMiddleware(gateways=[], instrumentation=tracer).metrics is tracer
    assert GatewayMiddleware(gateways=[], metrics=metrics).metrics is metrics
    assert GatewayMiddleware(gateways=[], instrumentation=[]).metrics is None


@pytest.mark.parametrize("wrong", ["prometheus", 3, [object()]])
def test_the_middleware_names_a_wrong_instrument(wrong: Any) -> None:
    with pytest.raises(ConfigurationError, match="OpenTelemetryTracing"):
        GatewayMiddleware(gateways=[], instrumentation=wrong)


# -- carriers ------------------------------------------------------------------------


def test_a_carrier_is_a_small_object_of_strings_or_nothing() -> None:
    assert bounded({"traceparent": TRACEPARENT}) == {"traceparent": TRACEPARENT}
    for wrong in (
        None,
        {},
        "traceparent",
        [TRACEPARENT],
        {"traceparent": 1},
        {1: TRACEPARENT},
        {"x" * 65: "y"},
        {"tracestate": "x" * MAX_CARRIER_BYTES},
        {f"k{i}": "v" for i in range(MAX_CARRIER_FIELDS + 1)},
    ):
        assert bounded(wrong) is None, wrong


def test_what_a_node_sends_on_is_cut_to_the_bounds_first_fields_first() -> None:
    fields = {"traceparent": TRACEPARENT, "baggage": "x" * MAX_CARRIER_BYTES, "tracestate": "a=1"}
    assert fitted(fields) == {"traceparent": TRACEPARENT, "tracestate": "a=1"}
    assert fitted({}) is None
    many = {f"k{i}": "v" for i in range(20)}
    assert list(fitted(many) or {}) == [f"k{i}" for i in range(MAX_CARRIER_FIELDS)]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_frame_carries_its_trace_member(as_bytes: bool) -> None:
    def raw(value: dict[str, Any]) -> str | bytes:
        text = orjson.dumps(value)
        return text if as_bytes else text.decode()

    frame = {"event": "say", "data": 1, "trace": {"traceparent": TRACEPARENT}}
    assert JSON.carrier(raw(frame)) == {"traceparent": TRACEPARENT}
    assert codec.decode(raw(frame)) == ("say", 1, None)  # handled as any frame
    assert JSON.carrier(raw({"event": "say", "data": 1})) is None
    # "trace" in the data is no member; a member of the wrong shape is ignored.
    assert JSON.carrier(raw({"event": "say", "data": {"trace": {"a": "b"}}})) is None
    assert JSON.carrier(raw({"event": "say", "trace": TRACEPARENT})) is None
    assert JSON.carrier(raw({"event": "say", "trace": {"tp": "x" * 2000}})) is None


# -- the backplane -------------------------------------------------------------------


def test_an_envelope_without_trace_is_the_same_bytes_as_before() -> None:
    envelope = Envelope("n1", '{"event":"e","data":1}', Targets(("room",), ()))
    assert pack(envelope) == b'{"n":"n1","k":"to","r":["room"]}\n{"event":"e","data":1}'
    assert unpack(pack(envelope), 1 << 20).trace is None


def test_an_envelope_carries_a_bounded_trace() -> None:
    envelope = Envelope("n1", "{}", trace={"traceparent": TRACEPARENT})
    packed = pack(envelope)
    assert b'"t":{"traceparent":"' + TRACEPARENT.encode() + b'"}' in packed
    assert unpack(packed, 1 << 20) == envelope
    # Sent too large by hand (a node cuts it first): the delivery goes on, untraced.
    header = {"n": "n1", "k": "all", "t": {"baggage": "x" * (MAX_CARRIER_BYTES + 1)}}
    received = unpack(orjson.dumps(header) + b"\n{}", 1 << 20)
    assert received.trace is None and received.frame == "{}"


@pytest.mark.anyio
async def test_an_order_brings_its_publishers_carrier_to_the_receiving_node() -> None:
    log: list[str] = []
    hub = MemoryHub()
    delivered: list[str] = []
    sender = Backplane(MemoryBroker(hub), max_envelope_size=1 << 20, metrics=Counting("A", log))
    receiver = Backplane(MemoryBroker(hub), max_envelope_size=1 << 20, metrics=Counting("B", log))

    def deliver(frame: Any, targets: Targets, exclude: Targets) -> int:
        delivered.append(frame)
        log.append("delivered")
        return 1

    sender.add(NS, lambda *_: 0)
    receiver.add(NS, deliver)
    async with anyio.create_task_group() as tasks:
        await sender.start(tasks)
        await receiver.start(tasks)
        await sender.publish(NS, '{"event":"e","data":1}', NOBODY, NOBODY)
        with anyio.fail_after(5):
            while not delivered:
                await anyio.sleep(0.01)
        await sender.close()
        await receiver.close()
        tasks.cancel_scope.cancel()
    assert delivered == ['{"event":"e","data":1}']
    # The memory broker delivers during the publish: B's part may come before A's end.
    assert [line for line in log if "B" in line or line == "delivered"] == [
        f"receive B {{'traceparent': '{TRACEPARENT}'}}",
        "delivered",
        "end receive B ok -",
    ]
    assert [line for line in log if "A" in line] == ["publish A", "end publish A ok -"]


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, gatewayasgi, gatewayasgi.tracing; "
        "assert 'opentelemetry.sdk' not in sys.modules, 'imported the sdk'; "
        "import gatewayasgi.middleware as m; "
        "assert not any(n.startswith('opentelemetry') for n in vars(m)), 'in the middleware'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr


def test_without_the_extra_tracing_imports_and_construction_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from gatewayasgi.tracing import OpenTelemetryTracing\n"
        "try:\n    OpenTelemetryTracing()\n"
        "except ImportError as exc:\n    print(exc)\n"
        "else:\n    raise SystemExit('constructed without opentelemetry')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "gatewayasgi[otel]"' in done.stdout
