"""Checking an export (entries, proofs, a signed checkpoint) offline, and naming what is wrong.

An export carries, for each leaf it covers, the record the log holds for it (or none,
when the log has lost it), the hash the log's tree holds for that leaf, and an
inclusion proof at the checkpoint's size. The verifier trusts only the log's public
key and checkpoints it kept from earlier:

1. The checkpoint's signature, and its consistency with every held checkpoint:
   a proof that fails means the log rewrote history (`HISTORY_REWRITTEN`).
2. Each tree hash against its inclusion proof. A hash that passes is what the log
   committed to at that leaf, so it is the yardstick for the record there; one that
   fails means the tree itself was edited (`TREE_ALTERED`).
3. Each record against the committed hashes. A record matching the hash at its own
   leaf is intact; one matching another leaf's hash was moved (`REORDERED`); one
   matching no committed hash was edited (`CHANGED`) or, when the event logged at its
   leaf shows up elsewhere or its leaf lies beyond the signed tree, slipped in
   (`INSERTED`); a committed leaf that no record matches was removed (`DELETED`).
   An entry moved whole, its tree hash and proof with it, to another leaf's place is
   recognised by the proof that holds at that other leaf, and named `REORDERED`.
4. Completeness, from the leaves alone: the export holds all of the checkpoint's
   tree only when it has a committed hash for every leaf and those hashes rebuild the
   signed root (`proven_complete`). The header's `complete_range` is not signed, so it
   only adds findings (a claimed leaf that is absent is `DELETED`); it never vouches
   for anything. A partial export (filtered, ranged, or cut) names the leaves it lacks
   (`absent_ranges`): it cannot prove that no event was removed there.

Each finding names the leaf index and the entry's label (its event id), so an officer
can say exactly which event is wrong and why.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from libs.tlog.checkpoint import Checkpoint, open_checkpoint
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteError, NoteVerifier
from libs.tlog.proofs import ProofError, root_from_inclusion_proof, root_from_leaf_hashes, verify_consistency


@dataclass(frozen=True)
class ExportedLeaf:
    leaf_index: int
    label: str
    """How findings name this entry: the event id, or '' when the record is gone."""
    leaf_data: bytes | None
    """The record's canonical bytes; None when the log holds no record for this leaf."""
    logged_leaf_hash: bytes
    """The hash the log's tree holds for this leaf."""
    inclusion_proof: tuple[bytes, ...]


@dataclass(frozen=True)
class ExportBundle:
    signed_checkpoint: str
    leaves: Sequence[ExportedLeaf]
    consistency_proofs: Mapping[int, Sequence[bytes]] = field(default_factory=dict)
    """Proofs from earlier tree sizes (the ones the recipient holds) to the checkpoint's size."""
    complete_range: tuple[int, int] | None = None
    """[start, end) when the export is unfiltered and so claims every leaf in that range."""


@dataclass(frozen=True)
class ChainLink:
    """One checkpoint of a chain, with the consistency proof from the previous one."""

    signed_checkpoint: str
    proof_from_previous: tuple[bytes, ...] = ()


class FindingKind(enum.StrEnum):
    CHECKPOINT_INVALID = "checkpoint_invalid"
    HISTORY_REWRITTEN = "history_rewritten"
    CONSISTENCY_UNPROVEN = "consistency_unproven"
    TREE_ALTERED = "tree_altered"
    CHANGED = "changed"
    DELETED = "deleted"
    REORDERED = "reordered"
    INSERTED = "inserted"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    leaf_index: int | None
    label: str
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    checkpoint: Checkpoint | None
    intact_entries: int
    findings: tuple[Finding, ...]
    proven_complete: bool = False
    """Every leaf of the checkpoint is in the export and the leaves rebuild its signed root."""
    absent_ranges: tuple[tuple[int, int], ...] = ()
    """[start, end) runs of the checkpoint's leaves that the export does not hold."""

    @property
    def ok(self) -> bool:
        return self.checkpoint is not None and not self.findings


