"""Acknowledged means committed: kill -9 a process that is appending, then check the store."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from libs.clock import utc_now
from libs.storage.paths import REPO_ROOT
from libs.tlog.proofs import verify_consistency
from services.compliance.audit.keys import load_or_create_signing_key
from services.compliance.audit.model import EventFilter
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog

ORIGIN = "limelight.test/audit"

# 16 threads append 4-event batches through the group committer and print each event
# id only after its future resolved, i.e. after the commit that holds it.
WRITER = """
import datetime as dt, sys, threading, uuid
from pathlib import Path
from libs.audit.events import AuditEvent, Outcome
from libs.clock import utc_now
from services.compliance.audit.usecases import AuditLog
from services.compliance.audit.keys import load_or_create_signing_key
from services.compliance.audit.sequencer import Sequencer
from services.compliance.audit.store import AuditLogStore

root = Path(sys.argv[1])
store = AuditLogStore.open(root)
log = AuditLog(store, load_or_create_signing_key(root, sys.argv[2]), clock=utc_now,
               checkpoint_interval=dt.timedelta(milliseconds=20))
sequencer = Sequencer(log, store, idle_seconds=0.01)
printing = threading.Lock()

def write():
    while True:
        batch = [AuditEvent(event_id=str(uuid.uuid4()), actor="services/crash-test", action="test.Append",
                            resource="tests/crash", outcome=Outcome.SUCCEEDED, event_time=utc_now())
                 for _ in range(4)]
        sequencer.submit(batch).result()
        with printing:
            sys.stdout.write("".join(event.event_id + "\\n" for event in batch))
            sys.stdout.flush()

for _ in range(16):
    threading.Thread(target=write, daemon=True).start()
threading.Event().wait()
"""


def test_every_acknowledged_append_survives_kill_9(tmp_path: Path) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), ORIGIN], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert writer.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 3000 and time.monotonic() < deadline:
        acknowledged.append(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)
    acknowledged += [line.strip() for line in writer.stdout if line.strip()]  # printed before the kill
    writer.wait()
    assert len(acknowledged) >= 3000

    store = AuditLogStore.open(tmp_path)
    log = AuditLog(store, load_or_create_signing_key(tmp_path, ORIGIN), clock=utc_now,
                   checkpoint_interval=dt.timedelta(0))
    with store.reading() as tree:
        stored = [e.event.event_id for e in tree.events_newest_first(EventFilter(), before_leaf=1 << 40, limit=10**6)]
        size = tree.tree_size()
        before_crash = [tree.checkpoint_at(n) for n in range(size + 1)]
    assert len(stored) == len(set(stored)) == size
    assert set(acknowledged) <= set(stored)

    log.publish_checkpoint_if_due()  # the restarted log signs the tree it found, unless already signed
    queries = AuditQueries(store)
    after = queries.latest_checkpoint()
    assert after.tree_size == size
    published = [checkpoint for checkpoint in before_crash if checkpoint is not None and checkpoint.tree_size > 0]
    assert len(published) >= 2
    for checkpoint in published:
        proof = queries.consistency_proof(first_size=checkpoint.tree_size, second_size=size)
        verify_consistency(checkpoint.tree_size, size, checkpoint.root_hash, after.root_hash, proof.hashes)
    store.close()
