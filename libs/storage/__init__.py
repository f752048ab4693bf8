"""Shared persistence plumbing: the data directory and SQLite (WAL) with migrations."""
