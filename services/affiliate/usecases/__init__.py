"""Affiliate's use cases: plain functions of (command, unit of work), over the ports in `ports`."""
