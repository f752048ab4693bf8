"""Which stored tree nodes a proof needs, and how the tree grows: tree-size arithmetic, no I/O.

The log stores the hash of every *perfect* subtree, addressed by `NodeId(level, index)`:
level 0 holds the leaf hashes, and node (l, i) covers leaves [i·2^l, (i+1)·2^l). A
perfect subtree never changes once its last leaf is appended, so any proof at any
past tree size can be assembled from stored nodes alone.

A proof for a tree whose size is not a power of two may need the hash of a subtree on
the right border that is not perfect yet (transparency-dev calls it ephemeral). A
`ProofPlan` lists, for each hash of the proof, the perfect nodes that cover it; the
caller fetches all of them in one read and `assemble` folds each group into one hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from libs.tlog.hashing import EMPTY_ROOT, node_hash

LEVEL_SHIFT = 48
"""A node's storage key is level << 48 | index: leaves fit below 2^48 (2.8e14 entries)."""


@dataclass(frozen=True, order=True)
class NodeId:
    level: int
    index: int

    @property
    def key(self) -> int:
        return self.level << LEVEL_SHIFT | self.index

    @classmethod
    def from_key(cls, key: int) -> NodeId:
        return cls(key >> LEVEL_SHIFT, key & ((1 << LEVEL_SHIFT) - 1))


def _perfect_cover(begin: int, end: int) -> list[NodeId]:
    """The perfect nodes covering [begin, end), largest first, for a `begin` aligned to the range.

    Holds for the ranges proofs need: [0, size) and the part of an aligned subtree that
    lies left of the tree's size.
    """
    nodes: list[NodeId] = []
    position = begin
    for level in reversed(range((end - begin).bit_length())):
        if (end - begin) >> level & 1:
            nodes.append(NodeId(level, position >> level))
            position += 1 << level
    return nodes


def frontier(tree_size: int) -> list[NodeId]:
    """The perfect subtrees that make up a tree of `tree_size` leaves, largest first."""
    return _perfect_cover(0, tree_size)


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """The RFC 6962 hash of adjacent perfect subtrees listed largest first."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


@dataclass(frozen=True)
class ProofPlan:
    """Each proof hash as the perfect nodes that cover it (one node, or a right-border group)."""

    groups: tuple[tuple[NodeId, ...], ...]

    def node_ids(self) -> list[NodeId]:
        return [node for group in self.groups for node in group]

    def assemble(self, hashes: Mapping[NodeId, bytes]) -> list[bytes]:
        return [fold_right([hashes[node] for node in group]) for group in self.groups]


def _path_to_root(level: int, index: int, tree_size: int) -> list[tuple[NodeId, ...]]:
    """The sibling hashes from node (level, index) up to the root of a tree of `tree_size`."""
    groups: list[tuple[NodeId, ...]] = []
    top_level = (tree_size - 1).bit_length()  # the first level whose node spans the tree
    for current in range(level, top_level):
        sibling = (index >> (current - level)) ^ 1
        begin = sibling << current
        if begin >= tree_size:
            continue  # the sibling lies wholly beyond the tree: RFC 6962 promotes the node
        end = min((sibling + 1) << current, tree_size)
        groups.append(tuple(_perfect_cover(begin, end)))
    return groups


def inclusion_plan(leaf_index: int, tree_size: int) -> ProofPlan:
    """PATH(leaf_index, D[tree_size]) of RFC 6962 §2.1.1. Requires 0 <= leaf_index < tree_size."""
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    return ProofPlan(tuple(_path_to_root(0, leaf_index, tree_size)))


def consistency_plan(old_size: int, new_size: int) -> ProofPlan:
    """PROOF(old_size, D[new_size]) of RFC 6962 §2.1.2. Requires 0 <= old_size <= new_size.

    The proof starts at the largest perfect subtree ending at old_size (left out when
    it is the whole old tree, whose root the client has) and climbs to the new root.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} must be between 0 and the new size {new_size}")
    if old_size in (0, new_size):
        return ProofPlan(())
    level = (old_size & -old_size).bit_length() - 1
    start = NodeId(level, (old_size - 1) >> level)
    groups = _path_to_root(start.level, start.index, new_size)
    if old_size != 1 << level:
        groups.insert(0, (start,))
    return ProofPlan(tuple(groups))


def appended_nodes(tree_size: int, frontier_hashes: Sequence[bytes], leaf_hashes: Sequence[bytes]) -> list[tuple[NodeId, bytes]]:
    """Every perfect node completed by appending `leaf_hashes` to a tree of `tree_size` leaves.

    `frontier_hashes` are the hashes of `frontier(tree_size)`, largest first: the only
    existing nodes a new perfect node can have as a left child.
    """
    expected = frontier(tree_size)
    if len(frontier_hashes) != len(expected):
        raise ValueError(f"a tree of size {tree_size} has {len(expected)} frontier nodes, got {len(frontier_hashes)}")
    # Smallest subtree last: appending a leaf merges it with equal-sized neighbours.
    border: list[tuple[NodeId, bytes]] = list(zip(expected, frontier_hashes, strict=True))
    created: list[tuple[NodeId, bytes]] = []
    for offset, hash_ in enumerate(leaf_hashes):
        node = NodeId(0, tree_size + offset)
        created.append((node, hash_))
        while border and border[-1][0].level == node.level:
            left, left_hash = border.pop()
            node, hash_ = NodeId(node.level + 1, left.index >> 1), node_hash(left_hash, hash_)
            created.append((node, hash_))
        border.append((node, hash_))
    return created
