"""The ledger process: the gifts use cases in a process of their own (the service's default runner).

A unit of work is mostly Python, and one Python process runs one thread of Python at a time.
Beside a busy gRPC event loop, a committer thread waits for the interpreter lock after every
SQLite call; under 64 calls in flight we measured 1.0 ms of wall time per SendGift unit for
0.43 ms of CPU, and COMMITs of ~8 ms that were mostly waiting to get the lock back. So the
service runs its ledger in a child process with an interpreter of its own (`LedgerProcess`):
the parent keeps the network, the reads and the clock; the child owns the database writer
and submits the same units (`usecases.unit_of_work`) to the same group commit (`GiftsStore`),
on its one thread. `runner.InProcessRunner` submits them to this process's committer instead.

Two pipes carry pickled messages:

    parent -> child   list[Order]                      the commands of one event-loop turn
    child  -> parent  (outcomes, touched LIVEs)        one message per successful commit

Orders stream in while earlier ones commit, so the child's group commit batches whatever has
arrived, as it does in process; an outcome is sent only after the COMMIT that made it
durable. The parent stamps each order with its clock, so the child decides with the parent's
notion of now (tests move it). Closing the orders pipe asks the child to finish.

If the child dies alone, every call waiting for it fails UNAVAILABLE `LEDGER_PROCESS_GONE`
(its unit committed or not; a retry with the same request id finds out from the store) and
`gone()` returns; `runner.SupervisedLedger` then reports NOT_SERVING and starts a new child,
which recovers the database from its WAL as after any crash.

If the parent dies, the child dies too (PR_SET_PDEATHSIG on Linux, and EOF on the pipe
everywhere): acknowledged work is durable, unacknowledged work committed or not, exactly as
when the whole service is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from libs import errors
from libs.errors import DomainError, FieldViolation, Unavailable
from services.gifts.config import GiftsConfig
from services.gifts.model.audit import Trace
from services.gifts.providers import deployment_events, deployment_payments, deployment_transaction_ids
from services.gifts.store.writer import GiftsStore
from services.gifts.usecases import unit_of_work
from services.gifts.usecases.commands import Command
from services.gifts.usecases.context import LedgerSetup

log = logging.getLogger(__name__)

R = TypeVar("R")

PR_SET_PDEATHSIG = 1
EXIT_STORE_STOPPED = 70
GATHER_AT_LEAST = 16
GATHER_WAIT_SECONDS = 0.001


@dataclass(frozen=True)
class Order:
    ticket: int
    command: Command[Any]
    trace: Trace
    now: dt.datetime  # the parent's clock when the call arrived


# (ticket, ok, value or encoded error) for each unit of one commit, and the LIVEs it touched
Answer = tuple[list[tuple[int, bool, Any]], frozenset[str]]


class LedgerProcess:
    """The parent's side: streams orders to the ledger process and hands back the outcomes.

    Orders leave once per event-loop turn and answers come back once per commit, each over
    its own pipe, so neither side ever waits for the other's round trip: the child's group
    commit batches whatever has arrived, as it does in process. This end does its pipe I/O on
    the event loop itself, non-blocking (`_OrderPipe`, `_AnswerPipe`): a thread per pipe cost
    two thread switches and an interpreter-lock hand-over per batch (about a third of the
    frontend's py-spy samples).
    """

    def __init__(self, root: Path, config: GiftsConfig, *,
                 on_lives_touched: Callable[[frozenset[str]], None] = lambda lives: None,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self._root = root
        self._config = config
        self._on_lives_touched = on_lives_touched
        self._on_commit = on_commit
        self._tickets = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._outgoing: list[Order] = []
        self._failure: BaseException | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._orders: _OrderPipe | None = None
        self._answers: _AnswerPipe | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gone = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def gone(self) -> BaseException:
        """Wait until the child is gone (killed, crashed, its store stopped); why it ended."""
        await self._gone.wait()
        assert self._failure is not None
        return self._failure

    async def start(self) -> None:
        """Start the child and wait until it has opened (and migrated) the database."""
        context = multiprocessing.get_context("spawn")
        orders_out, orders_in = context.Pipe(duplex=False)  # (receiving end, sending end)
        answers_in, answers_out = context.Pipe(duplex=False)
        self._process = context.Process(target=serve_ledger, args=(orders_out, answers_out, str(self._root),
                                                                   self._config), name="gifts-ledger", daemon=True)
        await asyncio.to_thread(self._process.start)  # spawning writes the arguments to a pipe
        orders_out.close()
        answers_out.close()
        ready = await asyncio.to_thread(answers_in.recv)
        if ready != "ready":
            raise RuntimeError(f"the ledger process failed to start: {ready!r}")
        self._loop = asyncio.get_running_loop()
        self._orders = _OrderPipe(orders_in, self._loop)
        self._answers = _AnswerPipe(answers_in, self._loop, on_answer=self._deliver, on_end=self._fail)

    async def run(self, command: Command[R], *, trace: Trace, now: dt.datetime) -> R:
        if self._failure is not None:
            raise self._unavailable()
        assert self._loop is not None, "the ledger process has not started"
        ticket = next(self._tickets)
        future: asyncio.Future[R] = self._loop.create_future()
        self._waiting[ticket] = future
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(Order(ticket, command, trace, now))
        try:
            return await future
        finally:
            self._waiting.pop(ticket, None)

    async def stop(self) -> None:
        if self._orders is not None:
            # The child finishes what it has and closes its answers.
            await asyncio.to_thread(self._orders.finish, self._orders.stop_writing())
        if self._process is not None:
            await asyncio.to_thread(self._process.join, 30)
        if self._answers is not None:
            self._answers.drain()  # the child has exited: what it answered is all in the pipe

    def _flush(self) -> None:
        """Send what this loop turn ordered; an order whose caller gave up already stays home."""
        orders = [order for order in self._outgoing if not self._waiting[order.ticket].cancelled()]
        self._outgoing = []
        if orders and self._orders is not None:
            self._orders.send(orders)

    def _deliver(self, answer: Answer) -> None:
        outcomes, lives = answer
        self._on_commit()  # one answer per commit
        if lives:
            self._on_lives_touched(lives)
        for ticket, ok, value in outcomes:
            future = self._waiting.get(ticket)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(decode_error(value))

    def _fail(self, error: BaseException) -> None:
        if self._failure is not None:
            return
        self._failure = error
        self._gone.set()
        if self._waiting:
            log.critical("the ledger process is gone; the gifts service cannot write: %r", error)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(self._unavailable())

    def _unavailable(self) -> Unavailable:
        return Unavailable("the ledger process is gone; retry with the same request_id once the service is "
                           "SERVING again", reason="LEDGER_PROCESS_GONE",
                           metadata={"cause": repr(self._failure)})


# Both pipes carry `multiprocessing.connection` frames (a signed 4-byte big-endian length, or -1
# and an 8-byte one, then the pickle), so the child reads and writes them with a plain `Connection`.
_SHORT_FRAME = struct.Struct("!i")
_LONG_FRAME = struct.Struct("!Q")


def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > 0x7FFFFFFF:
        return _SHORT_FRAME.pack(-1) + _LONG_FRAME.pack(len(payload)) + payload
    return _SHORT_FRAME.pack(len(payload)) + payload


class _OrderPipe:
    """Orders to the child, written from the event loop without blocking it: what the pipe
    cannot take now waits in a buffer until the loop sees the pipe writable."""

    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._connection = connection  # owns the descriptor
        self._fd = connection.fileno()
        self._loop = loop
        self._unsent = bytearray()
        self._waiting_for_room = False
        self._broken = False
        os.set_blocking(self._fd, False)

    def send(self, orders: list[Order]) -> None:
        if self._broken:
            return  # the child is gone, or stopping: either way the answer pipe's end fails the callers
        self._unsent += _frame(orders)
        self._write()

    def _write(self) -> None:
        try:
            written = os.write(self._fd, self._unsent)
        except BlockingIOError:
            written = 0
        except OSError:  # the child is gone; the answer pipe reports it
            self._broken = True
            self._unsent.clear()
            written = 0
        del self._unsent[:written]
        if self._unsent and not self._waiting_for_room:
            self._loop.add_writer(self._fd, self._write)
            self._waiting_for_room = True
        elif not self._unsent and self._waiting_for_room:
            self._loop.remove_writer(self._fd)
            self._waiting_for_room = False

    def stop_writing(self) -> bytes:
        """Leave the loop; returns what is still unsent, for `finish`. Later orders stay home, as
        the descriptor is about to close (and its number to be reused)."""
        if self._waiting_for_room:
            self._loop.remove_writer(self._fd)
            self._waiting_for_room = False
        unsent, self._unsent = bytes(self._unsent), bytearray()
        broken, self._broken = self._broken, True
        return b"" if broken else unsent

    def finish(self, unsent: bytes) -> None:
        """Off the loop: write the rest, blocking, then close, which tells the child to finish."""
        if unsent:
            os.set_blocking(self._fd, True)
            with contextlib.suppress(OSError):
                rest = memoryview(unsent)
                while rest:
                    rest = rest[os.write(self._fd, rest):]
        self._connection.close()


class _AnswerPipe:
    """Answers from the child, read by the event loop whenever the pipe is readable; the end
    of the pipe (the child exited or was killed) calls `on_end`, after every answer before it."""

    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop, *,
                 on_answer: Callable[[Answer], None], on_end: Callable[[BaseException], None]) -> None:
        self._connection = connection
        self._fd = connection.fileno()
        self._loop = loop
        self._on_answer = on_answer
        self._on_end = on_end
        self._received = bytearray()
        self._open = True
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self.drain)

    def drain(self) -> None:
        """Hand on every complete answer the pipe holds now; at its end, report it and close."""
        while self._open:
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError as error:
                self._end(error)
                return
            if not chunk:
                self._end(EOFError("the ledger process closed its answers"))
                return
            self._received += chunk
            for answer in self._complete_answers():  # each its own callback, as a failing one stays alone
                self._loop.call_soon(self._on_answer, answer)

    def _complete_answers(self) -> list[Answer]:
        answers: list[Answer] = []
        offset = 0
        while True:
            start = offset + _SHORT_FRAME.size
            if len(self._received) < start:
                break
            (size,) = _SHORT_FRAME.unpack_from(self._received, offset)
            if size == -1:
                if len(self._received) < start + _LONG_FRAME.size:
                    break
                (size,) = _LONG_FRAME.unpack_from(self._received, start)
                start += _LONG_FRAME.size
            if len(self._received) < start + size:
                break
            answers.append(pickle.loads(self._received[start:start + size]))
            offset = start + size
        del self._received[:offset]
        return answers

    def _end(self, error: BaseException) -> None:
        self._open = False
        self._loop.remove_reader(self._fd)
        self._connection.close()
        self._loop.call_soon(self._on_end, error)  # after the answers that came before the end


# The child ---------------------------------------------------------------------------------------


class _Answers:
    """The child's outbox: outcomes of the units applied since the last commit, sent when that
    commit has succeeded (never before)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._outcomes: list[tuple[int, bool, Any]] = []
        self._lives: set[str] = set()

    def submit(self, store: GiftsStore, setup: LedgerSetup, order: Order) -> Future[Any]:
        """Submit the order's unit; its outcome joins the answers of the commit it lands in."""
        work, refused = unit_of_work(setup.at(order.now), order.command)

        def unit(uow: Any) -> Any:
            try:
                value = work(uow)
            except DomainError as error:
                self._outcomes.append((order.ticket, False, encode_error(error)))
                raise
            except Exception as error:  # a bug: the caller gets INTERNAL, the log the details
                log.exception("ledger command %s failed", type(order.command).__name__)
                self._outcomes.append((order.ticket, False, ("Internal", repr(error), "", {}, [], "")))
                raise
            self._outcomes.append((order.ticket, True, value))
            return value

        return store.submit(unit, on_refused=refused, trace=order.trace)

    def touched(self, lives: frozenset[str]) -> None:
        self._lives.update(lives)

    def send_after_commit(self) -> None:
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            lives, self._lives = frozenset(self._lives), set()
            self._connection.send((outcomes, lives))


def serve_ledger(orders: Connection, answers: Connection, root: str, config: GiftsConfig) -> None:
    """The ledger process: apply orders through group commit, answer each commit's outcomes."""
    _die_with_parent()
    # Its parent stops it, after the calls in flight drained (`stop`); a SIGTERM or Ctrl-C sent
    # to the whole process group (`limelight up` stopping) must not end it mid-drain.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # Committing is all this process does, so it commits on its main thread.
        store = GiftsStore(events=deployment_events(Path(root)), root=Path(root), threaded=False)
    except Exception as error:
        answers.send(f"cannot open the gifts database: {error!r}")
        raise
    setup = LedgerSetup(config, deployment_payments(Path(root)), deployment_transaction_ids(Path(root)))
    outbox = _Answers(answers)
    store.add_live_listener(outbox.touched)  # both run after each commit, before any answer
    store.add_commit_listener(outbox.send_after_commit)
    answers.send("ready")
    try:
        while True:
            try:
                batch = orders.recv()
                # What arrived while the last batch committed joins this one; a small batch waits
                # a moment for more, since every batch pays for an fsync (commit_delay in
                # PostgreSQL's terms).
                while orders.poll(0 if len(batch) >= GATHER_AT_LEAST else GATHER_WAIT_SECONDS):
                    batch += orders.recv()
            except EOFError:  # the parent is gone, or asked us to finish
                return
            for order in batch:
                outbox.submit(store, setup, order).add_done_callback(_exit_if_the_store_stopped)
            store.commit_queued()
    finally:
        store.close()


def _exit_if_the_store_stopped(future: Future[Any]) -> None:
    """A failed COMMIT stops the store for good; end the process, so that the parent fails
    everything it is still waiting for instead of waiting forever (crash-only)."""
    error = future.exception()
    if isinstance(error, Unavailable):
        log.critical("the ledger's store stopped: %s", error.message)
        os._exit(EXIT_STORE_STOPPED)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# Errors across the pipe -------------------------------------------------------------------------

EncodedError = tuple[str, str, str, dict[str, str], list[tuple[str, str, str]], str]


def encode_error(error: DomainError) -> EncodedError:
    """The error as its `libs.errors` class (which fixes the status code) and its details."""
    kind = next(cls for cls in type(error).__mro__ if cls.__module__ == errors.__name__)
    violations = [(v.field, v.description, v.reason) for v in getattr(error, "violations", [])]
    return kind.__name__, error.message, error.reason, dict(error.metadata), violations, \
        getattr(error, "resource_name", "")


def decode_error(encoded: EncodedError) -> Exception:
    name, message, reason, metadata, violations, resource_name = encoded
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, DomainError)):
        return RuntimeError(f"ledger process error: {message}")
    if kind is errors.InvalidArgument:
        return errors.InvalidArgument(message, violations=[FieldViolation(*v) for v in violations], reason=reason,
                                      metadata=metadata)
    if kind is errors.NotFound:
        return errors.NotFound(message, resource_name=resource_name, reason=reason, metadata=metadata)
    return kind(message, reason=reason, metadata=metadata)

