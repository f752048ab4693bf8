"""The ledger process: the same use cases behind a pipe, answered only after their commit."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

from libs.auth.keys import load_or_create_private_key
from libs.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable
from services.gifts.config import GiftsConfig
from services.gifts.conftest import ADMIN, START, adult
from services.gifts.ledger_process import LedgerProcess, decode_error, encode_error
from services.gifts.model.audit import NO_TRACE
from services.gifts.model.payments import LocalPaymentProvider, Purchase
from services.gifts.providers import local_payment_provider
from services.gifts.store.schema import database_path
from services.gifts.usecases.commands import Command, SendGift, StartLive, TopUpCoins, UpdateAccountFacts

R = TypeVar("R")


TOUCHED: list[frozenset[str]] = []


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[LedgerProcess]:
    TOUCHED.clear()
    process = LedgerProcess(tmp_path, GiftsConfig(), on_lives_touched=TOUCHED.append)
    await process.start()
    yield process
    await process.stop()


async def _run(ledger: LedgerProcess, command: Command[R]) -> R:
    return await ledger.run(command, trace=NO_TRACE, now=START)


def _receipt(root: Path, user: str) -> str:
    signer = LocalPaymentProvider.with_signing_key(load_or_create_private_key(root / "keys" / "local-payments-ed25519.pem"))
    return signer.issue_receipt(Purchase(str(uuid.uuid4()), user, "coins-1000", 1_000, 1_249, START))


async def test_orders_run_the_use_cases_with_the_parents_clock(ledger: LedgerProcess, tmp_path: Path) -> None:
    await _run(ledger, UpdateAccountFacts(ADMIN, "carol", {"follower_count": 5_000}))
    session = await _run(ledger, StartLive(adult("carol"), str(uuid.uuid4()), "t", "t"))
    assert session.started_at == START
    await _run(ledger, TopUpCoins(adult("alice"), str(uuid.uuid4()), "coins-1000", "local",
                                                  _receipt(tmp_path, "alice")))
    gifts = await asyncio.gather(*(_run(ledger, SendGift(
        adult("alice"), str(uuid.uuid4()), session.live_id, "doughnut", 1)) for _ in range(20)))
    assert sorted(gift.coins_available for gift in gifts) == list(range(400, 1000, 30))
    assert session.live_id in frozenset().union(*TOUCHED)
    # Answered means committed: another connection already sees every gift.
    with sqlite3.connect(database_path(tmp_path)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM gift").fetchone() == (20,)


async def test_a_refusal_crosses_the_pipe_with_its_reason_and_details(ledger: LedgerProcess) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        await _run(ledger, StartLive(adult("nobody"), str(uuid.uuid4()), "t", "t"))
    assert (refused.value.reason, refused.value.metadata) == ("TOO_FEW_FOLLOWERS",
                                                              {"follower_count": "0", "required": "1000"})


def test_errors_keep_their_status_class_reason_and_details_across_the_pipe() -> None:
    invalid = InvalidArgument("bad", violations=[FieldViolation("count", "too big", "RANGE")], reason="X")
    missing = NotFound("no", resource_name="lives/1", reason="LIVE_NOT_FOUND", metadata={"a": "b"})
    for error in (invalid, missing, FailedPrecondition("f", reason="R", metadata={"k": "v"})):
        decoded = decode_error(encode_error(error))
        assert type(decoded) is type(error)
        assert vars(decoded) == vars(error)
    assert isinstance(decode_error(("NotAnError", "x", "", {}, [], "")), RuntimeError)


async def test_calls_fail_unavailable_when_the_ledger_process_dies(ledger: LedgerProcess, tmp_path: Path) -> None:
    await _run(ledger, UpdateAccountFacts(ADMIN, "carol", {"follower_count": 5_000}))
    process = ledger._process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    await asyncio.to_thread(process.join, 10)
    # Whether the parent has noticed the closed pipe yet or notices it while this call waits,
    # the call fails: nobody waits forever for a dead ledger.
    with pytest.raises(Unavailable) as gone:
        await asyncio.wait_for(_run(ledger, UpdateAccountFacts(ADMIN, "carol", {})), timeout=30)
    assert gone.value.reason == "LEDGER_PROCESS_GONE"


def test_the_local_provider_key_lives_with_the_data(tmp_path: Path) -> None:
    assert local_payment_provider(tmp_path).name == "local"
    assert (tmp_path / "keys" / "local-payments-ed25519.pem").exists()


async def test_a_turn_of_orders_larger_than_the_pipe_holds_is_sent_and_answered_whole(ledger: LedgerProcess) -> None:
    # 3,000 orders in one event-loop turn are one message of several pipe buffers, and a
    # commit's answers exceed one too: the parent writes and reads them in pieces, never blocking.
    users = [f"user-{index}-{'x' * 40}" for index in range(3_000)]
    facts = await asyncio.gather(*(_run(ledger, UpdateAccountFacts(ADMIN, user, {"follower_count": index}))
                                   for index, user in enumerate(users)))
    assert [(fact.user_id, fact.follower_count) for fact in facts] == [(user, index) for index, user in
                                                                        enumerate(users)]
