"""Where the gifts use cases run: the one `LedgerRunner` protocol, and its two runners.

Every command reaches `usecases.execute` the same way: as a unit of the store's group
commit, stamped with its caller's trace and clock, its refusal audited in the same batch
(`usecases.unit_of_work`). What differs is only where the committer lives:

- `InProcessRunner`: the committer thread of this process. Tests and tools use it, and
  the service with `LIMELIGHT_GIFTS_LEDGER=in-process`.
- `LedgerProcess` (`ledger_process.py`, which says why it exists): a child process with
  an interpreter of its own, the service's default.

`build_runner` is the one place either is built.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol, TypeVar

from libs.storage.committer import DEFAULT_MAX_BATCH
from services.gifts.config import GiftsConfig
from services.gifts.ledger_process import LedgerProcess
from services.gifts.model.audit import NO_TRACE, Trace
from services.gifts.model.payments import PaymentProvider
from services.gifts.providers import deployment_events, deployment_payments
from services.gifts.store.writer import GiftsStore
from services.gifts.usecases import unit_of_work
from services.gifts.usecases.commands import Command
from services.gifts.usecases.context import LedgerSetup

R = TypeVar("R")


class LedgerRunner(Protocol):
    """Runs a command durably, with its caller's trace and clock; answers after the commit."""

    async def start(self) -> None: ...

    async def run(self, command: Command[R], *, trace: Trace, now: dt.datetime) -> R: ...

    async def stop(self) -> None: ...


class InProcessRunner:
    """The use cases on this process's own group committer."""

    def __init__(self, store: GiftsStore, setup: LedgerSetup) -> None:
        self.store = store
        self._setup = setup

    @classmethod
    def open(cls, root: Path, config: GiftsConfig, *, payments: Mapping[str, PaymentProvider],
             synchronous: str = "FULL", max_batch: int = DEFAULT_MAX_BATCH) -> InProcessRunner:
        store = GiftsStore(events=deployment_events(root), root=root, synchronous=synchronous, max_batch=max_batch)
        return cls(store, LedgerSetup(config, payments))

    def submit(self, command: Command[R], *, now: dt.datetime, trace: Trace = NO_TRACE) -> Future[R]:
        """`run` for callers without an event loop (tests, tools): the future resolves after the COMMIT."""
        work, refused = unit_of_work(self._setup.at(now), command)
        return self.store.submit(work, on_refused=refused, trace=trace)

    async def start(self) -> None:
        pass  # opened by `open`

    async def run(self, command: Command[R], *, trace: Trace, now: dt.datetime) -> R:
        work, refused = unit_of_work(self._setup.at(now), command)
        return await self.store.run(work, on_refused=refused, trace=trace)

    async def stop(self) -> None:
        await asyncio.to_thread(self.store.close)


def build_runner(root: Path, config: GiftsConfig, *, in_process: bool,
                 on_lives_touched: Callable[[frozenset[str]], None], on_commit: Callable[[], None]) -> LedgerRunner:
    """The service's runner: the ledger process, or (`in_process`) this process's committer.

    `on_lives_touched(live_ids)` hears of LIVEs that got gifts or ended, `on_commit()` of every
    commit (both from another thread)."""
    if in_process:
        runner = InProcessRunner.open(root, config, payments=deployment_payments(root))
        runner.store.add_live_listener(on_lives_touched)
        runner.store.add_commit_listener(on_commit)
        return runner
    return LedgerProcess(root, config, on_lives_touched=on_lives_touched, on_commit=on_commit)

