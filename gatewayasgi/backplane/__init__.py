"""The backplane: delivery orders between processes (envelope, node wiring, emitters).

Brokers (``gatewayasgi.brokers``) move bytes; this package decides what the bytes say.
"""
