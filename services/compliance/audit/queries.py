"""The audit log's read-only use cases: checkpoints, inclusion and consistency proofs, queries, exports.

Each runs on a read snapshot of the store (`TreeReader`, declared in `usecases.py`), so
it never waits for the writer's fsync and never changes the log.
"""

from __future__ import annotations

from collections.abc import Iterator

from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.pagination import PageTokens
from libs.pagination import page_size as page_size_for
from services.compliance.audit import merkle
from services.compliance.audit.merkle import NodeId
from services.compliance.audit.model import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AuditExport,
    ConsistencyProof,
    EventFilter,
    EventPage,
    ExportedRecord,
    InclusionProof,
    SequencedEvent,
    StoredCheckpoint,
)
from services.compliance.audit.usecases import AuditStore, TreeReader

EXPORT_PAGE_SIZE = 1000
QUERY_PAGES = PageTokens("compliance.QueryEvents")
"""Tokens hold the leaf the next page starts below, bound to the filter they were issued for."""


class AuditQueries:
    def __init__(self, store: AuditStore) -> None:
        self._store = store

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
        limit = page_size_for(page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        bound_to = event_filter.fingerprint()
        before = QUERY_PAGES.decode_int(page_token, bound_to=bound_to)
        with self._store.reading() as tree:
            events = tree.events_newest_first(
                event_filter, before_leaf=1 << merkle.LEVEL_SHIFT if before is None else before, limit=limit + 1)
        next_token = QUERY_PAGES.encode(events[limit - 1].leaf_index, bound_to=bound_to) if len(events) > limit else ""
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

