from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from libs.audit.events import Outcome
from libs.audit.pseudonyms import Pseudonymizer
from libs.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from libs.storage.database import IntegrityError
from libs.tlog import reference
from libs.tlog.checkpoint import open_checkpoint
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteSigner
from libs.tlog.proofs import verify_consistency, verify_inclusion
from services.compliance.audit.conftest import MovableClock, audit_event, edit_database
from services.compliance.audit.merkle import NodeId
from services.compliance.audit.model import EventFilter, StoredCheckpoint, UnauthenticatedDenials
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog, CountedDenials


def publish(audit_log: AuditLog, clock: MovableClock) -> StoredCheckpoint:
    clock.advance()
    checkpoint = audit_log.publish_checkpoint_if_due()
    assert checkpoint is not None
    return checkpoint


def test_events_become_consecutive_leaves_under_a_signed_checkpoint(
    audit_log: AuditLog, signer: NoteSigner, clock: MovableClock
) -> None:
    events = [audit_event(n) for n in range(11)]
    [first, second] = audit_log.append([events[:4], events[4:]])
    assert not isinstance(first, AlreadyExists) and not isinstance(second, AlreadyExists)
    assert [a.leaf_index for a in first + second] == list(range(11))
    checkpoint = open_checkpoint(publish(audit_log, clock).signed_note, [signer.verifier])
    assert checkpoint.tree_size == 11
    assert checkpoint.root_hash == reference.root([event.canonical_bytes() for event in events])


def test_a_retried_event_id_returns_its_first_leaf_and_logs_nothing_new(audit_log: AuditLog) -> None:
    audit_log.append([[audit_event(0), audit_event(1)]])
    [retry] = audit_log.append([[audit_event(1), audit_event(2), audit_event(2)]])
    assert not isinstance(retry, AlreadyExists)
    assert [(a.leaf_index, a.newly_appended) for a in retry] == [(1, False), (2, True), (2, False)]


def test_an_event_id_reused_for_other_content_fails_only_its_own_batch(audit_log: AuditLog) -> None:
    audit_log.append([[audit_event(0)]])
    forged = audit_event(0, outcome=Outcome.SUCCEEDED, reason="REWRITTEN")
    rejected, accepted = audit_log.append([[audit_event(5), forged], [audit_event(6)]])
    assert isinstance(rejected, AlreadyExists) and rejected.reason == "AUDIT_EVENT_ID_REUSED"
    assert not isinstance(accepted, AlreadyExists) and accepted[0].leaf_index == 1


def test_the_first_checkpoint_signs_the_empty_log(audit_log: AuditLog, signer: NoteSigner) -> None:
    checkpoint = audit_log.publish_checkpoint_if_due()
    assert checkpoint is not None and checkpoint.tree_size == 0
    assert open_checkpoint(checkpoint.signed_note, [signer.verifier]).root_hash == reference.root([])


def test_checkpoints_wait_for_new_events_and_for_the_interval(audit_log: AuditLog, clock: MovableClock) -> None:
    audit_log.append([[audit_event(0)]])
    assert audit_log.publish_checkpoint_if_due() is not None
    audit_log.append([[audit_event(1)]])
    clock.advance(0.1)
    assert audit_log.publish_checkpoint_if_due() is None  # too soon
    clock.advance(0.5)
    assert audit_log.publish_checkpoint_if_due() is not None
    clock.advance(5)
    assert audit_log.publish_checkpoint_if_due() is None  # nothing new to sign


def test_inclusion_proofs_by_event_id_and_by_index_verify(audit_log: AuditLog, queries: AuditQueries, clock: MovableClock) -> None:
    events = [audit_event(n) for n in range(37)]
    audit_log.append([events[:20]])
    old = publish(audit_log, clock)
    audit_log.append([events[20:]])
    new = publish(audit_log, clock)
    by_id = queries.inclusion_proof(event_id=events[30].event_id)
    assert (by_id.leaf_index, by_id.tree_size) == (30, 37)
    verify_inclusion(30, 37, leaf_hash(events[30].canonical_bytes()), by_id.hashes, new.root_hash)
    at_old_size = queries.inclusion_proof(leaf_index=7, tree_size=old.tree_size)
    verify_inclusion(7, 20, leaf_hash(events[7].canonical_bytes()), at_old_size.hashes, old.root_hash)


