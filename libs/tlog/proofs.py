"""Verifying inclusion and consistency proofs against signed roots (RFC 9162 §2.1.3.2, §2.1.4.2).

Only the hash function is trusted here: sizes, indices and proof hashes all come from
the log being checked. Preconditions are checked first and fail with `MalformedProof`;
a well-formed proof that leads to another root fails with `RootMismatch`, so a caller
can tell "the log sent garbage" from "the log's history is not what was signed".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from libs.tlog.hashing import EMPTY_ROOT, HASH_SIZE, node_hash


class ProofError(ValueError):
    """A proof did not verify."""


class MalformedProof(ProofError):
    """The proof cannot belong to the claimed sizes or index (wrong length, bad hash size)."""


class RootMismatch(ProofError):
    """The proof is well formed but recomputes a root other than the expected one."""

    def __init__(self, message: str, *, expected: bytes, calculated: bytes) -> None:
        super().__init__(message)
        self.expected = expected
        self.calculated = calculated


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise MalformedProof(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_root(calculated: bytes, expected: bytes, what: str) -> None:
    if calculated != expected:
        raise RootMismatch(f"{what}: the proof leads to another root", expected=expected, calculated=calculated)


def _walk_up(index: int, tree_size: int, path: Sequence[bytes], what: str) -> Iterator[tuple[bytes, bool]]:
    """RFC 9162's climb from node `index` to the root: each proof hash, and whether it is a left sibling.

    Shared by both verifications (it is steps 4 and 6 of §2.1.3.2 and §2.1.4.2), and
    it fails the proof when its length does not fit the sizes.
    """
    index_on_level, last_on_level = index, tree_size - 1
    for step, value in enumerate(path):
        _check_hash(value, f"proof hash {step}")
        if last_on_level == 0:
            raise MalformedProof(f"{what}: the proof has more hashes than the path to the root")
        is_left_sibling = bool(index_on_level & 1) or index_on_level == last_on_level
        yield value, is_left_sibling
        if is_left_sibling:
            # On the right border a node has no right sibling at these levels: climb
            # until the path turns left again.
            while not index_on_level & 1 and index_on_level != 0:
                index_on_level >>= 1
                last_on_level >>= 1
        index_on_level >>= 1
        last_on_level >>= 1
    if last_on_level != 0:
        raise MalformedProof(f"{what}: the proof has fewer hashes than the path to the root")


def root_from_inclusion_proof(leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` implies for `leaf_hash` at `leaf_index` in a tree of `tree_size` leaves."""
    if not 0 <= leaf_index < tree_size:
        raise MalformedProof(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    _check_hash(leaf_hash, "leaf hash")
    root = leaf_hash
    for sibling, is_left in _walk_up(leaf_index, tree_size, proof, f"inclusion of leaf {leaf_index}"):
        root = node_hash(sibling, root) if is_left else node_hash(root, sibling)
    return root


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree whose leaves have these hashes, in order: what a complete set of leaves must rebuild.

    Adjacent perfect subtrees are merged as leaves arrive, then folded right to left.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    perfect: list[tuple[int, bytes]] = []  # (height, hash), largest subtree first
    for value in leaf_hashes:
        _check_hash(value, "leaf hash")
        height, node = 0, value
        while perfect and perfect[-1][0] == height:
            node = node_hash(perfect.pop()[1], node)
            height += 1
        perfect.append((height, node))
    root = perfect[-1][1]
    for _, left in reversed(perfect[:-1]):
        root = node_hash(left, root)
    return root


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless `leaf_hash` is the leaf at `leaf_index` of the tree with `root` and `tree_size`."""
    _check_hash(root, "root")
    _check_root(root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, proof), root,
                f"inclusion of leaf {leaf_index} in tree size {tree_size}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise unless the tree (`new_size`, `new_root`) is an append-only extension of (`old_size`, `old_root`)."""
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if not 0 <= old_size <= new_size:
        raise MalformedProof(f"old size {old_size} must be between 0 and the new size {new_size}")
    if old_size in (0, new_size):
        # Nothing to prove: every tree extends the empty tree, and a tree only extends
        # itself at the same size. RFC 9162 defines the proof as empty in both cases.
        if proof:
            raise MalformedProof(f"a consistency proof from size {old_size} to {new_size} must be empty")
        _check_root(old_root, EMPTY_ROOT if old_size == 0 else new_root,
                    f"consistency from size {old_size} to {new_size}")
        return
    if not proof:
        raise MalformedProof(f"a consistency proof from size {old_size} to {new_size} cannot be empty")

    # When the old tree is a perfect subtree of the new one its root is the starting
    # node, and RFC 9162 leaves it out of the proof.
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    _check_hash(path[0], "proof hash 0")
    # Start from the largest perfect subtree that ends at the old size.
    start, shift = old_size - 1, 0
    while start >> shift & 1:
        shift += 1
    old_calculated = new_calculated = path[0]
    what = f"consistency from size {old_size} to {new_size}"
    for value, is_left in _walk_up(start >> shift, ((new_size - 1) >> shift) + 1, path[1:], what):
        if is_left:
            old_calculated = node_hash(value, old_calculated)
            new_calculated = node_hash(value, new_calculated)
        else:
            new_calculated = node_hash(new_calculated, value)
    _check_root(old_calculated, old_root, f"consistency proof does not reproduce the size-{old_size} root")
    _check_root(new_calculated, new_root, f"consistency proof does not reproduce the size-{new_size} root")
