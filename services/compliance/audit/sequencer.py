"""The audit log's writer: every pending AppendEvents batch goes into one fsync'd transaction.

Built on `libs.storage.group_commit`: a batch's caller is acknowledged only after the
transaction holding it committed. The same thread signs checkpoints, after commits and
when idle, so a new event is under a signed checkpoint within about one checkpoint
interval, and no two threads ever race to sign.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from libs.audit.events import AuditEvent
from libs.storage.group_commit import GroupCommitter
from services.compliance.audit.model import Appended
from services.compliance.audit.usecases import AuditLog

Sequencer = GroupCommitter[Sequence[AuditEvent], list[Appended]]


def start_sequencer(
    log: AuditLog, *, before_checkpoint: Callable[[], object] | None = None, idle_seconds: float = 0.1
) -> Sequencer:
    """Sign the log as found (the first checkpoint of a new log), then start the writer thread.

    `before_checkpoint` runs on the writer thread before each checkpoint attempt (logging
    counted refusals), so what it appends is signed with the same checkpoint.
    """
    log.publish_checkpoint_if_due()

    def tick() -> None:
        try:
            if before_checkpoint is not None:
                before_checkpoint()
        finally:
            log.publish_checkpoint_if_due()

    sequencer: Sequencer = GroupCommitter(log.append, name="audit-sequencer", size_of=len, tick=tick,
                                          idle_seconds=idle_seconds)
    sequencer.start()
    return sequencer
