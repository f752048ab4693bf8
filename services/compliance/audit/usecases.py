"""The audit log's writing use cases: sequencing events into the Merkle tree and signing checkpoints.

Use cases over the narrow store protocol declared here (satisfied by `store.py`); no SQL,
no gRPC. The read-only use cases (proofs, queries, exports) are in `queries.py`.

Invariants, and where each is kept:
- Leaves are numbered without gaps, in commit order: each write transaction reads the
  tree size and right border from the store itself, inside the transaction (which
  excludes every other writer, in every replica), so a restarted process, or another
  replica that appended meanwhile, continues the same tree instead of forking it.
  Nothing about the tree is kept between transactions: what one transaction staged is
  bound to it, and a transaction that never committed leaves nothing behind.
- An event id is logged once (AIP-155): a retry returns the first leaf; the same id
  with other content is refused, never logged twice. The store's UNIQUE constraint
  backs this up.
- A checkpoint is signed only after a consistency proof from the previous checkpoint,
  built from stored nodes, verifies (C2SP: never sign two inconsistent checkpoints),
  and the store only accepts checkpoints whose size grows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from libs.audit.events import AuditEvent
from libs.clock import Clock
from libs.errors import AlreadyExists, FailedPrecondition
from libs.tlog.checkpoint import Checkpoint, open_checkpoint
from libs.tlog.hashing import leaf_hash
from libs.tlog.note import NoteError, NoteSigner, NoteVerifier
from libs.tlog.proofs import ProofError, verify_consistency
from services.compliance.audit import merkle
from services.compliance.audit.merkle import NodeId
from services.compliance.audit.model import (
    Appended,
    DenialCount,
    EventFilter,
    SequencedEvent,
    StoredCheckpoint,
    UnauthenticatedDenials,
    denial_count_event,
)


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

    @property
    def transaction(self) -> object:
        """The transaction itself: the same object for every writer of one transaction."""
        ...

    def logged_hashes(self, event_ids: Collection[str]) -> dict[str, tuple[int, bytes]]: ...
    def add_events(self, events: Sequence[SequencedEvent]) -> None: ...
    def add_nodes(self, nodes: Sequence[tuple[NodeId, bytes]]) -> None: ...
    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...


class Pseudonyms(Protocol):
    """How the log names a person or a peer without holding who they are (`libs.audit.pseudonyms`)."""

    def subject_ref(self, subject: str) -> str: ...


class AuditStore(Protocol):
    def reading(self) -> AbstractContextManager[TreeReader]: ...
    def writing(self) -> AbstractContextManager[LogWriter]: ...


@dataclass
class _StagedLeaves:
    """The leaves of the transaction being built: where they start, and what they hash to."""

    transaction: object
    base_size: int
    border_hashes: list[bytes]
    logged: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    leaf_hashes: list[bytes] = field(default_factory=list)

    @property
    def next_index(self) -> int:
        return self.base_size + len(self.leaf_hashes)


class AuditLog:
    """The log's writer: one instance per store, driven by one thread (the sequencer's).

    Appending is two steps inside one transaction: `stage` each batch (the units of a
    group commit), then `seal` the group (the committer's `finish_batch`), which writes
    the tree nodes of all the group's new leaves at once.
    """

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
        self._staged: _StagedLeaves | None = None

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def verifier(self) -> NoteVerifier:
        return self._signer.verifier

    def append(self, batches: Sequence[Sequence[AuditEvent]]) -> list[list[Appended] | AlreadyExists]:
        """Log every batch in one transaction of its own; a batch that reuses an event id for other content fails alone.

        For callers outside the sequencer (counted refusals on its thread, tools, tests);
        the store's write transaction excludes every other writer while it is open.
        """
        with self._store.writing() as log:
            outcomes: list[list[Appended] | AlreadyExists] = []
            for batch in batches:
                try:
                    outcomes.append(self.stage(log, batch))
                except AlreadyExists as conflict:
                    outcomes.append(conflict)
            self.seal(log)
        return outcomes

    def stage(self, log: LogWriter, events: Sequence[AuditEvent]) -> list[Appended]:
        """One batch of events, inside the group's open transaction: ids checked, leaves numbered, records written.

        Raises AlreadyExists, before writing anything, when the batch reuses a logged event
        id for other content. The tree nodes of everything staged follow in `seal`, once
        per transaction, so a group of batches is hashed together.
        """
        if self._staged is None or self._staged.transaction is not log.transaction:
            # The first batch of this transaction (what an earlier one staged died with it, if it
            # never reached `seal`): the tree as stored now, whoever appended last.
            size = log.tree_size()
            border = merkle.frontier(size)
            border_hashes = log.node_hashes(border)
            self._staged = _StagedLeaves(log.transaction, size, [border_hashes[node] for node in border])
        staged = self._staged
        ids = {event.event_id for event in events}
        known = {**log.logged_hashes(ids - staged.logged.keys()),
                 **{event_id: staged.logged[event_id] for event_id in ids & staged.logged.keys()}}
        hashes = [leaf_hash(event.canonical_bytes()) for event in events]
        conflict = _reused_event_id(events, hashes, known)
        if conflict is not None:
            raise conflict
        appended: list[Appended] = []
        new: list[SequencedEvent] = []
        new_hashes: list[bytes] = []
        logged_at = self._clock()
        for event, hash_ in zip(events, hashes, strict=True):
            if event.event_id in known:
                appended.append(Appended(event.event_id, known[event.event_id][0], False))
                continue
            index = staged.next_index + len(new)
            known[event.event_id] = (index, hash_)
            new.append(SequencedEvent(index, event, logged_at))
            new_hashes.append(hash_)
            appended.append(Appended(event.event_id, index, True))
        if new:
            log.add_events(new)
            # Counted only once written: a batch that failed on the way leaves no trace here.
            staged.logged.update({row.event.event_id: known[row.event.event_id] for row in new})
            staged.leaf_hashes += new_hashes
        return appended

    def seal(self, log: LogWriter) -> None:
        """Write the tree nodes that the leaves staged in this transaction complete; the caller then commits."""
        staged, self._staged = self._staged, None
        if staged is not None and staged.transaction is log.transaction and staged.leaf_hashes:
            log.add_nodes(merkle.appended_nodes(staged.base_size, staged.border_hashes, staged.leaf_hashes))

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


class CountedDenials:
    """Logs the refusals of tokenless calls that `UnauthenticatedDenials` counted, once their window closes.

    Runs on the log's writer thread (the sequencer's periodic work), so it appends in
    its own transaction between group commits. The peer is logged by its pseudonymous
    reference: an address is personal data, and the log keeps none.
    """

    def __init__(
        self, log: AuditLog, denials: UnauthenticatedDenials, pseudonymizer: Pseudonyms, *, clock: Clock,
        new_event_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._log = log
        self._denials = denials
        self._pseudonymizer = pseudonymizer
        self._clock = clock
        self._new_event_id = new_event_id

    def log_closed_windows(self) -> None:
        self._log_counts(self._denials.due(self._clock()))

    def log_every_window(self) -> None:
        """On the way down: nothing counted is dropped by a graceful stop."""
        self._log_counts(self._denials.drain())

    def _log_counts(self, counted: Sequence[DenialCount]) -> None:
        if counted:
            self._log.append([[denial_count_event(
                count, event_id=self._new_event_id(), peer_ref=self._pseudonymizer.subject_ref(f"peers/{count.peer}"))
                for count in counted]])
