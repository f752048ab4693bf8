"""Exports verified offline, and the store edited behind the service's back (the tamper cases)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from libs.audit.events import AuditEvent
from libs.audit.evidence import ExportHeader, ExportLine, read_export, write_export
from libs.storage.database import open_database
from libs.tlog.export import FindingKind, VerificationReport, verify_export
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteSigner
from services.compliance.audit.conftest import MovableClock, audit_event, edit_database
from services.compliance.audit.model import EventFilter, StoredCheckpoint
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.store import MIGRATIONS, AuditLogStore
from services.compliance.audit.usecases import AuditLog

SIZE = 40


def export_file(queries: AuditQueries, event_filter: EventFilter | None = None,
                held: Sequence[StoredCheckpoint] = ()) -> str:
    """The export as the officer's CLI writes it: the stream, plus proofs from checkpoints held before."""
    export = queries.export(event_filter or EventFilter())
    proofs = {checkpoint.tree_size: queries.consistency_proof(
        first_size=checkpoint.tree_size, second_size=export.checkpoint.tree_size).hashes for checkpoint in held}
    buffer = io.StringIO()
    write_export(
        buffer,
        ExportHeader(export.checkpoint.signed_note, export.complete_range, proofs),
        (ExportLine(r.leaf_index, r.logged.event.record() if r.logged else None, r.logged_leaf_hash,
                    r.inclusion_proof) for r in export.records),
    )
    return buffer.getvalue()


def verify(text: str, signer: NoteSigner, held: Sequence[StoredCheckpoint] = ()) -> VerificationReport:
    return verify_export(read_export(io.StringIO(text)), [signer.verifier],
                         held_checkpoints=[checkpoint.signed_note for checkpoint in held])


def kinds(report: VerificationReport) -> list[tuple[FindingKind, int | None, str]]:
    return [(finding.kind, finding.leaf_index, finding.label) for finding in report.findings]


def event_id(number: int) -> str:
    return audit_event(number).event_id


@pytest.fixture
def checkpoint(audit_log: AuditLog, clock: MovableClock) -> StoredCheckpoint:
    audit_log.append([[audit_event(n) for n in range(SIZE)]])
    clock.advance()
    published = audit_log.publish_checkpoint_if_due()
    assert published is not None
    return published


def test_an_untouched_export_verifies_completely(audit_log: AuditLog, queries: AuditQueries, signer: NoteSigner, checkpoint: StoredCheckpoint) -> None:
    report = verify(export_file(queries), signer)
    assert report.ok and report.intact_entries == SIZE
    assert report.proven_complete and report.absent_ranges == ()


def with_header(text: str, **changes: object) -> str:
    """The export with its (unsigned) header edited, as anyone holding the file can."""
    header, _, rest = text.partition("\n")
    return json.dumps({**json.loads(header), **changes}) + "\n" + rest


def test_a_line_deleted_and_the_range_claim_removed_is_not_proven_complete(
    queries: AuditQueries, signer: NoteSigner, checkpoint: StoredCheckpoint
) -> None:
    lines = export_file(queries).splitlines(keepends=True)
    del lines[1 + 21]
    report = verify(with_header("".join(lines), complete_range=None), signer)
    assert not report.proven_complete and report.absent_ranges == ((21, 22),)


def test_a_range_claim_shrunk_to_drop_the_last_leaf_is_not_proven_complete(
    queries: AuditQueries, signer: NoteSigner, checkpoint: StoredCheckpoint
) -> None:
    lines = export_file(queries).splitlines(keepends=True)
    del lines[-1]
    report = verify(with_header("".join(lines), complete_range=[0, SIZE - 1]), signer)
    assert not report.proven_complete and report.absent_ranges == ((SIZE - 1, SIZE),)


def test_a_filtered_export_names_the_leaves_it_cannot_vouch_for(
    queries: AuditQueries, signer: NoteSigner, checkpoint: StoredCheckpoint
) -> None:
    report = verify(export_file(queries, EventFilter(subject_ref=f"{3:064x}")), signer)
    assert report.ok and not report.proven_complete
    assert report.absent_ranges[:2] == ((0, 3), (4, 10))


