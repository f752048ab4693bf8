from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from libs.tlog import reference
from libs.tlog.hashing import EMPTY_ROOT, leaf_hash
from libs.tlog.proofs import (
    MalformedProof,
    ProofError,
    RootMismatch,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# The leaves and roots published with transparency-dev/merkle (testonly/constants.go),
# computed by an independent implementation: they anchor the naive reference.
PUBLISHED_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
PUBLISHED_ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


def leaves_of(size: int) -> list[bytes]:
    return [f"event-{i}".encode() for i in range(size)]


def test_leaf_hashes_rebuild_the_published_roots() -> None:
    for size, expected in enumerate(PUBLISHED_ROOTS):
        assert root_from_leaf_hashes([leaf_hash(leaf) for leaf in PUBLISHED_LEAVES[:size]]) == expected


@given(st.integers(min_value=0, max_value=300))
@example(0)
@example(1)
@example(256)
@example(257)
def test_leaf_hashes_rebuild_the_reference_root(size: int) -> None:
    leaves = leaves_of(size)
    assert root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves]) == reference.root(leaves)


def test_reference_reproduces_published_rfc6962_roots() -> None:
    assert reference.root([]) == EMPTY_ROOT
    for size, expected in enumerate(PUBLISHED_ROOTS):
        assert reference.root(PUBLISHED_LEAVES[:size]) == expected


@given(reference.sizes_and_index(300))
@example((1, 0))
@example((8, 0))
@example((8, 7))
@example((64, 63))
@example((65, 64))
def test_inclusion_proofs_from_the_reference_verify(case: tuple[int, int]) -> None:
    size, index = case
    leaves = leaves_of(size)
    proof = reference.inclusion_proof(index, leaves)
    verify_inclusion(index, size, leaf_hash(leaves[index]), proof, reference.root(leaves))


@given(reference.sizes_and_index(300))
def test_an_inclusion_proof_fails_for_any_other_leaf(case: tuple[int, int]) -> None:
    size, index = case
    leaves = leaves_of(size)
    proof = reference.inclusion_proof(index, leaves)
    with pytest.raises(RootMismatch):
        verify_inclusion(index, size, leaf_hash(b"forged"), proof, reference.root(leaves))


@given(reference.old_and_new_sizes(300))
@example((1, 1))
@example((1, 2))
@example((4, 8))
@example((7, 8))
@example((8, 8))
@example((6, 300))
def test_consistency_proofs_from_the_reference_verify(case: tuple[int, int]) -> None:
    old, new = case
    leaves = leaves_of(new)
    proof = reference.consistency_proof(old, leaves)
    verify_consistency(old, new, reference.root(leaves[:old]), reference.root(leaves), proof)


@given(reference.old_and_new_sizes(300))
def test_a_consistency_proof_fails_when_the_old_tree_differs(case: tuple[int, int]) -> None:
    old, new = case
    leaves = leaves_of(new)
    rewritten = [b"rewritten", *leaves[1:old]]
    proof = reference.consistency_proof(old, leaves)
    with pytest.raises(ProofError):
        verify_consistency(old, new, reference.root(rewritten), reference.root(leaves), proof)


def test_any_tree_extends_the_empty_tree() -> None:
    verify_consistency(0, 5, EMPTY_ROOT, reference.root(leaves_of(5)), [])


# Attack cases as data: each tampers with one input of a valid proof.
LEAVES = leaves_of(13)
ROOT = reference.root(LEAVES)
INCLUSION = reference.inclusion_proof(5, LEAVES)
CONSISTENCY = reference.consistency_proof(6, LEAVES)
OLD_ROOT = reference.root(LEAVES[:6])


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


INCLUSION_ATTACKS: dict[str, tuple[Callable[[], None], type[ProofError]]] = {
    "flipped proof hash": (lambda: verify_inclusion(5, 13, leaf_hash(LEAVES[5]), [_flip(INCLUSION[0]), *INCLUSION[1:]], ROOT), RootMismatch),
    "proof for a neighbouring index": (lambda: verify_inclusion(4, 13, leaf_hash(LEAVES[5]), INCLUSION, ROOT), RootMismatch),
    "a tree of another shape": (lambda: verify_inclusion(5, 17, leaf_hash(LEAVES[5]), INCLUSION, ROOT), ProofError),
    "one hash dropped": (lambda: verify_inclusion(5, 13, leaf_hash(LEAVES[5]), INCLUSION[:-1], ROOT), MalformedProof),
    "one hash appended": (lambda: verify_inclusion(5, 13, leaf_hash(LEAVES[5]), [*INCLUSION, ROOT], ROOT), MalformedProof),
    "hashes swapped": (lambda: verify_inclusion(5, 13, leaf_hash(LEAVES[5]), [INCLUSION[1], INCLUSION[0], *INCLUSION[2:]], ROOT), RootMismatch),
    "index beyond the tree": (lambda: verify_inclusion(13, 13, leaf_hash(LEAVES[5]), INCLUSION, ROOT), MalformedProof),
    "truncated hash": (lambda: verify_inclusion(5, 13, leaf_hash(LEAVES[5]), [INCLUSION[0][:31], *INCLUSION[1:]], ROOT), MalformedProof),
    "interior node passed off as a leaf": (lambda: verify_inclusion(2, 13, reference.root(LEAVES[4:6]), INCLUSION[1:], ROOT), ProofError),
}

CONSISTENCY_ATTACKS: dict[str, tuple[Callable[[], None], type[ProofError]]] = {
    "flipped proof hash": (lambda: verify_consistency(6, 13, OLD_ROOT, ROOT, [_flip(CONSISTENCY[0]), *CONSISTENCY[1:]]), RootMismatch),
    "new root from elsewhere": (lambda: verify_consistency(6, 13, OLD_ROOT, _flip(ROOT), CONSISTENCY), RootMismatch),
    "one hash dropped": (lambda: verify_consistency(6, 13, OLD_ROOT, ROOT, CONSISTENCY[:-1]), MalformedProof),
    "empty proof between different sizes": (lambda: verify_consistency(6, 13, OLD_ROOT, ROOT, []), MalformedProof),
    "old size larger than new": (lambda: verify_consistency(13, 6, ROOT, OLD_ROOT, CONSISTENCY), MalformedProof),
    "same size, different roots": (lambda: verify_consistency(13, 13, OLD_ROOT, ROOT, []), RootMismatch),
    "same size with a proof": (lambda: verify_consistency(13, 13, ROOT, ROOT, [ROOT]), MalformedProof),
    "empty tree with a root that is not empty": (lambda: verify_consistency(0, 13, OLD_ROOT, ROOT, []), RootMismatch),
}


@pytest.mark.parametrize("attack", list(INCLUSION_ATTACKS))
def test_tampered_inclusion_proofs_are_rejected(attack: str) -> None:
    check, error = INCLUSION_ATTACKS[attack]
    with pytest.raises(error):
        check()


@pytest.mark.parametrize("attack", list(CONSISTENCY_ATTACKS))
def test_tampered_consistency_proofs_are_rejected(attack: str) -> None:
    check, error = CONSISTENCY_ATTACKS[attack]
    with pytest.raises(error):
        check()
