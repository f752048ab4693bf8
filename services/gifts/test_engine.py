"""The ledger process: the same use cases behind a pipe, answered only after their commit."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.auth.keys import load_or_create_private_key
from libs.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable
from services.gifts.config import GiftsConfig
from services.gifts.conftest import ADMIN, START, adult
from services.gifts.engine import LedgerProcess, decode_error, encode_error, local_payment_provider
from services.gifts.gifting import Gifting, SendGift, StartLive, TopUpCoins, UpdateAccountFacts, epoch_us
from services.gifts.payments import LocalPaymentProvider, Purchase
from services.gifts.store import database_path

NOW_US = epoch_us(START)


TOUCHED: list[frozenset[str]] = []


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[LedgerProcess]:
    TOUCHED.clear()
    process = LedgerProcess(tmp_path, GiftsConfig(), on_lives_touched=TOUCHED.append)
    await process.start()
    yield process
    await process.stop()


async def _run(ledger: LedgerProcess, operation: object, command: object) -> object:
    return await ledger.run(operation, command, trace_id="", now_us=NOW_US)  # type: ignore[arg-type]


def _receipt(root: Path, user: str) -> str:
    signer = LocalPaymentProvider.with_signing_key(load_or_create_private_key(root / "keys" / "local-payments-ed25519.pem"))
    return signer.issue_receipt(Purchase(str(uuid.uuid4()), user, "coins-1000", 1_000, 1_249, NOW_US))


async def test_orders_run_the_use_cases_with_the_parents_clock(ledger: LedgerProcess, tmp_path: Path) -> None:
    await _run(ledger, Gifting.update_account_facts, UpdateAccountFacts(ADMIN, "carol", {"follower_count": 5_000}))
    session = await _run(ledger, Gifting.start_live, StartLive(adult("carol"), str(uuid.uuid4()), "t"))
    assert session.started_at_us == NOW_US  # type: ignore[attr-defined]
    await _run(ledger, Gifting.top_up, TopUpCoins(adult("alice"), str(uuid.uuid4()), "coins-1000", "local",
                                                  _receipt(tmp_path, "alice")))
    gifts = await asyncio.gather(*(_run(ledger, Gifting.send_gift, SendGift(
        adult("alice"), str(uuid.uuid4()), session.live_id, "doughnut", 1)) for _ in range(20)))  # type: ignore[attr-defined]
    assert sorted(gift.coins_available for gift in gifts) == list(range(400, 1000, 30))  # type: ignore[attr-defined]
    assert session.live_id in frozenset().union(*TOUCHED)  # type: ignore[attr-defined]
    # Answered means committed: another connection already sees every gift.
    with sqlite3.connect(database_path(tmp_path)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM gift").fetchone() == (20,)


async def test_a_refusal_crosses_the_pipe_with_its_reason_and_details(ledger: LedgerProcess) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        await _run(ledger, Gifting.start_live, StartLive(adult("nobody"), str(uuid.uuid4()), "t"))
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
    await _run(ledger, Gifting.update_account_facts, UpdateAccountFacts(ADMIN, "carol", {"follower_count": 5_000}))
    process = ledger._process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(Unavailable) as gone:
        for _ in range(50):  # until the parent notices the pipe close
            await _run(ledger, Gifting.update_account_facts, UpdateAccountFacts(ADMIN, "carol", {}))
            await asyncio.sleep(0.05)
    assert gone.value.reason == "LEDGER_PROCESS_GONE"


def test_the_local_provider_key_lives_with_the_data(tmp_path: Path) -> None:
    assert local_payment_provider(tmp_path).name == "local"
    assert (tmp_path / "keys" / "local-payments-ed25519.pem").exists()