def test_a_consistency_proof_joins_two_checkpoints(audit_log: AuditLog, queries: AuditQueries, clock: MovableClock) -> None:
    audit_log.append([[audit_event(n) for n in range(5)]])
    old = publish(audit_log, clock)
    audit_log.append([[audit_event(n) for n in range(5, 64)]])
    new = publish(audit_log, clock)
    proof = queries.consistency_proof(first_size=old.tree_size)
    assert proof.second_size == new.tree_size
    verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof.hashes)
    assert queries.consistency_proof(first_size=64, second_size=64).hashes == []


def test_a_proof_for_a_size_beyond_the_tree_names_the_field(audit_log: AuditLog, queries: AuditQueries, clock: MovableClock) -> None:
    audit_log.append([[audit_event(n) for n in range(3)]])
    publish(audit_log, clock)
    with pytest.raises(InvalidArgument) as beyond:
        queries.inclusion_proof(leaf_index=0, tree_size=4)
    assert beyond.value.reason == "TREE_SIZE_BEYOND_LOG"
    assert beyond.value.violations[0].field == "tree_size"
    with pytest.raises(InvalidArgument) as leaf:
        queries.inclusion_proof(leaf_index=3, tree_size=3)
    assert leaf.value.violations[0].field == "leaf_index"
    with pytest.raises(InvalidArgument) as old:
        queries.consistency_proof(first_size=3, second_size=2)
    assert old.value.violations[0].field == "first_size"


def test_an_unknown_event_id_is_not_found(audit_log: AuditLog, queries: AuditQueries, clock: MovableClock) -> None:
    audit_log.append([[audit_event(0)]])
    publish(audit_log, clock)
    with pytest.raises(NotFound) as missing:
        queries.inclusion_proof(event_id=audit_event(99).event_id)
    assert missing.value.reason == "AUDIT_EVENT_NOT_FOUND"


def test_a_rewritten_tree_is_never_signed(audit_log: AuditLog, store: AuditLogStore, clock: MovableClock) -> None:
    audit_log.append([[audit_event(n) for n in range(6)]])
    publish(audit_log, clock)
    audit_log.append([[audit_event(6)]])
    # Someone rewrites the hash over leaves 0-3 (node level 2, index 0), as if history had changed.
    edit_database(store, ("UPDATE tree_node SET hash = ? WHERE node_key = ?",
                          (leaf_hash(b"forged"), NodeId(2, 0).key)))
    clock.advance()
    with pytest.raises(FailedPrecondition) as refused:
        audit_log.publish_checkpoint_if_due()
    assert refused.value.reason == "AUDIT_LOG_INCONSISTENT"


def test_a_log_signed_with_another_key_refuses_to_continue(
    audit_log: AuditLog, store: AuditLogStore, clock: MovableClock
) -> None:
    audit_log.publish_checkpoint_if_due()
    impostor = AuditLog(store, NoteSigner.generate("limelight.test/audit"), clock=clock)
    with pytest.raises(FailedPrecondition) as refused:
        impostor.publish_checkpoint_if_due()
    assert refused.value.reason == "AUDIT_SIGNING_KEY_MISMATCH"


def test_a_reopened_store_continues_the_same_tree(
    tmp_path: Path, database_engine: str, signer: NoteSigner, clock: MovableClock
) -> None:
    first = AuditLogStore.open(tmp_path)
    AuditLog(first, signer, clock=clock).append([[audit_event(n) for n in range(9)]])
    first.close()
    reopened = AuditLogStore.open(tmp_path)
    log = AuditLog(reopened, signer, clock=clock)
    log.append([[audit_event(n) for n in range(9, 13)]])
    checkpoint = log.publish_checkpoint_if_due()
    assert checkpoint is not None
    assert checkpoint.root_hash == reference.root([audit_event(n).canonical_bytes() for n in range(13)])
    reopened.close()


def test_queries_filter_every_field_newest_first(audit_log: AuditLog, queries: AuditQueries) -> None:
    audit_log.append([[audit_event(n) for n in range(40)]])

    def leaves(event_filter: EventFilter) -> list[int]:
        return [e.leaf_index for e in queries.query(event_filter, page_size=1000).events]

    assert leaves(EventFilter(subject_ref=f"{3:064x}")) == [38, 31, 24, 17, 10, 3]
    assert leaves(EventFilter(actor="services/gifts-1", resource="streams/2/gifts/22")) == [22]
    assert leaves(EventFilter(outcome=Outcome.REJECTED)) == list(range(36, -1, -4))
    assert leaves(EventFilter(action="gifts.SendGift")) == list(range(39, -1, -1))
    start = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    window = EventFilter(start_time=start + dt.timedelta(seconds=10), end_time=start + dt.timedelta(seconds=13))
    assert leaves(window) == [12, 11, 10]
    assert leaves(EventFilter(resource="streams/4/")) == list(range(39, -1, -5))
    assert leaves(EventFilter(resource="streams/4")) == []
    [found] = queries.query(EventFilter(resource="streams/2/gifts/22")).events
    assert found.event == audit_event(22)


