"""The files an officer hands to a regulator, which `limelight audit verify` checks offline.

Both are JSON Lines whose first line names the format.

An export (`limelight-audit-export/v1`):

    {"format": ..., "checkpoint": <signed note>, "complete_range": [start, end] or null,
     "consistency_proofs": {"<held size>": [<base64 hash>, ...]}}
    {"leaf_index": n, "event": <the event's canonical JSON object, or null>,
     "logged_leaf_hash": <base64>, "inclusion_proof": [<base64>, ...]}
    ...

Events are kept as their canonical objects, readable as they are; the verifier
recomputes each leaf from the object it finds, so an edit anywhere in an event shows.
`null` marks a leaf whose record the log no longer has. `complete_range` is set for an
unfiltered export, which then holds every leaf of that range; `consistency_proofs` join
checkpoints the recipient held before to the export's checkpoint.

A checkpoint chain (`limelight-audit-checkpoints/v1`): checkpoints collected over time,
each with the consistency proof from the one before it:

    {"format": ...}
    {"checkpoint": <signed note>, "proof_from_previous": [<base64 hash>, ...]}
    ...
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from libs.audit.events import canonical_json
from libs.tlog.export import ChainLink, ExportBundle, ExportedLeaf

EXPORT_FORMAT = "limelight-audit-export/v1"
CHAIN_FORMAT = "limelight-audit-checkpoints/v1"


class MalformedEvidence(ValueError):
    pass


@dataclass(frozen=True)
class ExportHeader:
    signed_checkpoint: str
    complete_range: tuple[int, int] | None
    consistency_proofs: Mapping[int, Sequence[bytes]]


@dataclass(frozen=True)
class ExportLine:
    leaf_index: int
    record: Mapping[str, object] | None
    logged_leaf_hash: bytes
    inclusion_proof: Sequence[bytes]


def _b64(values: Iterable[bytes]) -> list[str]:
    return [base64.b64encode(value).decode() for value in values]


def _hashes(values: Iterable[str]) -> tuple[bytes, ...]:
    return tuple(base64.b64decode(value, validate=True) for value in values)


def format_of(stream: TextIO) -> str:
    """The format named on the first line; the stream is left at the start."""
    position = stream.tell()
    try:
        return str(json.loads(stream.readline()).get("format", ""))
    except (ValueError, AttributeError) as error:
        raise MalformedEvidence("the first line is not a JSON object naming a format") from error
    finally:
        stream.seek(position)


def write_export(stream: TextIO, header: ExportHeader, lines: Iterable[ExportLine]) -> int:
    """Write the export; returns how many leaf lines were written."""
    stream.write(json.dumps({
        "format": EXPORT_FORMAT,
        "checkpoint": header.signed_checkpoint,
        "complete_range": list(header.complete_range) if header.complete_range else None,
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
        if header.get("format") != EXPORT_FORMAT:
            raise MalformedEvidence(f"not a {EXPORT_FORMAT} file")
        span = header["complete_range"]
        return ExportBundle(
            signed_checkpoint=str(header["checkpoint"]),
            leaves=[_leaf(json.loads(line)) for line in stream if line.strip()],
            consistency_proofs={int(size): _hashes(proof) for size, proof in header["consistency_proofs"].items()},
            complete_range=(int(span[0]), int(span[1])) if span else None,
        )
    except MalformedEvidence:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise MalformedEvidence(f"unreadable export: {error!r}") from error


def _leaf(line: dict[str, Any]) -> ExportedLeaf:
    record = line["event"]
    if record is not None and not isinstance(record, dict):
        raise MalformedEvidence("an event must be a JSON object or null")
    return ExportedLeaf(
        leaf_index=int(line["leaf_index"]),
        label=str(record.get("event_id", "")) if record is not None else "",
        leaf_data=canonical_json(record) if record is not None else None,
        logged_leaf_hash=base64.b64decode(str(line["logged_leaf_hash"]), validate=True),
        inclusion_proof=_hashes(line["inclusion_proof"]),
    )


def start_chain(stream: TextIO) -> None:
    stream.write(json.dumps({"format": CHAIN_FORMAT}) + "\n")


def append_chain_link(stream: TextIO, link: ChainLink) -> None:
    stream.write(json.dumps({"checkpoint": link.signed_checkpoint,
                             "proof_from_previous": _b64(link.proof_from_previous)}) + "\n")


def read_chain(stream: TextIO) -> list[ChainLink]:
    try:
        if json.loads(stream.readline()).get("format") != CHAIN_FORMAT:
            raise MalformedEvidence(f"not a {CHAIN_FORMAT} file")
        links = []
        for text in stream:
            if text.strip():
                line = json.loads(text)
                links.append(ChainLink(str(line["checkpoint"]), _hashes(line["proof_from_previous"])))
        return links
    except MalformedEvidence:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise MalformedEvidence(f"unreadable checkpoint chain: {error!r}") from error
