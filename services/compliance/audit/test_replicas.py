"""Two audit stores over one database, as two compliance replicas run them: one log, one order, one signer."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.clock import utc_now
from libs.tlog import reference
from libs.tlog.checkpoint import open_checkpoint
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteSigner
from libs.tlog.proofs import verify_consistency, verify_inclusion
from services.compliance.audit.conftest import audit_event
from services.compliance.audit.model import Appended, EventFilter, StoredCheckpoint
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.sequencer import Sequencer
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog

WRITERS = 8
APPENDS_PER_WRITER = 25


class Replica:
    def __init__(self, root: Path, signer: NoteSigner) -> None:
        self.store = AuditLogStore.open(root)
        log = AuditLog(self.store, signer, clock=utc_now, checkpoint_interval=dt.timedelta(milliseconds=20))
        self.sequencer = Sequencer(log, self.store, idle_seconds=0.01)
        self.queries = AuditQueries(self.store)

    def close(self) -> None:
        self.sequencer.stop()
        self.store.close()


@pytest.fixture
def replicas(tmp_path: Path, database_engine: str, signer: NoteSigner) -> Iterator[list[Replica]]:
    opened = [Replica(tmp_path, signer) for _ in range(2)]
    yield opened
    for replica in opened:
        replica.close()


def wait_for_checkpoint(queries: AuditQueries, size: int, seen: dict[int, StoredCheckpoint]) -> StoredCheckpoint:
    deadline = time.monotonic() + 10
    while True:
        latest = queries.latest_checkpoint()
        seen[latest.tree_size] = latest
        if latest.tree_size == size:
            return latest
        assert time.monotonic() < deadline, f"no checkpoint of size {size}, latest {latest.tree_size}"
        time.sleep(0.01)


def test_replicas_appending_at_once_keep_one_gap_free_order_under_checkpoints_that_verify(
    replicas: list[Replica], signer: NoteSigner
) -> None:
    acknowledged: dict[str, Appended] = {}
    lock = threading.Lock()

    def writer(number: int) -> None:
        sequencer = replicas[number % 2].sequencer
        for append in range(APPENDS_PER_WRITER):
            event = audit_event(number * APPENDS_PER_WRITER + append)
            [appended] = sequencer.submit([event]).result(timeout=30)
            with lock:
                acknowledged[event.event_id] = appended

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    seen: dict[int, StoredCheckpoint] = {}
    while any(thread.is_alive() for thread in threads):  # the checkpoints as a verifier sees them meanwhile
        seen_now = replicas[1].queries.latest_checkpoint()
        seen[seen_now.tree_size] = seen_now
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    total = WRITERS * APPENDS_PER_WRITER
    assert sorted(a.leaf_index for a in acknowledged.values()) == list(range(total))  # gap-free, each leaf once

    # One order: both replicas read the same events at the same leaves, the ones each append was told.
    orders = []
    for replica in replicas:
        with replica.store.reading() as tree:
            orders.append(tree.events_oldest_first(EventFilter(), after_leaf=-1, below_leaf=total, limit=total))
    assert orders[0] == orders[1]
    assert [(row.event.event_id, row.leaf_index) for row in orders[0]] == sorted(
        ((event_id, a.leaf_index) for event_id, a in acknowledged.items()), key=lambda pair: pair[1])

    final = wait_for_checkpoint(replicas[0].queries, total, seen)
    assert open_checkpoint(final.signed_note, [signer.verifier]).tree_size == total
    assert final.root_hash == reference.root([row.event.canonical_bytes() for row in orders[0]])
    for earlier in seen.values():  # every checkpoint published on the way is a prefix of the final tree
        consistency = replicas[0].queries.consistency_proof(first_size=earlier.tree_size, second_size=total)
        verify_consistency(earlier.tree_size, total, earlier.root_hash, final.root_hash, consistency.hashes)
        open_checkpoint(earlier.signed_note, [signer.verifier])
    for leaf in (0, total // 2, total - 1):  # proofs from either replica verify against the same root
        proof = replicas[leaf % 2].queries.inclusion_proof(leaf_index=leaf, tree_size=total)
        verify_inclusion(leaf, total, leaf_hash(orders[0][leaf].event.canonical_bytes()), proof.hashes, final.root_hash)


def test_when_the_signing_replica_stops_the_other_signs_what_follows(replicas: list[Replica]) -> None:
    first, second = replicas
    [appended] = first.sequencer.submit([audit_event(0)]).result(timeout=10)
    wait_for_checkpoint(second.queries, 1, {})
    first.sequencer.stop()  # on PostgreSQL it held the lease, and hands it on with its session
    second.sequencer.submit([audit_event(n) for n in range(1, 5)]).result(timeout=10)
    assert wait_for_checkpoint(second.queries, 5, {}).tree_size == 5
    assert appended.leaf_index == 0
