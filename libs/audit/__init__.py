"""The audit trail as every service sees it: the event record, the outbox it is written to, and the shipper."""