def test_two_lines_moved_with_their_proofs_are_named_as_reordered(
    queries: AuditQueries, signer: NoteSigner, checkpoint: StoredCheckpoint
) -> None:
    lines = export_file(queries).splitlines(keepends=True)
    fifth, ninth = json.loads(lines[1 + 5]), json.loads(lines[1 + 9])
    lines[1 + 5] = json.dumps({**ninth, "leaf_index": 5}) + "\n"
    lines[1 + 9] = json.dumps({**fifth, "leaf_index": 9}) + "\n"
    report = verify("".join(lines), signer)
    assert kinds(report) == [(FindingKind.REORDERED, 5, event_id(9)), (FindingKind.REORDERED, 9, event_id(5))]
    assert report.proven_complete  # every leaf is there, only in the wrong places


def test_a_filtered_export_verifies_its_events_only(audit_log: AuditLog, queries: AuditQueries, signer: NoteSigner, checkpoint: StoredCheckpoint) -> None:
    report = verify(export_file(queries, EventFilter(subject_ref=f"{3:064x}")), signer)
    assert report.ok and report.intact_entries == 6


def test_a_changed_event_is_named(audit_log: AuditLog, queries: AuditQueries, store: AuditLogStore, signer: NoteSigner,
                                  checkpoint: StoredCheckpoint) -> None:
    edit_database(store, ("UPDATE audit_event SET outcome = 'succeeded', reason = '' WHERE leaf_index = 8", ()))
    assert kinds(verify(export_file(queries), signer)) == [(FindingKind.CHANGED, 8, event_id(8))]


def test_a_deleted_event_is_named_by_its_leaf_even_in_a_filtered_export(
    audit_log: AuditLog, queries: AuditQueries, store: AuditLogStore, signer: NoteSigner, checkpoint: StoredCheckpoint
) -> None:
    edit_database(store, ("DELETE FROM audit_event WHERE leaf_index = 13", ()))
    assert kinds(verify(export_file(queries), signer)) == [(FindingKind.DELETED, 13, "")]
    filtered = export_file(queries, EventFilter(subject_ref=f"{6:064x}"))
    assert kinds(verify(filtered, signer)) == [(FindingKind.DELETED, 13, "")]


def test_deleting_the_line_of_an_event_from_a_complete_export_is_caught(
    audit_log: AuditLog, queries: AuditQueries, signer: NoteSigner, checkpoint: StoredCheckpoint
) -> None:
    lines = export_file(queries).splitlines(keepends=True)
    del lines[1 + 21]
    assert kinds(verify("".join(lines), signer)) == [(FindingKind.DELETED, 21, "")]


def test_two_swapped_events_are_both_named(audit_log: AuditLog, queries: AuditQueries, store: AuditLogStore, signer: NoteSigner,
                                          checkpoint: StoredCheckpoint) -> None:
    edit_database(store,
                  ("UPDATE audit_event SET leaf_index = 1000 WHERE leaf_index = 5", ()),
                  ("UPDATE audit_event SET leaf_index = 5 WHERE leaf_index = 9", ()),
                  ("UPDATE audit_event SET leaf_index = 9 WHERE leaf_index = 1000", ()))
    report = verify(export_file(queries), signer)
    assert kinds(report) == [(FindingKind.REORDERED, 5, event_id(9)), (FindingKind.REORDERED, 9, event_id(5))]
    assert report.findings[0].detail == "logged at leaf 9 but stored at leaf 5"


