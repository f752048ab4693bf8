from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from libs.audit.events import Outcome
from libs.clock import utc_now
from libs.errors import AlreadyExists, Unavailable
from libs.tlog.note import NoteSigner
from services.compliance.audit.conftest import audit_event
from services.compliance.audit.model import Appended
from services.compliance.audit.sequencer import Sequencer
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog

WRITERS = 64
APPENDS_PER_WRITER = 10


@pytest.fixture
def sequencer(store: AuditLogStore, signer: NoteSigner) -> Iterator[Sequencer]:
    log = AuditLog(store, signer, clock=utc_now, checkpoint_interval=dt.timedelta(milliseconds=50))
    started = Sequencer(log, store, idle_seconds=0.02)
    yield started
    started.stop()  # before the store closes; a second stop does nothing


def test_concurrent_writers_are_each_acknowledged_once_from_shared_commits(
    sequencer: Sequencer, store: AuditLogStore
) -> None:
    acknowledged: list[Appended] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        for append in range(APPENDS_PER_WRITER):
            [appended] = sequencer.submit([audit_event(number * APPENDS_PER_WRITER + append)]).result(timeout=30)
            with lock:
                acknowledged.append(appended)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sequencer.stop()
    total = WRITERS * APPENDS_PER_WRITER
    assert sorted(a.leaf_index for a in acknowledged) == list(range(total))
    assert sequencer.commits < total  # batches from different writers shared a transaction
    with store.reading() as tree:
        assert tree.tree_size() == total


def test_a_batch_reusing_an_event_id_fails_without_failing_its_neighbours(sequencer: Sequencer) -> None:
    sequencer.submit([audit_event(0)]).result(timeout=10)
    forged: Future[list[Appended]] = sequencer.submit([audit_event(0, outcome=Outcome.FAILED)])
    honest = sequencer.submit([audit_event(1)])
    with pytest.raises(AlreadyExists):
        forged.result(timeout=10)
    assert honest.result(timeout=10)[0].leaf_index == 1
    sequencer.stop()


def test_a_checkpoint_covers_new_events_within_a_second(sequencer: Sequencer, store: AuditLogStore) -> None:
    for number in range(30):
        sequencer.submit([audit_event(number)]).result(timeout=10)
        time.sleep(0.01)
    acknowledged_at = time.monotonic()
    while True:
        with store.reading() as tree:
            latest = tree.latest_checkpoint()
        if latest is not None and latest.tree_size == 30:
            break
        assert time.monotonic() - acknowledged_at < 1.0, "no checkpoint within a second"
        time.sleep(0.01)
    sequencer.stop()


def test_appends_after_stop_are_refused(sequencer: Sequencer) -> None:
    sequencer.stop()
    with pytest.raises(Unavailable):
        sequencer.submit([audit_event(0)]).result(timeout=10)
