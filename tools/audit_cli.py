"""`limelight audit`: the compliance officer's tools for the audit trail.

    limelight audit query --subject users/bob --since 2025-05-01      a table (or --json)
    limelight audit export --out bob.jsonl --subject users/bob         events with proofs
    limelight audit checkpoint --chain checkpoints.jsonl               collect signed heads
    limelight audit key                                                the log's verifier key
    limelight audit verify bob.jsonl --key <verifier key> --held checkpoints.jsonl

`verify` runs offline and trusts only the key it is given (and checkpoints held from
before): it names every event that was changed, deleted, moved or inserted, and says
when the log's history was rewritten. It also says whether the export is complete,
proven from the leaves alone (every leaf of the checkpoint is there and they rebuild its
signed root), or which leaves it lacks; `--require-complete` makes a partial export
(filtered, ranged, or cut) fail. `--json` prints one JSON object instead of text. Event
ids are printed whole, however narrow the terminal. It exits 0 when everything
verifies, 1 when it found tampering (or a required completeness is missing), 2 when the
file cannot be read.

Online commands reach compliance at `--target` (default: the configured address) with
the bearer token in `--token` or `LIMELIGHT_TOKEN` (`limelight token --role
compliance_officer ...` mints one for development).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import grpc
import typer
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from rich.console import Console
from rich.table import Table

from libs.audit.events import Outcome
from libs.audit.evidence import (
    CHAIN_FORMAT,
    ExportHeader,
    ExportLine,
    MalformedEvidence,
    append_chain_link,
    format_of,
    read_chain,
    read_export,
    start_chain,
    write_export,
)
from libs.audit.protos import event_from_proto, outcome_to_proto
from libs.kit import config
from libs.kit.transport import Transport
from libs.timestamps import from_timestamp, to_timestamp
from libs.tlog.checkpoint import Checkpoint
from libs.tlog.export import ChainLink, VerificationReport, verify_checkpoint_chain, verify_export
from libs.tlog.note import NoteError, NoteVerifier

app = typer.Typer(help="Query, export and verify the audit trail.", no_args_is_help=True, add_completion=False)
console = Console()

Target = Annotated[str, typer.Option(help="Compliance service address; default: the configured one.")]
Token = Annotated[str, typer.Option(envvar="LIMELIGHT_TOKEN", help="Bearer token (compliance_officer).")]
Subject = Annotated[str, typer.Option(help="Events about this user (users/{id}), by pseudonym.")]
SubjectRef = Annotated[str, typer.Option(help="Events with this pseudonymous subject reference.")]
Actor = Annotated[str, typer.Option(help="Events by this actor (users/... or services/...).")]
Action = Annotated[str, typer.Option(help="Events with this action, e.g. gifts.SendGift.")]
Resource = Annotated[str, typer.Option(help="Events on this resource; a trailing / selects everything under it.")]
OutcomeOption = Annotated[Outcome | None, typer.Option(help="Events with this outcome.")]
Since = Annotated[dt.datetime | None, typer.Option(help="Events at or after this time (UTC unless given).")]
Until = Annotated[dt.datetime | None, typer.Option(help="Events before this time (UTC unless given).")]
Held = Annotated[list[Path] | None, typer.Option(help="Checkpoints held from before: a chain file or a signed note.")]


@contextmanager
def _audit_service(target: str) -> Iterator[audit_pb2_grpc.AuditServiceStub]:
    try:
        with Transport.from_environment().blocking_user_channel("compliance", target or config.target("compliance")) as channel:
            yield audit_pb2_grpc.AuditServiceStub(channel)
    except grpc.RpcError as error:
        if isinstance(error, grpc.Call):
            console.print(f"[red]{error.code().name}[/red]: {error.details()}")
        else:
            console.print(f"[red]call failed[/red]: {error}")
        raise typer.Exit(1) from error


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    if not token:
        raise typer.BadParameter("a compliance officer's token is needed (--token or LIMELIGHT_TOKEN)")
    return (("authorization", f"Bearer {token}"),)


def _utc(moment_: dt.datetime | None) -> dt.datetime | None:
    if moment_ is None:
        return None
    return moment_.replace(tzinfo=dt.UTC) if moment_.tzinfo is None else moment_


def _event_filter(subject: str, subject_ref: str, actor: str, action: str, resource: str,
                  outcome: Outcome | None, since: dt.datetime | None, until: dt.datetime | None) -> audit_pb2.EventFilter:
    event_filter = audit_pb2.EventFilter(subject=subject, subject_ref=subject_ref, actor=actor, action=action,
                                         resource=resource, outcome=outcome_to_proto(outcome) if outcome else audit_pb2.OUTCOME_UNSPECIFIED)
    if (start := _utc(since)) is not None:
        event_filter.start_time.CopyFrom(to_timestamp(start))
    if (end := _utc(until)) is not None:
        event_filter.end_time.CopyFrom(to_timestamp(end))
    return event_filter


@app.command()
def query(
    subject: Subject = "", subject_ref: SubjectRef = "", actor: Actor = "", action: Action = "",
    resource: Resource = "", outcome: OutcomeOption = None, since: Since = None, until: Until = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many events.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
    target: Target = "", token: Token = "",
) -> None:
    """Search the log, newest first. The query itself is logged."""
    request = audit_pb2.QueryEventsRequest(
        filter=_event_filter(subject, subject_ref, actor, action, resource, outcome, since, until),
        page_size=min(limit, 1000))
    logged: list[audit_pb2.LoggedEvent] = []
    with _audit_service(target) as audit:
        while len(logged) < limit:
            page = audit.QueryEvents(request, metadata=_bearer(token), timeout=30)
            logged += page.events
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    logged = logged[:limit]
    if as_json:
        for entry in logged:
            record = {"leaf_index": entry.leaf_index, "log_time": from_timestamp(entry.log_time, field="log_time").isoformat(),
                      **event_from_proto(entry.event).record()}
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    table = Table("leaf", "time (UTC)", "actor", "action", "resource", "outcome", "reason", "subject")
    for entry in logged:
        event = event_from_proto(entry.event)
        table.add_row(str(entry.leaf_index), event.event_time.strftime("%Y-%m-%d %H:%M:%S"), event.actor,
                      event.action, event.resource, event.outcome.value, event.reason,
                      event.subject_ref[:12] + ("…" if event.subject_ref else ""))
    console.print(table)
    console.print(f"{len(logged)} event(s)")


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="File to write (JSON Lines).")],
    subject: Subject = "", subject_ref: SubjectRef = "", actor: Actor = "", action: Action = "",
    resource: Resource = "", outcome: OutcomeOption = None, since: Since = None, until: Until = None,
    start_index: Annotated[int, typer.Option(min=0, help="First leaf to export.")] = 0,
    end_index: Annotated[int, typer.Option(min=0, help="Leaf to stop before; 0: the checkpoint's size.")] = 0,
    tree_size: Annotated[int, typer.Option(min=0, help="Checkpoint to prove against; 0: the latest.")] = 0,
    held: Held = None,
    target: Target = "", token: Token = "",
) -> None:
    """Export events with their proofs and checkpoint, for a regulator to verify offline."""
    request = audit_pb2.ExportEventsRequest(
        filter=_event_filter(subject, subject_ref, actor, action, resource, outcome, since, until),
        start_index=start_index, end_index=end_index, tree_size=tree_size)
    held_checkpoints = [Checkpoint.parse(_note_text(note)) for note in _held_notes(held)]
    with _audit_service(target) as audit, out.open("w", encoding="utf-8") as stream:
        parts = audit.ExportEvents(request, metadata=_bearer(token), timeout=600)
        header = next(parts).header
        size = header.checkpoint.tree_size
        proofs = {
            earlier.tree_size: list(audit.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(
                first_size=earlier.tree_size, second_size=size), timeout=30).hashes)
            for earlier in held_checkpoints if 0 < earlier.tree_size < size
        }
        unfiltered = request.filter == audit_pb2.EventFilter()
        written = write_export(
            stream,
            ExportHeader(header.checkpoint.signed_note, (start_index, end_index or size) if unfiltered else None,
                         proofs),
            (ExportLine(part.event.leaf_index,
                        None if part.event.record_missing else json.loads(part.event.leaf_data),
                        part.event.logged_leaf_hash, part.event.inclusion_proof) for part in parts),
        )
    console.print(f"wrote {written} event(s) proven against the checkpoint of size {size} to {out}")
    console.print(f"log verifier key: {header.verifier_key}")


@app.command()
def checkpoint(
    chain: Annotated[Path | None, typer.Option(help="Append the checkpoint, with a consistency proof, here.")] = None,
    target: Target = "",
) -> None:
    """Fetch the latest signed checkpoint; with --chain, add it to a chain of checkpoints."""
    with _audit_service(target) as audit:
        latest = audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(), timeout=30).checkpoint
        if chain is None:
            sys.stdout.write(latest.signed_note)
            return
        links = read_chain(chain.open(encoding="utf-8")) if chain.exists() else []
        proof: list[bytes] = []
        if links:
            previous = Checkpoint.parse(_note_text(links[-1].signed_checkpoint)).tree_size
            if 0 < previous < latest.tree_size:
                proof = list(audit.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(
                    first_size=previous, second_size=latest.tree_size), timeout=30).hashes)
    with chain.open("a", encoding="utf-8") as stream:
        if not links:
            start_chain(stream)
        append_chain_link(stream, ChainLink(latest.signed_note, tuple(proof)))
    console.print(f"added the checkpoint of size {latest.tree_size} to {chain} ({len(links) + 1} in the chain)")


@app.command()
def key(target: Target = "") -> None:
    """Print the log's signed-note verifier key (pin it; give it to regulators)."""
    with _audit_service(target) as audit:
        sys.stdout.write(audit.GetPublicKey(audit_pb2.GetPublicKeyRequest(), timeout=30).verifier_key + "\n")


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="An export or a checkpoint chain.", exists=True, dir_okay=False)],
    verifier_key: Annotated[str, typer.Option("--key", envvar="LIMELIGHT_AUDIT_KEY",
                                              help="The log's verifier key: <origin>+<key id>+<base64 key>.")],
    held: Held = None,
    require_complete: Annotated[bool, typer.Option(
        "--require-complete", help="Fail unless the export holds every leaf of its checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """Check an export or a checkpoint chain offline, and name every event that is wrong."""
    try:
        verifier = NoteVerifier.from_key_string(verifier_key)
        with file.open(encoding="utf-8") as stream:
            is_chain = format_of(stream) == CHAIN_FORMAT
            if is_chain:
                report = verify_checkpoint_chain(read_chain(stream), [verifier])
            else:
                report = verify_export(read_export(stream), [verifier], held_checkpoints=_held_notes(held))
    except (MalformedEvidence, NoteError) as error:
        if as_json:
            sys.stdout.write(json.dumps({"verified": False, "error": str(error)}) + "\n")
        else:
            console.print(f"[red]cannot verify[/red]: {error}")
        raise typer.Exit(2) from error
    incomplete = require_complete and not is_chain and not report.proven_complete
    if as_json:
        sys.stdout.write(json.dumps(_report_record(report, is_chain)) + "\n")
    else:
        _print_report(report, is_chain, require_complete)
    if not report.ok or incomplete:
        raise typer.Exit(1)


def _report_record(report: VerificationReport, is_chain: bool) -> dict[str, object]:
    checkpoint = report.checkpoint
    return {
        "verified": report.ok,
        "kind": "checkpoint_chain" if is_chain else "export",
        "checkpoint": None if checkpoint is None else {
            "origin": checkpoint.origin, "tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash.hex()},
        "intact": report.intact_entries,
        "complete": None if is_chain else report.proven_complete,
        "absent_leaves": [list(run) for run in report.absent_ranges],
        "findings": [{"kind": finding.kind.value, "leaf_index": finding.leaf_index, "event_id": finding.label,
                      "detail": finding.detail} for finding in report.findings],
    }


def _print_report(report: VerificationReport, is_chain: bool, require_complete: bool) -> None:
    # Plain lines, never a table: a table squeezes or cuts event ids in a narrow terminal.
    if report.checkpoint is not None:
        console.print(f"checkpoint: {report.checkpoint.origin}, size {report.checkpoint.tree_size}, "
                      f"root {report.checkpoint.root_hash.hex()}", soft_wrap=True)
    what = "checkpoint(s)" if is_chain else "event(s) intact"
    for finding in report.findings:
        where = "" if finding.leaf_index is None else f" leaf {finding.leaf_index}"
        event = f" event {finding.label}" if finding.label else ""
        console.print(f"[red]{finding.kind.value}[/red]{where}{event}: {finding.detail}", soft_wrap=True,
                      highlight=False)
    if report.findings:
        console.print(f"[red]FAILED[/red]: {len(report.findings)} finding(s); {report.intact_entries} {what}")
    else:
        console.print(f"[green]VERIFIED[/green]: {report.intact_entries} {what}")
    if is_chain or report.checkpoint is None:
        return
    if report.proven_complete:
        console.print(f"complete: all {report.checkpoint.tree_size} leaves of the checkpoint, rebuilding its signed root")
        return
    absent = ", ".join(f"{start}" if end == start + 1 else f"{start}-{end - 1}" for start, end in report.absent_ranges)
    label = "[red]INCOMPLETE[/red]" if require_complete else "partial"
    console.print(f"{label}: leaves {absent} of the checkpoint's {report.checkpoint.tree_size} are not in this "
                  "export, so it cannot prove that no event was removed from them", soft_wrap=True)


def _note_text(signed_note: str) -> str:
    """The body of a signed note, unverified: enough to learn a held checkpoint's size."""
    return signed_note[: signed_note.rfind("\n\n") + 1]


def _held_notes(paths: list[Path] | None) -> list[str]:
    """Signed checkpoints from files that hold one signed note or a checkpoint chain."""
    notes: list[str] = []
    for path in paths or []:
        text = path.read_text(encoding="utf-8")
        if text.startswith("{"):
            notes += [link.signed_checkpoint for link in read_chain(io.StringIO(text))]
        else:
            notes.append(text)
    return notes
