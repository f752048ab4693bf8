from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from libs.tlog import reference
from libs.tlog.hashing import leaf_hash
from services.compliance.audit.merkle import (
    NodeId,
    appended_nodes,
    consistency_plan,
    fold_right,
    frontier,
    inclusion_plan,
)

MAX_SIZE = 300
LEAVES = [f"event-{i}".encode() for i in range(MAX_SIZE)]


def grow(chunks: list[int]) -> dict[NodeId, bytes]:
    """Append LEAVES in the given chunk sizes, the way the log does, keeping every node."""
    nodes: dict[NodeId, bytes] = {}
    size = 0
    for chunk in chunks:
        chunk = min(chunk, MAX_SIZE - size)
        border = [nodes[node] for node in frontier(size)]
        nodes.update(appended_nodes(size, border, [leaf_hash(leaf) for leaf in LEAVES[size:size + chunk]]))
        size += chunk
    assert size == MAX_SIZE
    return nodes


# Appending one leaf at a time and in uneven batches must store the same tree.
NODES = grow([1] * MAX_SIZE)


def test_batched_appends_store_the_same_nodes_as_single_appends() -> None:
    assert grow([7, 1, 64, 3, 100, 125]) == NODES
    assert grow([MAX_SIZE]) == NODES


@given(st.integers(min_value=0, max_value=MAX_SIZE))
@example(0)
@example(1)
@example(256)
def test_frontier_folds_to_the_reference_root(size: int) -> None:
    assert fold_right([NODES[node] for node in frontier(size)]) == reference.root(LEAVES[:size])


@given(reference.sizes_and_index(MAX_SIZE))
@example((1, 0))
@example((2, 1))
@example((256, 0))
@example((256, 255))
@example((257, 256))
@example((300, 299))
def test_inclusion_proofs_match_the_naive_reference(case: tuple[int, int]) -> None:
    size, index = case
    assert inclusion_plan(index, size).assemble(NODES) == reference.inclusion_proof(index, LEAVES[:size])


@given(reference.old_and_new_sizes(MAX_SIZE))
@example((1, 1))
@example((1, 300))
@example((128, 128))
@example((128, 256))
@example((127, 128))
@example((129, 300))
def test_consistency_proofs_match_the_naive_reference(case: tuple[int, int]) -> None:
    old, new = case
    assert consistency_plan(old, new).assemble(NODES) == reference.consistency_proof(old, LEAVES[:new])


def test_proofs_need_only_perfect_nodes_that_exist_at_that_size() -> None:
    for size in range(1, 70):
        for node in inclusion_plan(size - 1, size).node_ids() + consistency_plan(size // 2 or 1, size).node_ids():
            assert (node.index + 1) << node.level <= size


def test_node_keys_round_trip() -> None:
    node = NodeId(19, 123_456)
    assert NodeId.from_key(node.key) == node
    assert NodeId(0, 5).key == 5  # leaves sort first, by index


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (-1, 3)])
def test_an_inclusion_plan_outside_the_tree_is_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        inclusion_plan(index, size)


def test_appending_needs_the_whole_frontier() -> None:
    with pytest.raises(ValueError):
        appended_nodes(3, [NODES[NodeId(1, 0)]], [leaf_hash(b"x")])