def test_an_event_slipped_into_the_middle_is_named(audit_log: AuditLog, queries: AuditQueries, store: AuditLogStore, signer: NoteSigner,
                                                  checkpoint: StoredCheckpoint) -> None:
    forged = audit_event(500)
    row = (20, forged.event_id, forged.actor, "", forged.action, forged.resource, forged.outcome.value,
           forged.reason, forged.trace_id, 0, forged.subject_ref, "{}", 0)
    edit_database(store,
                  ("UPDATE audit_event SET leaf_index = leaf_index + 1000 WHERE leaf_index >= 20", ()),
                  ("UPDATE audit_event SET leaf_index = leaf_index - 999 WHERE leaf_index >= 1000", ()),
                  ("INSERT INTO audit_event VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row))
    found = kinds(verify(export_file(queries), signer))
    assert found[0] == (FindingKind.INSERTED, 20, forged.event_id)
    # Everything after it is reported as moved by one, and the last logged event as pushed out.
    assert found[1:-1] == [(FindingKind.REORDERED, n + 1, event_id(n)) for n in range(20, SIZE - 1)]
    assert found[-1] == (FindingKind.DELETED, SIZE - 1, "")


def test_an_edited_leaf_hash_in_the_tree_is_reported(audit_log: AuditLog, queries: AuditQueries, store: AuditLogStore,
                                                    signer: NoteSigner, checkpoint: StoredCheckpoint) -> None:
    edit_database(store, ("UPDATE tree_node SET hash = ? WHERE node_key = 4", (leaf_hash(b"forged"),)))
    edited, sibling = verify(export_file(queries), signer).findings
    assert (edited.kind, edited.leaf_index) == (FindingKind.TREE_ALTERED, 4)
    assert "record itself matches" in edited.detail
    # Leaf 5's proof climbs through leaf 4's hash, so it cannot be checked either.
    assert (sibling.kind, sibling.leaf_index) == (FindingKind.TREE_ALTERED, 5)


def test_an_event_edited_in_the_export_file_is_named(audit_log: AuditLog, queries: AuditQueries, signer: NoteSigner,
                                                    checkpoint: StoredCheckpoint) -> None:
    lines = export_file(queries).splitlines(keepends=True)
    line = json.loads(lines[1 + 30])
    line["event"]["actor"] = "services/someone-else"
    lines[1 + 30] = json.dumps(line) + "\n"
    assert kinds(verify("".join(lines), signer)) == [(FindingKind.CHANGED, 30, event_id(30))]


def test_rewritten_history_is_caught_by_a_checkpoint_held_from_before(
    tmp_path: Path, audit_log: AuditLog, signer: NoteSigner, clock: MovableClock, checkpoint: StoredCheckpoint
) -> None:
    # The same key signs a second history in which event 3 says something else.
    rewritten_store = AuditLogStore(open_database("compliance", MIGRATIONS, area="rewritten", root=tmp_path))
    rewritten = AuditLog(rewritten_store, signer, clock=clock)
    events: list[AuditEvent] = [audit_event(n, reason="NOTHING_HAPPENED") if n == 3 else audit_event(n)
                                for n in range(SIZE + 5)]
    rewritten.append([events])
    rewritten.publish_checkpoint_if_due()
    report = verify(export_file(AuditQueries(rewritten_store), held=[checkpoint]), signer, held=[checkpoint])
    assert [f.kind for f in report.findings] == [FindingKind.HISTORY_REWRITTEN]
    assert report.intact_entries == SIZE + 5  # internally consistent: only the held checkpoint exposes it
    rewritten_store.close()


def test_a_grown_log_is_consistent_with_the_checkpoint_held_from_before(
    audit_log: AuditLog, queries: AuditQueries, signer: NoteSigner, clock: MovableClock, checkpoint: StoredCheckpoint
) -> None:
    audit_log.append([[audit_event(n) for n in range(SIZE, SIZE + 9)]])
    clock.advance()
    audit_log.publish_checkpoint_if_due()
    assert verify(export_file(queries, held=[checkpoint]), signer, held=[checkpoint]).ok


def test_an_export_older_than_a_held_checkpoint_is_flagged(
    audit_log: AuditLog, queries: AuditQueries, signer: NoteSigner, clock: MovableClock, checkpoint: StoredCheckpoint
) -> None:
    stale = export_file(queries)
    audit_log.append([[audit_event(SIZE)]])
    clock.advance()
    newer = audit_log.publish_checkpoint_if_due()
    assert newer is not None
    assert [f.kind for f in verify(stale, signer, held=[newer]).findings] == [FindingKind.CONSISTENCY_UNPROVEN]


def test_an_export_signed_by_another_key_is_rejected(audit_log: AuditLog, queries: AuditQueries, checkpoint: StoredCheckpoint) -> None:
    report = verify(export_file(queries), NoteSigner.generate("limelight.test/audit"))
    assert not report.ok and [f.kind for f in report.findings] == [FindingKind.CHECKPOINT_INVALID]
