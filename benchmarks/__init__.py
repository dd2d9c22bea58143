"""Benchmarks: gatewayasgi against a hand-written ASGI app and its Python peers.

``python -m benchmarks`` (``make bench``) runs every peer under every server with the same
protocol, interleaved, and writes ``benchmarks/results/latest.md`` and ``latest.png``.
``python -m benchmarks.micro`` times the pure decode + dispatch + encode path.
"""
