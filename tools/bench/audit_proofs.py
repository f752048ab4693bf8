"""Server-side proof time at 1,000,000 entries: inclusion (by leaf and by event id) and consistency.

Builds a log of `--entries` events through the real append path in large batches
(or reuses one with `--db`), then times the audit log's use cases an RPC handler calls,
on random leaves and sizes. The baseline, in the same run and through the same read
path, is a single lookup of one event's leaf index: the ratio says what a proof costs
in point reads.

    python -m tools.bench.audit_proofs [--entries 1000000] [--samples 2000] [--db DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from libs.audit.events import AuditEvent, Outcome
from libs.clock import utc_now
from services.compliance.audit.keys import load_or_create_signing_key
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog

BUILD_BATCH = 20_000
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def event_id(number: int) -> str:
    return str(uuid.UUID(int=number + 1))


def build(log: AuditLog, store: AuditLogStore, entries: int) -> None:
    with store.reading() as tree:
        present = tree.tree_size()
    started = time.perf_counter()
    for first in range(present, entries, BUILD_BATCH):
        log.append([[AuditEvent(event_id=event_id(n), actor=f"services/s{n % 6}", action="bench.Append",
                                resource=f"bench/{n % 1000}", outcome=Outcome.SUCCEEDED,
                                event_time=START + dt.timedelta(milliseconds=n), subject_ref=f"{n % 9973:064x}")
                     for n in range(first, min(first + BUILD_BATCH, entries))]])
    if entries > present:
        print(f"built {entries - present} entries in {time.perf_counter() - started:.1f} s")
    log.publish_checkpoint_if_due()


def timed(operation: Callable[[], object], samples: int) -> list[float]:
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        operation()
        durations.append(time.perf_counter() - started)
    return durations


def report(name: str, durations: list[float], baseline: float) -> None:
    ordered = sorted(durations)
    p50, p99 = statistics.median(ordered), ordered[int(len(ordered) * 0.99)]
    print(f"  {name:<28} p50 {p50 * 1e6:7.1f} us   p99 {p99 * 1e6:7.1f} us   {p50 / baseline:5.1f}x baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--db", type=Path, help="keep the built log here and reuse it next time")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = arguments.db or Path(scratch)
        store = AuditLogStore.open(root)
        log = AuditLog(store, load_or_create_signing_key(root, "bench.limelight/audit"),
                       clock=utc_now, checkpoint_interval=dt.timedelta(0))
        build(log, store, arguments.entries)
        queries = AuditQueries(store)
        size = queries.latest_checkpoint().tree_size
        rng = random.Random(7)

        def lookup() -> None:
            with store.reading() as tree:
                tree.leaf_index_of(event_id(rng.randrange(size)))

        baseline_samples = timed(lookup, arguments.samples)
        baseline = statistics.median(baseline_samples)
        print(f"log of {size} entries, {arguments.samples} samples each (server side, no RPC)")
        report("baseline: one indexed lookup", baseline_samples, baseline)
        report("inclusion proof by leaf", timed(lambda: queries.inclusion_proof(leaf_index=rng.randrange(size)),
                                                 arguments.samples), baseline)
        report("inclusion proof by event id", timed(lambda: queries.inclusion_proof(event_id=event_id(rng.randrange(size))),
                                                     arguments.samples), baseline)
        report("consistency proof", timed(lambda: queries.consistency_proof(first_size=rng.randrange(1, size)),
                                          arguments.samples), baseline)
        store.close()


if __name__ == "__main__":
    main()
