"""Metrics for gateways, built on the ``gatewayasgi.instrumentation`` seam.

``PrometheusMetrics`` needs the ``prometheus`` extra (``pip install
"gatewayasgi[prometheus]"``). Importing this package never imports ``prometheus_client``;
``PrometheusMetrics`` is loaded on first use, and constructing it without the extra
raises an ``ImportError`` that names the install command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatewayasgi.metrics.prometheus import PrometheusMetrics

__all__ = ["PrometheusMetrics"]


def __getattr__(name: str) -> object:
    # Loaded lazily so that the prometheus extra stays optional and costs nothing unused.
    if name == "PrometheusMetrics":
        from gatewayasgi.metrics.prometheus import PrometheusMetrics

        return PrometheusMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
