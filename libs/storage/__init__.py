"""Shared persistence plumbing: the data directory, SQLite (WAL) with migrations, and the group committer."""
