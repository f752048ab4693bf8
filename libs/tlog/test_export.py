from __future__ import annotations

from libs.tlog import reference
from libs.tlog.checkpoint import Checkpoint
from libs.tlog.export import ChainLink, FindingKind, verify_checkpoint_chain
from libs.tlog.note import NoteSigner

ORIGIN = "limelight.test/audit"
SIGNER = NoteSigner.generate(ORIGIN)
LEAVES = [f"event-{i}".encode() for i in range(20)]


def signed(leaves: list[bytes]) -> str:
    return Checkpoint(ORIGIN, len(leaves), reference.root(leaves)).sign(SIGNER)


def link(old_size: int, leaves: list[bytes]) -> ChainLink:
    return ChainLink(signed(leaves), tuple(reference.consistency_proof(old_size, leaves)))


def test_a_growing_chain_of_checkpoints_verifies() -> None:
    chain = [ChainLink(signed(LEAVES[:3])), link(3, LEAVES[:8]), link(8, LEAVES[:8]), link(8, LEAVES)]
    report = verify_checkpoint_chain(chain, [SIGNER.verifier])
    assert report.ok and report.checkpoint is not None and report.checkpoint.tree_size == 20


def test_a_checkpoint_over_rewritten_history_breaks_the_chain() -> None:
    rewritten = [b"other", *LEAVES[1:]]
    chain = [ChainLink(signed(LEAVES[:3])), link(3, rewritten[:8]), link(8, rewritten)]
    [finding] = verify_checkpoint_chain(chain, [SIGNER.verifier]).findings
    assert finding.kind is FindingKind.HISTORY_REWRITTEN and finding.label == "checkpoint 3"


def test_a_chain_that_shrinks_is_flagged_as_a_rollback() -> None:
    chain = [ChainLink(signed(LEAVES[:8])), ChainLink(signed(LEAVES[:5]))]
    [finding] = verify_checkpoint_chain(chain, [SIGNER.verifier]).findings
    assert finding.kind is FindingKind.CONSISTENCY_UNPROVEN


def test_a_checkpoint_by_another_key_is_invalid_in_a_chain() -> None:
    stranger = NoteSigner.generate(ORIGIN)
    chain = [ChainLink(signed(LEAVES[:3])),
             ChainLink(Checkpoint(ORIGIN, 8, reference.root(LEAVES[:8])).sign(stranger))]
    [finding] = verify_checkpoint_chain(chain, [SIGNER.verifier]).findings
    assert finding.kind is FindingKind.CHECKPOINT_INVALID
