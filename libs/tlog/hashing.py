"""RFC 6962/9162 Merkle tree hashing with SHA-256.

The 0x00/0x01 prefixes separate leaf hashes from interior-node hashes, so that no
interior node can be passed off as a leaf (a second-preimage attack on the tree).
"""

from __future__ import annotations

import hashlib

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the tree with no leaves: the hash of the empty string (RFC 9162 §2.1.1)."""


def leaf_hash(leaf_data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf_data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()
