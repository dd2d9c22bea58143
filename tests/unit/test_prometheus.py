"""PrometheusMetrics without a server: call the hooks, read the registry back."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

import gatewayasgi.metrics
import gatewayasgi.metrics.prometheus as prometheus_module
from gatewayasgi.instrumentation import UNKNOWN_EVENT, Instrumentation
from gatewayasgi.metrics import PrometheusMetrics
from gatewayasgi.metrics.prometheus import (
    DEFAULT_BUCKETS,
    MAX_EVENT_LABELS,
    close_code_label,
)

NS = "/chat"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> PrometheusMetrics:
    return PrometheusMetrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"namespace": NS, **labels})


def label_values(registry: CollectorRegistry, sample: str, label: str) -> set[str]:
    """Every value ``label`` takes among the samples named ``sample``."""
    return {
        s.labels[label]
        for family in registry.collect()
        for s in family.samples
        if s.name == sample and label in s.labels
    }


# -- one hook, one metric --------------------------------------------------------


def test_is_an_instrumentation(metrics: PrometheusMetrics) -> None:
    assert isinstance(metrics, Instrumentation)


def test_connect_and_close_move_the_gauge_and_count(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    metrics.on_connect(NS)
    metrics.on_connect(NS)
    assert value(registry, "gatewayasgi_connections_active") == 2
    metrics.on_close(NS, 1000)
    assert value(registry, "gatewayasgi_connections_active") == 1
    assert value(registry, "gatewayasgi_connections_total") == 2
    assert value(registry, "gatewayasgi_closes_total", code="1000") == 1


def test_namespaces_are_separate_series(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    metrics.on_connect(NS)
    metrics.on_connect("/rooms/{room_id}")
    metrics.on_close("/rooms/{room_id}", 1000)
    assert value(registry, "gatewayasgi_connections_active") == 1
    assert (
        registry.get_sample_value(
            "gatewayasgi_connections_active", {"namespace": "/rooms/{room_id}"}
        )
        == 0
    )


def test_frames_in_are_counted_per_event(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    for _ in range(3):
        metrics.on_frame_in(NS, "send")
    metrics.on_frame_in(NS, UNKNOWN_EVENT)
    assert value(registry, "gatewayasgi_messages_received_total", event="send") == 3
    assert value(registry, "gatewayasgi_messages_received_total", event=UNKNOWN_EVENT) == 1


def test_frames_out_add_their_count_and_ignore_nothing_sent(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    metrics.on_frame_out(NS, 1)
    metrics.on_frame_out(NS, 500)
    metrics.on_frame_out(NS, 0)
    metrics.on_frame_out(NS, -1)  # must not raise (a counter cannot go down)
    assert value(registry, "gatewayasgi_messages_sent_total") == 501


def test_refuse_reasons(registry: CollectorRegistry, metrics: PrometheusMetrics) -> None:
    for reason in ("origin", "capacity", "guard", "error", "origin"):
        metrics.on_refuse(NS, reason)
    assert value(registry, "gatewayasgi_refused_total", reason="origin") == 2
    assert value(registry, "gatewayasgi_refused_total", reason="error") == 1


def test_drops_add_count_per_reason(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    metrics.on_drop(NS, "overflow", 3)
    metrics.on_drop(NS, "slow_consumer", 10)
    metrics.on_drop(NS, "rate_limit", 0)
    assert value(registry, "gatewayasgi_dropped_total", reason="overflow") == 3
    assert value(registry, "gatewayasgi_dropped_total", reason="slow_consumer") == 10
    assert value(registry, "gatewayasgi_dropped_total", reason="rate_limit") is None


def test_overflow_and_broker_counters(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    metrics.on_overflow(NS)
    metrics.on_broker_publish(NS)
    metrics.on_broker_publish(NS)
    metrics.on_broker_receive(NS)
    metrics.on_broker_failure(NS)
    assert value(registry, "gatewayasgi_overflows_total") == 1
    assert value(registry, "gatewayasgi_broker_published_total") == 2
    assert value(registry, "gatewayasgi_broker_received_total") == 1
    assert value(registry, "gatewayasgi_broker_failures_total") == 1


def test_handler_seconds_histogram(registry: CollectorRegistry, metrics: PrometheusMetrics) -> None:
    metrics.on_handler(NS, "send", 0.00005)
    metrics.on_handler(NS, "send", 0.003)
    metrics.on_handler(NS, "send", 2.0)
    name = "gatewayasgi_handler_seconds"
    assert value(registry, f"{name}_count", event="send") == 3
    assert value(registry, f"{name}_sum", event="send") == pytest.approx(2.00305)
    assert value(registry, f"{name}_bucket", event="send", le="0.0001") == 1
    assert value(registry, f"{name}_bucket", event="send", le="0.005") == 2
    assert value(registry, f"{name}_bucket", event="send", le="+Inf") == 3


def test_default_buckets_span_sub_millisecond_to_seconds() -> None:
    assert DEFAULT_BUCKETS[0] <= 0.0001
    assert DEFAULT_BUCKETS[-1] >= 5.0
    assert list(DEFAULT_BUCKETS) == sorted(DEFAULT_BUCKETS)


def test_custom_buckets_and_namespace_label(registry: CollectorRegistry) -> None:
    metrics = PrometheusMetrics(registry, namespace_label="gateway", buckets=(0.5, 1.0))
    metrics.on_handler(NS, "send", 0.7)
    metrics.on_connect(NS)
    labels = {"gateway": NS, "event": "send"}
    bucket = "gatewayasgi_handler_seconds_bucket"
    assert registry.get_sample_value(bucket, {**labels, "le": "0.5"}) == 0
    assert registry.get_sample_value(bucket, {**labels, "le": "1.0"}) == 1
    assert registry.get_sample_value(bucket, {**labels, "le": "0.005"}) is None  # not a default
    assert registry.get_sample_value("gatewayasgi_connections_active", {"gateway": NS}) == 1


def test_hooks_reuse_the_cached_child(metrics: PrometheusMetrics) -> None:
    """The hot path is a dict lookup: the second call creates no new child."""
    metrics.on_frame_in(NS, "send")
    child = metrics._received[NS, "send"]
    metrics.on_frame_in(NS, "send")
    assert metrics._received[NS, "send"] is child
    assert len(metrics._received) == 1


# -- bounded labels --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "label"),
    [
        (1000, "1000"),
        (1008, "1008"),
        (1015, "1015"),
        (1016, "other"),
        (999, "other"),
        (0, "other"),
        (-1, "other"),
        (2000, "other"),
        (3000, "3xxx"),
        (3999, "3xxx"),
        (4000, "4xxx"),
        (4999, "4xxx"),
        (5000, "other"),
        (65535, "other"),
    ],
)
def test_close_code_label(code: int, label: str) -> None:
    assert close_code_label(code) == label


def test_every_close_code_lands_in_a_bounded_label_set(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    for code in range(0, 70_000, 7):
        metrics.on_close(NS, code)
    codes = label_values(registry, "gatewayasgi_closes_total", "code")
    assert codes <= {str(c) for c in range(1000, 1016)} | {"3xxx", "4xxx", "other"}
    assert {"3xxx", "4xxx", "other"} <= codes
    assert len(metrics._families.closes_by) == len(codes)


def test_unexpected_reasons_count_as_other(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    for i in range(20):
        metrics.on_refuse(NS, f"made-up-{i}")  # type: ignore[arg-type]
        metrics.on_drop(NS, f"made-up-{i}", 1)  # type: ignore[arg-type]
    assert label_values(registry, "gatewayasgi_refused_total", "reason") == {"other"}
    assert label_values(registry, "gatewayasgi_dropped_total", "reason") == {"other"}
    assert value(registry, "gatewayasgi_refused_total", reason="other") == 20
    assert value(registry, "gatewayasgi_dropped_total", reason="other") == 20


def test_event_labels_stop_growing_at_the_cap(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """A runtime bug passing client event names cannot grow a metric without bound."""
    total = MAX_EVENT_LABELS + 50
    for i in range(total):
        metrics.on_frame_in(NS, f"event-{i}")
        metrics.on_handler(NS, f"event-{i}", 0.001)
    events = label_values(registry, "gatewayasgi_messages_received_total", "event")
    assert len(events) == MAX_EVENT_LABELS + 1
    assert UNKNOWN_EVENT in events
    assert value(registry, "gatewayasgi_messages_received_total", event=UNKNOWN_EVENT) == 50
    assert len(label_values(registry, "gatewayasgi_handler_seconds_count", "event")) == len(events)
    assert len(metrics._received) == MAX_EVENT_LABELS + 1


# -- registries ------------------------------------------------------------------


def test_two_instances_on_one_registry_share_the_series(registry: CollectorRegistry) -> None:
    first = PrometheusMetrics(registry)
    second = PrometheusMetrics(registry)
    first.on_connect(NS)
    second.on_connect(NS)
    second.on_frame_in(NS, "send")
    first.on_frame_in(NS, "send")
    assert value(registry, "gatewayasgi_connections_active") == 2
    assert value(registry, "gatewayasgi_messages_received_total", event="send") == 2


def test_instances_on_one_registry_must_agree_on_labels_and_buckets(
    registry: CollectorRegistry,
) -> None:
    PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="namespace_label='namespace'"):
        PrometheusMetrics(registry, namespace_label="gateway")
    with pytest.raises(ValueError, match="pass the same values, or another registry"):
        PrometheusMetrics(registry, buckets=(1.0,))
    PrometheusMetrics(registry, buckets=list(DEFAULT_BUCKETS))  # same values: fine


def test_separate_registries_are_independent() -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    PrometheusMetrics(one).on_connect(NS)
    PrometheusMetrics(two)
    assert one.get_sample_value("gatewayasgi_connections_total", {"namespace": NS}) == 1
    assert two.get_sample_value("gatewayasgi_connections_total", {"namespace": NS}) is None


def test_name_taken_by_another_collector_leaves_the_registry_as_found(
    registry: CollectorRegistry,
) -> None:
    Counter("gatewayasgi_overflows", "someone else's", registry=registry)
    before = set(registry._names_to_collectors)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry)
    assert set(registry._names_to_collectors) == before


def test_default_registry_is_prometheus_clients_global() -> None:
    from prometheus_client import REGISTRY

    metrics = PrometheusMetrics()
    assert metrics.registry is REGISTRY
    assert PrometheusMetrics().registry is REGISTRY  # a second one does not crash


# -- the optional extra ----------------------------------------------------------


def test_importing_the_package_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, gatewayasgi, gatewayasgi.metrics; "
        "assert 'prometheus_client' not in sys.modules, 'imported eagerly'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr


def test_package_exports_prometheus_metrics_lazily() -> None:
    assert gatewayasgi.metrics.PrometheusMetrics is prometheus_module.PrometheusMetrics
    assert gatewayasgi.metrics.__all__ == ["PrometheusMetrics"]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = gatewayasgi.metrics.Nope


@pytest.fixture
def without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``prometheus_client`` unimportable and ``gatewayasgi.metrics.prometheus`` unloaded;
    everything put back afterwards."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "gatewayasgi.metrics.prometheus")
    # A re-import rebinds the package attribute; monkeypatch restores the original.
    monkeypatch.setattr(gatewayasgi.metrics, "prometheus", prometheus_module)
    yield


@pytest.mark.usefixtures("without_prometheus_client")
def test_missing_extra_imports_but_construction_names_the_install_command() -> None:
    fresh = importlib.import_module("gatewayasgi.metrics.prometheus")
    assert fresh is not prometheus_module
    cls = gatewayasgi.metrics.PrometheusMetrics
    assert cls is fresh.PrometheusMetrics
    with pytest.raises(ImportError, match=re.escape('pip install "gatewayasgi[prometheus]"')):
        cls()
