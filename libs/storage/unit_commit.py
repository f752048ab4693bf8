"""Moved to `libs.storage.committer` (class `GroupCommitter`); this alias goes once gifts imports it."""

from libs.storage.committer import DEFAULT_MAX_BATCH, RefusalRecorder, UnitOfWork
from libs.storage.committer import GroupCommitter as UnitCommitter

__all__ = ["DEFAULT_MAX_BATCH", "RefusalRecorder", "UnitCommitter", "UnitOfWork"]
