"""A transparency log's verifiable parts, with no storage and no transport.

Shared by the compliance service (which builds the log) and the offline verifier a
regulator runs (which trusts nothing but the log's public key):

    hashing     RFC 6962/9162 leaf and node hashes
    proofs      inclusion and consistency proof verification (RFC 9162 §2.1.3.2, §2.1.4.2)
    note        C2SP signed notes with Ed25519 signatures and key ids
    checkpoint  C2SP tlog-checkpoint bodies (origin, size, root) inside signed notes
    export      checking an exported run of entries against a signed checkpoint,
                naming each entry that was changed, deleted, moved or inserted
    reference   a deliberately naive recursive RFC 6962 tree, for tests only
"""
