"""The export file handed to a regulator: JSON Lines that `limelight audit verify` checks offline.

    line 1   {"format": "limelight-audit-export/v1", "checkpoint": <signed note>,
              "complete": <bool>, "consistency_proofs": {"<held size>": [<base64 hash>, ...]}}
    then     {"leaf_index": n, "event": <the event's canonical JSON object, or null>,
              "logged_leaf_hash": <base64>, "inclusion_proof": [<base64>, ...]}

Events are kept as their canonical objects, readable as they are; the verifier
recomputes each leaf from the object it finds, so an edit anywhere in an event shows.
`null` marks a leaf whose record the log no longer has.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from libs.audit.events import canonical_json
from libs.tlog.export import ExportBundle, ExportedLeaf

FORMAT = "limelight-audit-export/v1"


class MalformedExport(ValueError):
    pass


@dataclass(frozen=True)
class ExportHeader:
    signed_checkpoint: str
    complete: bool
    consistency_proofs: Mapping[int, Sequence[bytes]]


@dataclass(frozen=True)
class ExportLine:
    leaf_index: int
    record: Mapping[str, object] | None
    logged_leaf_hash: bytes
    inclusion_proof: Sequence[bytes]


def _b64(values: Iterable[bytes]) -> list[str]:
    return [base64.b64encode(value).decode() for value in values]


def write_export(stream: TextIO, header: ExportHeader, lines: Iterable[ExportLine]) -> int:
    """Write the export; returns how many leaf lines were written."""
    stream.write(json.dumps({
        "format": FORMAT,
        "checkpoint": header.signed_checkpoint,
        "complete": header.complete,
        "consistency_proofs": {str(size): _b64(proof) for size, proof in header.consistency_proofs.items()},
    }) + "\n")
    written = 0
    for line in lines:
        stream.write(json.dumps({
            "leaf_index": line.leaf_index,
            "event": line.record,
            "logged_leaf_hash": base64.b64encode(line.logged_leaf_hash).decode(),
            "inclusion_proof": _b64(line.inclusion_proof),
        }, ensure_ascii=False) + "\n")
        written += 1
    return written


def read_export(stream: TextIO) -> ExportBundle:
    try:
        header = json.loads(stream.readline())
        if header.get("format") != FORMAT:
            raise MalformedExport(f"not a {FORMAT} file")
        leaves = [_leaf(json.loads(line)) for line in stream if line.strip()]
        return ExportBundle(
            signed_checkpoint=str(header["checkpoint"]),
            leaves=leaves,
            consistency_proofs={int(size): [base64.b64decode(h, validate=True) for h in proof]
                                for size, proof in header["consistency_proofs"].items()},
            complete=bool(header["complete"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        if isinstance(error, MalformedExport):
            raise
        raise MalformedExport(f"unreadable export: {error}") from error


def _leaf(line: dict[str, Any]) -> ExportedLeaf:
    record = line["event"]
    if record is not None and not isinstance(record, dict):
        raise MalformedExport("an event must be a JSON object or null")
    return ExportedLeaf(
        leaf_index=int(line["leaf_index"]),
        label=str(record.get("event_id", "")) if record is not None else "",
        leaf_data=canonical_json(record) if record is not None else None,
        logged_leaf_hash=base64.b64decode(str(line["logged_leaf_hash"]), validate=True),
        inclusion_proof=tuple(base64.b64decode(h, validate=True) for h in line["inclusion_proof"]),
    )
