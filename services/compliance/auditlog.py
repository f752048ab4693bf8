"""The audit log: sequencing events into the Merkle tree, signing checkpoints, proofs, queries, exports.

Use cases over a narrow store protocol (satisfied by `store.py`); no SQL, no gRPC.

Invariants, and where each is kept:
- Leaves are numbered without gaps, in commit order: each write transaction reads the
  tree size and right border from the store itself, so a restarted (or second)
  process continues the same tree instead of forking it.
- An event id is logged once (AIP-155): a retry returns the first leaf; the same id
  with other content is refused, never logged twice. The store's UNIQUE constraint
  backs this up.
- A checkpoint is signed only after a consistency proof from the previous checkpoint,
  built from stored nodes, verifies (C2SP: never sign two inconsistent checkpoints),
  and the store only accepts checkpoints whose size grows.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple, dataclass, field
from typing import Protocol

from libs.audit.events import AuditEvent, Outcome
from libs.clock import Clock
from libs.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from libs.tlog.checkpoint import Checkpoint, open_checkpoint
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteError, NoteSigner, NoteVerifier
from libs.tlog.proofs import ProofError, verify_consistency
from services.compliance import merkle
from services.compliance.merkle import NodeId

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
EXPORT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class SequencedEvent:
    leaf_index: int
    event: AuditEvent
    logged_at: dt.datetime
    """When the log made it durable (the commit's time)."""


@dataclass(frozen=True)
class Appended:
    event_id: str
    leaf_index: int
    newly_appended: bool
    """False when the event id was already logged (a retry)."""


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    signed_note: str
    published_at: dt.datetime


@dataclass(frozen=True)
class EventFilter:
    """Each field that is set must match; the event time range is [start_time, end_time).

    `resource` matches exactly, or as a prefix when it ends with `/`
    (`creators/ada/` selects everything under that creator).
    """

    subject_ref: str = ""
    actor: str = ""
    action: str = ""
    resource: str = ""
    outcome: Outcome | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None

    @property
    def is_empty(self) -> bool:
        return self == EventFilter()

    def fingerprint(self) -> str:
        """Ties a page token to the filter it was issued for."""
        return hashlib.sha256(repr(astuple(self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EventPage:
    events: list[SequencedEvent]
    next_page_token: str


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    hashes: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    first_size: int
    second_size: int
    hashes: list[bytes]


@dataclass(frozen=True)
class ExportedRecord:
    leaf_index: int
    logged: SequencedEvent | None
    """None when the tree has a leaf here but the store has lost its record."""
    logged_leaf_hash: bytes
    inclusion_proof: list[bytes]


@dataclass(frozen=True)
class AuditExport:
    checkpoint: StoredCheckpoint
    complete_range: tuple[int, int] | None
    """[start, end) for an unfiltered export, which then holds every leaf in that range."""
    records: Iterator[ExportedRecord] = field(repr=False)


class TreeReader(Protocol):
    """A read snapshot of the log."""

    def tree_size(self) -> int: ...
    def node_hashes(self, nodes: Collection[NodeId]) -> dict[NodeId, bytes]: ...
    def latest_checkpoint(self) -> StoredCheckpoint | None: ...
    def checkpoint_at(self, tree_size: int) -> StoredCheckpoint | None: ...
    def leaf_index_of(self, event_id: str) -> int | None: ...
    def events_newest_first(self, event_filter: EventFilter, *, before_leaf: int, limit: int) -> list[SequencedEvent]: ...
    def events_oldest_first(self, event_filter: EventFilter, *, after_leaf: int, below_leaf: int, limit: int) -> list[SequencedEvent]: ...
    def leaves_without_records(self, start: int, end: int) -> list[int]: ...


class LogWriter(TreeReader, Protocol):
    """One write transaction: everything in it commits together or not at all."""

    def logged_hashes(self, event_ids: Collection[str]) -> dict[str, tuple[int, bytes]]: ...
    def add_events(self, events: Sequence[SequencedEvent], nodes: Sequence[tuple[NodeId, bytes]]) -> None: ...
    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...


class AuditStore(Protocol):
    def reading(self) -> AbstractContextManager[TreeReader]: ...
    def writing(self) -> AbstractContextManager[LogWriter]: ...


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        signer: NoteSigner,
        *,
        clock: Clock,
        checkpoint_interval: dt.timedelta = dt.timedelta(milliseconds=500),
    ) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._checkpoint_interval = checkpoint_interval
        self._last_checkpoint_attempt: dt.datetime | None = None

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def verifier(self) -> NoteVerifier:
        return self._signer.verifier

    # -- writing --------------------------------------------------------------

    def append(self, batches: Sequence[Sequence[AuditEvent]]) -> list[list[Appended] | AlreadyExists]:
        """Log every batch in one transaction; a batch that reuses an event id for other content fails alone."""
        with self._store.writing() as log:
            size = log.tree_size()
            border = merkle.frontier(size)
            border_hashes = log.node_hashes(border)
            logged = log.logged_hashes({event.event_id for batch in batches for event in batch})
            outcomes: list[list[Appended] | AlreadyExists] = []
            new_events: list[AuditEvent] = []
            new_hashes: list[bytes] = []
            for batch in batches:
                hashes = [leaf_hash(event.canonical_bytes()) for event in batch]
                conflict = _reused_event_id(batch, hashes, logged)
                if conflict is not None:
                    outcomes.append(conflict)
                    continue
                appended: list[Appended] = []
                for event, hash_ in zip(batch, hashes, strict=True):
                    if event.event_id in logged:
                        appended.append(Appended(event.event_id, logged[event.event_id][0], False))
                        continue
                    index = size + len(new_events)
                    logged[event.event_id] = (index, hash_)
                    new_events.append(event)
                    new_hashes.append(hash_)
                    appended.append(Appended(event.event_id, index, True))
                outcomes.append(appended)
            if new_events:
                logged_at = self._clock()
                nodes = merkle.appended_nodes(size, [border_hashes[node] for node in border], new_hashes)
                log.add_events([SequencedEvent(size + offset, event, logged_at)
                                for offset, event in enumerate(new_events)], nodes)
        return outcomes

    def publish_checkpoint_if_due(self) -> StoredCheckpoint | None:
        """Sign the current tree if it grew and the last checkpoint is at least one interval old.

        The first call on an empty log signs the empty tree, so a checkpoint always exists.
        """
        now = self._clock()
        if self._last_checkpoint_attempt is not None and now - self._last_checkpoint_attempt < self._checkpoint_interval:
            return None
        self._last_checkpoint_attempt = now
        with self._store.writing() as log:
            latest = log.latest_checkpoint()
            size = log.tree_size()
            if latest is not None:
                self._check_signed_by_us(latest)
                if size == latest.tree_size or now - latest.published_at < self._checkpoint_interval:
                    return None
            border = merkle.frontier(size)
            plan = merkle.consistency_plan(latest.tree_size if latest else 0, size)
            hashes = log.node_hashes([*border, *plan.node_ids()])
            root = merkle.fold_right([hashes[node] for node in border])
            if latest is not None:
                try:
                    verify_consistency(latest.tree_size, size, latest.root_hash, root, plan.assemble(hashes))
                except ProofError as error:
                    raise FailedPrecondition(
                        f"the stored tree of size {size} does not extend checkpoint {latest.tree_size}; refusing to sign",
                        reason="AUDIT_LOG_INCONSISTENT",
                        metadata={"checkpoint_size": str(latest.tree_size), "tree_size": str(size)},
                    ) from error
            checkpoint = StoredCheckpoint(size, root, Checkpoint(self.origin, size, root).sign(self._signer), now)
            log.add_checkpoint(checkpoint)
        return checkpoint

    def _check_signed_by_us(self, checkpoint: StoredCheckpoint) -> None:
        try:
            open_checkpoint(checkpoint.signed_note, [self._signer.verifier])
        except NoteError as error:
            raise FailedPrecondition(
                "the log's checkpoints were signed by another key than the one loaded",
                reason="AUDIT_SIGNING_KEY_MISMATCH",
            ) from error

    # -- reading --------------------------------------------------------------

    def latest_checkpoint(self) -> StoredCheckpoint:
        with self._store.reading() as tree:
            checkpoint = tree.latest_checkpoint()
        if checkpoint is None:
            raise FailedPrecondition("the log has not published a checkpoint yet", reason="AUDIT_NO_CHECKPOINT")
        return checkpoint

    def checkpoint_at(self, tree_size: int) -> StoredCheckpoint | None:
        with self._store.reading() as tree:
            return tree.checkpoint_at(tree_size)

    def inclusion_proof(self, *, leaf_index: int | None = None, event_id: str = "", tree_size: int = 0) -> InclusionProof:
        """The proof for a leaf (by index, or by the event id logged there) at `tree_size`.

        `tree_size` 0 means the latest checkpoint's size.
        """
        with self._store.reading() as tree:
            size = _proof_tree_size(tree, tree_size, "tree_size")
            if event_id:
                found = tree.leaf_index_of(event_id)
                if found is None:
                    raise NotFound(f"no audit event {event_id}", resource_name=f"auditEvents/{event_id}",
                                   reason="AUDIT_EVENT_NOT_FOUND", metadata={"event_id": event_id})
                if found >= size:
                    raise FailedPrecondition(
                        f"event {event_id} is leaf {found}, not yet in the tree of size {size}",
                        reason="AUDIT_EVENT_NOT_YET_CHECKPOINTED",
                        metadata={"leaf_index": str(found), "tree_size": str(size)},
                    )
                leaf_index = found
            if leaf_index is None or not 0 <= leaf_index < size:
                raise InvalidArgument.for_field(
                    "leaf_index", f"must be below the tree size {size}", reason="LEAF_INDEX_BEYOND_TREE")
            plan = merkle.inclusion_plan(leaf_index, size)
            return InclusionProof(leaf_index, size, plan.assemble(tree.node_hashes(plan.node_ids())))

    def consistency_proof(self, *, first_size: int, second_size: int = 0) -> ConsistencyProof:
        """The proof that the tree at `second_size` (0: the latest checkpoint's) extends the one at `first_size`."""
        with self._store.reading() as tree:
            size = _proof_tree_size(tree, second_size, "second_size")
            if not 0 <= first_size <= size:
                raise InvalidArgument.for_field(
                    "first_size", f"must be between 0 and the second size {size}", reason="FIRST_SIZE_BEYOND_SECOND")
            plan = merkle.consistency_plan(first_size, size)
            return ConsistencyProof(first_size, size, plan.assemble(tree.node_hashes(plan.node_ids())))

    def query(self, event_filter: EventFilter, *, page_size: int = 0, page_token: str = "") -> EventPage:
        """Matching events, newest first, each with its leaf index (AIP-158 pagination)."""
        if page_size < 0:
            raise InvalidArgument.for_field("page_size", "must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before = _decode_page_token(page_token, event_filter)
        with self._store.reading() as tree:
            events = tree.events_newest_first(event_filter, before_leaf=before, limit=limit + 1)
        next_token = _encode_page_token(events[limit - 1].leaf_index, event_filter) if len(events) > limit else ""
        return EventPage(events[:limit], next_token)

    def export(
        self, event_filter: EventFilter, *, start_index: int = 0, end_index: int = 0, tree_size: int = 0
    ) -> AuditExport:
        """Matching events of leaves [start_index, end_index) with what is needed to verify them offline.

        `tree_size` picks a published checkpoint (0: the latest) and `end_index` 0 means
        its size. Records are read page by page: leaves below a checkpoint's size never
        change, so the pages form one consistent export. Leaves whose record is gone are
        exported too (as `logged=None`), whatever the filter, so that their loss shows.
        """
        with self._store.reading() as tree:
            checkpoint = tree.checkpoint_at(tree_size) if tree_size else tree.latest_checkpoint()
            if checkpoint is None:
                raise InvalidArgument.for_field(
                    "tree_size", f"no checkpoint was published at size {tree_size}", reason="NO_CHECKPOINT_AT_SIZE")
            end = end_index or checkpoint.tree_size
            if end > checkpoint.tree_size:
                raise InvalidArgument.for_field(
                    "end_index", f"must not exceed the checkpoint's tree size {checkpoint.tree_size}",
                    reason="LEAF_INDEX_BEYOND_TREE")
            if not 0 <= start_index <= end:
                raise InvalidArgument.for_field("start_index", f"must not exceed the end of the range ({end})")
            missing = tree.leaves_without_records(start_index, end)
        complete_range = (start_index, end) if event_filter.is_empty else None
        records = self._exported_records(event_filter, start_index, end, checkpoint.tree_size, missing)
        return AuditExport(checkpoint, complete_range, records)

    def _exported_records(
        self, event_filter: EventFilter, start: int, end: int, tree_size: int, missing: list[int]
    ) -> Iterator[ExportedRecord]:
        cached: dict[NodeId, bytes] = {}
        after = start - 1
        while after < end - 1:
            with self._store.reading() as tree:
                page = tree.events_oldest_first(event_filter, after_leaf=after, below_leaf=end, limit=EXPORT_PAGE_SIZE)
                page_end = page[-1].leaf_index + 1 if len(page) == EXPORT_PAGE_SIZE else end
                rows: list[tuple[int, SequencedEvent | None]] = sorted(
                    [(row.leaf_index, row) for row in page] + [(index, None) for index in missing if after < index < page_end],
                    key=lambda row: row[0],
                )
                plans = {index: merkle.inclusion_plan(index, tree_size) for index, _ in rows}
                wanted = {NodeId(0, index) for index in plans} | {n for plan in plans.values() for n in plan.node_ids()}
                # Neighbouring leaves share most of their proof: keep the last page's nodes.
                cached = {node: cached[node] for node in wanted if node in cached}
                cached.update(tree.node_hashes(wanted - cached.keys()))
            for index, logged in rows:
                yield ExportedRecord(index, logged, cached[NodeId(0, index)], plans[index].assemble(cached))
            after = page_end - 1


def _reused_event_id(
    batch: Sequence[AuditEvent], hashes: Sequence[bytes], logged: dict[str, tuple[int, bytes]]
) -> AlreadyExists | None:
    seen: dict[str, bytes] = {}
    for event, hash_ in zip(batch, hashes, strict=True):
        earlier = seen.get(event.event_id) or (logged[event.event_id][1] if event.event_id in logged else None)
        if earlier is not None and earlier != hash_:
            return AlreadyExists(
                f"audit event {event.event_id} was already logged with other content",
                reason="AUDIT_EVENT_ID_REUSED",
                metadata={"event_id": event.event_id},
            )
        seen[event.event_id] = hash_
    return None


def _proof_tree_size(tree: TreeReader, requested: int, field_name: str) -> int:
    if requested < 0:
        raise InvalidArgument.for_field(field_name, "must not be negative")
    if requested == 0:
        latest = tree.latest_checkpoint()
        if latest is None or latest.tree_size == 0:
            raise FailedPrecondition("the log has no signed entries yet", reason="AUDIT_NO_CHECKPOINT")
        return latest.tree_size
    current = tree.tree_size()
    if requested > current:
        raise InvalidArgument.for_field(
            field_name, f"{requested} exceeds the log's size {current}", reason="TREE_SIZE_BEYOND_LOG")
    return requested


def _encode_page_token(last_leaf: int, event_filter: EventFilter) -> str:
    payload = json.dumps({"before": last_leaf, "filter": event_filter.fingerprint()}).encode()
    return base64.urlsafe_b64encode(payload).decode()


def _decode_page_token(token: str, event_filter: EventFilter) -> int:
    """The leaf index the next page starts below; a token only works with the filter it came from."""
    if not token:
        return 1 << merkle.LEVEL_SHIFT
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        before, fingerprint = int(payload["before"]), str(payload["filter"])
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument.for_field("page_token", "is not a token this service issued") from error
    if fingerprint != event_filter.fingerprint():
        raise InvalidArgument.for_field("page_token", "was issued for a different filter")
    return before
