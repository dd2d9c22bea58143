"""Tests of ``gatewayasgi.client`` (pure bookkeeping, and against real servers)."""
