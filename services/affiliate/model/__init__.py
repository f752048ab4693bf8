"""Affiliate's domain: programmes, signed tracking links, honest click counting, commissions."""
