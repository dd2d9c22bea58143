"""Compile-once dispatch: gateway classes -> frozen tables of prepared handlers."""
