"""The audit trail: a transparency log of every event a regulator may ask about (AuditService).

Rooms: `model.py` (entities and the rules: access, the actor rule, counted refusals),
`merkle.py` (which stored nodes a proof needs), `usecases.py` (appending, signing
checkpoints; the store protocol), `queries.py` (proofs, queries, exports), `store.py`
(SQLite, the only SQL; `<data dir>/compliance/audit.db`), `sequencer.py` (the writer
thread), `keys.py` (the signing key), `messages.py` (protos <-> domain), `servicer.py`
(handlers), `config.py` (settings). See `services/compliance/README.md`.
"""
