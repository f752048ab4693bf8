"""Durable audit appends per second at the storage level: group commit against one commit per append.

64 threads each append one event at a time and wait for it to be durable
(`synchronous=FULL`). The baseline gives every append its own transaction; the group
committer lets appends that arrive during a commit share the next one. Same store
code, same process, same run.

    python -m tools.bench.audit_append_storage [--seconds 5] [--writers 64]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from libs.audit.events import AuditEvent, Outcome
from libs.clock import utc_now
from libs.tlog.note import NoteSigner
from services.compliance.audit.sequencer import Sequencer
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog


def bench_event() -> AuditEvent:
    return AuditEvent(event_id=str(uuid.uuid4()), actor="services/bench", action="bench.Append",
                      resource="bench/resource", outcome=Outcome.SUCCEEDED, trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
                      event_time=utc_now(), subject_ref="ab" * 32)


def run_writers(append_one: Callable[[AuditEvent], object], writers: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    counts = [0] * writers

    def writer(number: int) -> None:
        while time.monotonic() < deadline:
            append_one(bench_event())
            counts[number] += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def open_log(root: Path) -> tuple[AuditLogStore, AuditLog]:
    store = AuditLogStore.open(root)
    return store, AuditLog(store, NoteSigner.generate("bench.limelight/audit"), clock=utc_now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", type=int, default=64)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store, log = open_log(Path(directory) / "baseline")

        def own_transaction(event: AuditEvent) -> None:
            log.append([[event]])

        baseline = run_writers(own_transaction, arguments.writers, arguments.seconds)
        store.close()

        store, log = open_log(Path(directory) / "grouped")
        sequencer = Sequencer(log, store)

        shared_transaction = lambda event: sequencer.submit([event]).result()  # noqa: E731
        grouped = run_writers(shared_transaction, arguments.writers, arguments.seconds)
        sequencer.stop()
        store.close()

    baseline_rate = baseline / arguments.seconds
    grouped_rate = grouped / arguments.seconds
    print(f"{arguments.writers} writers, one event per append, synchronous=FULL, {arguments.seconds:.0f} s each")
    print(f"  one transaction per append : {baseline_rate:8.0f} appends/s")
    print(f"  group commit               : {grouped_rate:8.0f} appends/s "
          f"({sequencer.commits} commits, {grouped / max(sequencer.commits, 1):.1f} events per commit)")
    print(f"  ratio group/baseline       : {grouped_rate / baseline_rate:8.2f}x")


if __name__ == "__main__":
    main()
