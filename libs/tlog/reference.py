"""A deliberately naive, recursive RFC 6962 Merkle tree, and hypothesis strategies: for tests only.

Written straight from the definitions in RFC 6962 §2.1 (MTH, PATH, PROOF, SUBPROOF)
over the full list of leaves, with no cleverness, so that the fast code in
`libs.tlog.proofs` and `services.compliance.audit.merkle` can be checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from libs.tlog.hashing import EMPTY_ROOT, leaf_hash, node_hash


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (size > 1)."""
    split = 1
    while split * 2 < size:
        split *= 2
    return split


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over raw leaf data."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = _split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [root(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [root(leaves[:k])]


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return _subproof(old_size, leaves, True)


def _subproof(old_size: int, leaves: Sequence[bytes], old_is_whole_subtree: bool) -> list[bytes]:
    if old_size == len(leaves):
        return [] if old_is_whole_subtree else [root(leaves)]
    k = _split(len(leaves))
    if old_size <= k:
        return _subproof(old_size, leaves[:k], old_is_whole_subtree) + [root(leaves[k:])]
    return _subproof(old_size - k, leaves[k:], False) + [root(leaves[:k])]


def sizes_and_index(max_size: int) -> st.SearchStrategy[tuple[int, int]]:
    """A tree size in [1, max_size] and a leaf index inside it."""
    return st.integers(min_value=1, max_value=max_size).flatmap(
        lambda size: st.tuples(st.just(size), st.integers(min_value=0, max_value=size - 1)))


def old_and_new_sizes(max_size: int) -> st.SearchStrategy[tuple[int, int]]:
    """Two tree sizes with 1 <= old <= new <= max_size."""
    return st.integers(min_value=1, max_value=max_size).flatmap(
        lambda new: st.tuples(st.integers(min_value=1, max_value=new), st.just(new)))
