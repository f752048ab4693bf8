"""Where the gifts use cases run: the one `LedgerRunner` protocol, and its two runners.

Every command reaches `usecases.execute` the same way: as a unit of the store's group
commit, stamped with its caller's trace and clock, its refusal audited in the same batch
(`usecases.unit_of_work`). What differs is only where the committer lives:

- `InProcessRunner`: the committer thread of this process. Tests and tools use it, and
  the service with `LIMELIGHT_GIFTS_LEDGER=in-process`.
- `LedgerProcess` (`ledger_process.py`, which says why it exists): a child process with
  an interpreter of its own, the service's default, run by `SupervisedLedger`, which
  restarts it when it dies and reports the service's health meanwhile.

`build_runner` is the one place either is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol, TypeVar

from libs.storage.committer import DEFAULT_MAX_BATCH
from services.gifts.config import GiftsConfig
from services.gifts.ledger_process import LedgerProcess
from services.gifts.model.audit import NO_TRACE, Trace
from services.gifts.model.payments import PaymentProvider
from services.gifts.providers import deployment_events, deployment_payments, deployment_transaction_ids
from services.gifts.store.writer import GiftsStore
from services.gifts.usecases import unit_of_work
from services.gifts.usecases.commands import Command
from services.gifts.usecases.context import LedgerSetup

log = logging.getLogger(__name__)

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
        return cls(store, LedgerSetup(config, payments, deployment_transaction_ids(root)))

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


class SupervisedLedger:
    """The ledger process, restarted whenever it dies, without an operator.

    While no child runs, calls fail UNAVAILABLE `LEDGER_PROCESS_GONE` (the dead one's answer)
    and `on_health(False)` has told the health service NOT_SERVING; a new child opens the
    database (SQLite recovers the last commit from the WAL: a unit is durable or absent), and
    `on_health(True)` reports SERVING again. Work the dead child had not answered is not
    replayed here: its callers heard UNAVAILABLE and retry with their request ids, which
    the store answers with the first result if it committed. A child that fails to start is
    tried again after a delay that doubles up to `MAX_RESTART_DELAY_SECONDS`.
    """

    MAX_RESTART_DELAY_SECONDS = 30.0

    def __init__(self, new_process: Callable[[], LedgerProcess], *, restart_delay: dt.timedelta,
                 on_health: Callable[[bool], Awaitable[None]]) -> None:
        self._new_process = new_process
        self._restart_delay = restart_delay.total_seconds()
        self._on_health = on_health
        self._current: LedgerProcess | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def process(self) -> LedgerProcess:
        assert self._current is not None, "the ledger has not started"
        return self._current

    async def start(self) -> None:
        self._current = self._new_process()
        await self._current.start()
        self._supervisor = asyncio.create_task(self._supervise(), name="gifts-ledger-supervisor")

    async def run(self, command: Command[R], *, trace: Trace, now: dt.datetime) -> R:
        return await self.process.run(command, trace=trace, now=now)

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._current is not None:
            await self._current.stop()

    async def _supervise(self) -> None:
        while True:
            dead = self.process
            cause = await dead.gone()
            log.critical("the ledger process is gone (%r); restarting it", cause)
            await self._on_health(False)
            await dead.stop()  # reaps the child and the pipe threads
            self._current = await self._restarted()
            log.warning("the ledger process is back")
            await self._on_health(True)

    async def _restarted(self) -> LedgerProcess:
        delay = self._restart_delay
        while True:
            await asyncio.sleep(delay)  # a crash loop must not spin
            replacement = self._new_process()
            try:
                await replacement.start()
                return replacement
            except Exception:
                log.exception("the ledger process did not start; trying again in %.1f s", delay)
                await replacement.stop()
                delay = min(2 * delay, self.MAX_RESTART_DELAY_SECONDS)


async def _no_health_report(serving: bool) -> None:
    pass


def build_runner(root: Path, config: GiftsConfig, *, in_process: bool,
                 on_lives_touched: Callable[[frozenset[str]], None], on_commit: Callable[[], None],
                 on_health: Callable[[bool], Awaitable[None]] = _no_health_report) -> LedgerRunner:
    """The service's runner: the supervised ledger process, or (`in_process`) this process's
    committer.

    `on_lives_touched(live_ids)` hears of LIVEs that got gifts or ended, `on_commit()` of every
    commit (both from another thread), `on_health(serving)` (on the event loop) of the ledger
    process going and coming back."""
    if in_process:
        runner = InProcessRunner.open(root, config, payments=deployment_payments(root))
        runner.store.add_live_listener(on_lives_touched)
        runner.store.add_commit_listener(on_commit)
        return runner
    return SupervisedLedger(
        lambda: LedgerProcess(root, config, on_lives_touched=on_lives_touched, on_commit=on_commit),
        restart_delay=config.ledger_restart_delay, on_health=on_health)