def test_query_pages_follow_each_other_and_tokens_stay_with_their_filter(audit_log: AuditLog, queries: AuditQueries) -> None:
    audit_log.append([[audit_event(n) for n in range(25)]])
    succeeded = EventFilter(outcome=Outcome.SUCCEEDED)
    seen: list[int] = []
    token = ""
    while True:
        page = queries.query(succeeded, page_size=7, page_token=token)
        seen += [e.leaf_index for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seen == [n for n in range(24, -1, -1) if n % 4]
    first = queries.query(succeeded, page_size=7)
    with pytest.raises(InvalidArgument) as other_filter:
        queries.query(EventFilter(), page_token=first.next_page_token)
    assert other_filter.value.violations[0].field == "page_token"
    assert other_filter.value.reason == "PAGE_TOKEN_INVALID"
    with pytest.raises(InvalidArgument):
        queries.query(succeeded, page_token="not a token")


def test_counted_refusals_are_logged_once_their_window_closes(
    audit_log: AuditLog, queries: AuditQueries, clock: MovableClock
) -> None:
    denials = UnauthenticatedDenials(window=dt.timedelta(seconds=60), max_peers=10)
    counted = CountedDenials(audit_log, denials, Pseudonymizer(b"s" * 32), clock=clock)
    for _ in range(5):
        denials.count(peer="ipv4:10.0.0.7", method="/limelight.compliance.v1.AuditService/QueryEvents",
                      reason="TOKEN_MISSING", at=clock())
    counted.log_closed_windows()
    assert queries.query(EventFilter()).events == []
    clock.advance(60)
    counted.log_closed_windows()
    [logged] = queries.query(EventFilter()).events
    assert (logged.event.action, logged.event.outcome, logged.event.attributes["denials"]) == (
        "compliance.QueryEvents", Outcome.DENIED, "5")
    assert logged.event.attributes["peer_ref"] == Pseudonymizer(b"s" * 32).subject_ref("peers/ipv4:10.0.0.7")


def test_leaves_staged_in_a_transaction_that_never_committed_are_forgotten(
    audit_log: AuditLog, store: AuditLogStore, clock: MovableClock
) -> None:
    audit_log.append([[audit_event(0)]])
    with pytest.raises(RuntimeError), store.writing() as log:
        audit_log.stage(log, [audit_event(1), audit_event(2)])
        raise RuntimeError("the batch's transaction fails before it is sealed (a lost connection, say)")
    with store.writing() as log:
        [appended] = audit_log.stage(log, [audit_event(3)])
        audit_log.seal(log)
    assert appended.leaf_index == 1  # numbered from the stored tree, not from what the failed batch staged
    checkpoint = publish(audit_log, clock)
    assert checkpoint.root_hash == reference.root([audit_event(n).canonical_bytes() for n in (0, 3)])


@pytest.mark.parametrize("statement", [
    ("UPDATE audit_event SET reason = 'REWRITTEN'", ()),
    ("DELETE FROM audit_event", ()),
    ("UPDATE tree_node SET hash = ?", (leaf_hash(b"forged"),)),
    ("DELETE FROM tree_node", ()),
    ("INSERT INTO checkpoint (tree_size, root_hash, signed_note, published_at_us) VALUES (1, ?, 'note', 0)",
     (leaf_hash(b"old"),)),
    ("INSERT INTO audit_event SELECT 7, event_id, actor, on_behalf_of, action, resource, outcome, reason, trace_id,"
     " event_time_us, subject_ref, attributes, logged_at_us FROM audit_event WHERE leaf_index = 0", ()),
])
def test_the_schema_itself_refuses_to_rewrite_the_log(
    audit_log: AuditLog, store: AuditLogStore, clock: MovableClock, statement: tuple[str, tuple[object, ...]]
) -> None:
    """Past the store's code, on either engine: append-only triggers, growing checkpoints, one leaf per event id."""
    audit_log.append([[audit_event(n) for n in range(2)]])
    publish(audit_log, clock)
    with pytest.raises(IntegrityError), store.writer_database.transaction() as tx:
        tx.execute(*statement)
    with store.reading() as tree:
        assert tree.tree_size() == 2 and tree.leaf_index_of(audit_event(1).event_id) == 1