def verify_export(
    bundle: ExportBundle, verifiers: Iterable[NoteVerifier], *, held_checkpoints: Sequence[str] = ()
) -> VerificationReport:
    trusted = list(verifiers)
    try:
        checkpoint = open_checkpoint(bundle.signed_checkpoint, trusted)
    except NoteError as error:
        return VerificationReport(None, 0, (Finding(FindingKind.CHECKPOINT_INVALID, None, "", str(error)),))
    findings = _check_held_checkpoints(checkpoint, held_checkpoints, bundle.consistency_proofs, trusted)
    committed, tree_findings = _committed_leaf_hashes(checkpoint, bundle.leaves)
    findings.extend(tree_findings)
    entry_findings, intact = _compare_records(checkpoint, bundle, committed)
    findings.extend(entry_findings)
    absent = _absent_ranges(committed, checkpoint.tree_size)
    complete = not absent and root_from_leaf_hashes(
        [committed[index] for index in range(checkpoint.tree_size)]) == checkpoint.root_hash
    return VerificationReport(checkpoint, intact, tuple(findings), complete, absent)


def _absent_ranges(committed: Mapping[int, bytes], tree_size: int) -> tuple[tuple[int, int], ...]:
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for index in range(tree_size + 1):
        present = index == tree_size or index in committed
        if not present and start is None:
            start = index
        elif present and start is not None:
            runs.append((start, index))
            start = None
    return tuple(runs)


def verify_checkpoint_chain(links: Sequence[ChainLink], verifiers: Iterable[NoteVerifier]) -> VerificationReport:
    """Check that each checkpoint in `links` extends the one before it."""
    trusted = list(verifiers)
    findings: list[Finding] = []
    previous: Checkpoint | None = None
    for position, link in enumerate(links):
        try:
            current = open_checkpoint(link.signed_checkpoint, trusted)
        except NoteError as error:
            findings.append(Finding(FindingKind.CHECKPOINT_INVALID, None, f"checkpoint {position}", str(error)))
            continue
        if previous is not None:
            finding = _consistency_finding(previous, current, link.proof_from_previous)
            if finding is not None:
                findings.append(finding)
        previous = current
    return VerificationReport(previous, len(links), tuple(findings))


def _consistency_finding(held: Checkpoint, current: Checkpoint, proof: Sequence[bytes] | None) -> Finding | None:
    label = f"checkpoint {held.tree_size}"
    if held.tree_size > current.tree_size:
        return Finding(FindingKind.CONSISTENCY_UNPROVEN, None, label,
                       f"a checkpoint of size {held.tree_size} was seen before this one of size "
                       f"{current.tree_size}: the log may have been rolled back")
    if proof is None:
        return Finding(FindingKind.CONSISTENCY_UNPROVEN, None, label,
                       f"no consistency proof from size {held.tree_size} to {current.tree_size}")
    try:
        verify_consistency(held.tree_size, current.tree_size, held.root_hash, current.root_hash, proof)
    except ProofError as error:
        return Finding(FindingKind.HISTORY_REWRITTEN, None, label,
                       f"the first {held.tree_size} entries signed earlier are not the first {held.tree_size} "
                       f"of the tree of size {current.tree_size}: {error}")
    return None


def _check_held_checkpoints(
    checkpoint: Checkpoint, held: Sequence[str], proofs: Mapping[int, Sequence[bytes]], trusted: list[NoteVerifier]
) -> list[Finding]:
    findings: list[Finding] = []
    for note in held:
        try:
            earlier = open_checkpoint(note, trusted)
        except NoteError as error:
            findings.append(Finding(FindingKind.CHECKPOINT_INVALID, None, "held checkpoint", str(error)))
            continue
        needs_no_proof = earlier.tree_size in (0, checkpoint.tree_size)
        finding = _consistency_finding(earlier, checkpoint, () if needs_no_proof else proofs.get(earlier.tree_size))
        if finding is not None:
            findings.append(finding)
    return findings


MAX_MOVED_CANDIDATES = 256
"""Where entries' proofs fail, the places they may have been moved from are tried only when
there are at most this many failed entries and places (each try is one proof walk)."""


def _proves(leaf: ExportedLeaf, candidate: bytes, checkpoint: Checkpoint, *, at: int | None = None) -> bool:
    try:
        return root_from_inclusion_proof(
            leaf.leaf_index if at is None else at, checkpoint.tree_size, candidate, leaf.inclusion_proof
        ) == checkpoint.root_hash
    except ProofError:
        return False


