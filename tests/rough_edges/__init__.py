"""Rough edges a new user hit (issue 11), each pinned by a test."""
