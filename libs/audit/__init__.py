"""The audit trail as every service sees it: the event record and its canonical bytes."""