def _committed_leaf_hashes(
    checkpoint: Checkpoint, leaves: Sequence[ExportedLeaf]
) -> tuple[dict[int, bytes], list[Finding]]:
    """Leaf index -> the hash the signed tree holds there, for every leaf whose proof passes."""
    committed: dict[int, bytes] = {}
    findings: list[Finding] = []
    failed: list[ExportedLeaf] = []
    for leaf in leaves:
        if leaf.leaf_index >= checkpoint.tree_size or leaf.leaf_index in committed:
            continue
        if _proves(leaf, leaf.logged_leaf_hash, checkpoint):
            committed[leaf.leaf_index] = leaf.logged_leaf_hash
        else:
            failed.append(leaf)
    present = {leaf.leaf_index for leaf in leaves}
    # An entry moved whole comes from a leaf whose own entry also failed, or is gone.
    candidates: list[int] = []
    if len(failed) <= MAX_MOVED_CANDIDATES:  # a tree edited high up fails thousands: nothing was moved
        gone = set(range(checkpoint.tree_size)) - present if checkpoint.tree_size - len(present) <= MAX_MOVED_CANDIDATES else set()
        candidates = sorted({leaf.leaf_index for leaf in failed} | gone)[:MAX_MOVED_CANDIDATES]
    for leaf in failed:
        record_hash = leaf_hash(leaf.leaf_data) if leaf.leaf_data is not None else None
        if record_hash is not None and _proves(leaf, record_hash, checkpoint):
            committed.setdefault(leaf.leaf_index, record_hash)
            detail = "the log's stored hash for this leaf was edited; the record itself matches the checkpoint"
        else:
            origin = next((index for index in candidates if index != leaf.leaf_index and index not in committed
                           and _proves(leaf, leaf.logged_leaf_hash, checkpoint, at=index)), None)
            if origin is not None:
                committed[origin] = leaf.logged_leaf_hash  # its record is then found REORDERED
                continue
            detail = "the log's tree on the path to this leaf does not match the signed checkpoint"
        findings.append(Finding(FindingKind.TREE_ALTERED, leaf.leaf_index, leaf.label, detail))
    return committed, findings


def _compare_records(
    checkpoint: Checkpoint, bundle: ExportBundle, committed: dict[int, bytes]
) -> tuple[list[Finding], int]:
    logged_at = {hash_: index for index, hash_ in committed.items()}
    record_hashes = [leaf_hash(leaf.leaf_data) if leaf.leaf_data is not None else None for leaf in bundle.leaves]
    # Committed leaves whose event appears somewhere in the export, at any position.
    accounted = {logged_at[hash_] for hash_ in record_hashes if hash_ is not None and hash_ in logged_at}
    findings: list[Finding] = []
    moved_away: set[int] = set()
    seen: set[int] = set()
    intact = 0
    for leaf, record_hash in zip(bundle.leaves, record_hashes, strict=True):
        index = leaf.leaf_index
        duplicate = index in seen
        seen.add(index)
        if record_hash is None:
            if index in committed and index not in accounted:
                findings.append(Finding(FindingKind.DELETED, index, leaf.label,
                                        f"the event logged at leaf {index} has no record any more"))
            continue
        if not duplicate and committed.get(index) == record_hash:
            intact += 1
            continue
        if record_hash in logged_at:
            moved_away.add(index)
            findings.append(Finding(FindingKind.REORDERED, index, leaf.label,
                                    f"logged at leaf {logged_at[record_hash]} but stored at leaf {index}"))
        elif index >= checkpoint.tree_size:
            findings.append(Finding(FindingKind.INSERTED, index, leaf.label,
                                    f"leaf {index} lies beyond the signed tree of size {checkpoint.tree_size}"))
        elif duplicate or index in accounted:
            findings.append(Finding(FindingKind.INSERTED, index, leaf.label,
                                    f"never logged; it occupies leaf {index}, whose logged event is elsewhere"))
        elif index in committed:
            findings.append(Finding(FindingKind.CHANGED, index, leaf.label,
                                    f"differs from the event logged at leaf {index}"))
    for index in sorted(moved_away - accounted):
        if index in committed:
            findings.append(Finding(FindingKind.DELETED, index, "",
                                    f"the event logged at leaf {index} is in this export at no position"))
    if bundle.complete_range is not None:
        start, end = bundle.complete_range
        for index in range(start, min(end, checkpoint.tree_size)):
            if index not in seen:
                findings.append(Finding(FindingKind.DELETED, index, "",
                                        f"leaf {index} is missing from an export that claims every leaf "
                                        f"from {start} to {end - 1}"))
    return findings, intact
