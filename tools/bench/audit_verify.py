"""Offline verification time for an export of 10,000 events.

Builds a log, exports it to the JSON Lines file a regulator receives, then times
`limelight audit verify`'s work: read the file, check the checkpoint signature, and
check every event against its inclusion proof. The baseline, in the same run, reads
the same file and only hashes each event's canonical bytes (what any check of the
events costs before a single proof is looked at).

    python -m tools.bench.audit_verify [--events 10000] [--log-size 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import tempfile
import time
import uuid
from pathlib import Path

from libs.audit.events import AuditEvent, Outcome
from libs.audit.evidence import ExportHeader, ExportLine, read_export, write_export
from libs.clock import utc_now
from libs.tlog.export import verify_export
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteSigner
from services.compliance.audit.model import EventFilter
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def exported_file(queries: AuditQueries, event_filter: EventFilter) -> str:
    export = queries.export(event_filter)
    buffer = io.StringIO()
    write_export(buffer, ExportHeader(export.checkpoint.signed_note, export.complete_range, {}),
                 (ExportLine(r.leaf_index, r.logged.event.record() if r.logged else None, r.logged_leaf_hash,
                             r.inclusion_proof) for r in export.records))
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000, help="events in the export")
    parser.add_argument("--log-size", type=int, default=10_000, help="entries in the log (>= --events)")
    arguments = parser.parse_args()
    signer = NoteSigner.generate("bench.limelight/audit")
    with tempfile.TemporaryDirectory() as directory:
        store = AuditLogStore.open(Path(directory))
        log = AuditLog(store, signer, clock=utc_now)
        # Every (log_size / events)-th entry is about the exported subject.
        stride = arguments.log_size // arguments.events
        log.append([[AuditEvent(event_id=str(uuid.UUID(int=n + 1)), actor="services/bench", action="bench.Append",
                                resource=f"bench/{n}", outcome=Outcome.SUCCEEDED,
                                event_time=START + dt.timedelta(seconds=n),
                                subject_ref="subject" if n % stride == 0 else "other")
                     for n in range(arguments.log_size)]])
        log.publish_checkpoint_if_due()
        started = time.perf_counter()
        text = exported_file(AuditQueries(store), EventFilter(subject_ref="subject") if stride > 1 else EventFilter())
        export_seconds = time.perf_counter() - started
        store.close()

    started = time.perf_counter()
    bundle = read_export(io.StringIO(text))
    for leaf in bundle.leaves:
        leaf_hash(leaf.leaf_data or b"")
    baseline = time.perf_counter() - started

    started = time.perf_counter()
    report = verify_export(read_export(io.StringIO(text)), [signer.verifier])
    verify_seconds = time.perf_counter() - started
    assert report.ok and report.intact_entries == arguments.events, report.findings[:3]

    print(f"export of {arguments.events} events from a log of {arguments.log_size} "
          f"({len(text) / 2**20:.1f} MiB, written in {export_seconds:.2f} s)")
    print(f"  baseline: read and hash each event : {baseline * 1000:7.0f} ms")
    print(f"  full verification                  : {verify_seconds * 1000:7.0f} ms "
          f"({verify_seconds / arguments.events * 1e6:.0f} us per event)")
    print(f"  ratio verify/baseline              : {verify_seconds / baseline:7.2f}x")


if __name__ == "__main__":
    main()
