"""Random sequences of every money operation, with the ledger invariants checked after each step.

The reference is deliberately naive: balances are recomputed by folding the transfer log
in Python and compared with the balance rows the triggers maintain.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, multiple, rule

from libs.errors import DomainError
from libs.storage.database import Transaction
from services.gifts.config import GiftsConfig, PayoutPolicy
from services.gifts.conftest import ADMIN, PAYMENTS_SERVICE, Harness, adult, build_harness
from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.fraud import FraudPolicy
from services.gifts.usecases.commands import (
    Command,
    GiftResult,
    RequestPayout,
    ReversalKind,
    ReverseTopUp,
    ReviewHeldGift,
    SendGift,
    SettlePayout,
    TopUpCoins,
)

VIEWERS = ("v0", "v1", "v2")
HOSTS = ("h0", "h1")
GIFTS = ("rose", "doughnut", "galaxy", "lion")
PACKS = ("coins-100", "coins-1000", "coins-5000", "coins-20000")


def reference_balances(connection: Transaction) -> dict[str, list[int]]:
    """[debits_posted, credits_posted, debits_pending, credits_pending] per account, from the log alone."""
    balances: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for phase, debit, credit, amount in connection.execute(
            "SELECT phase, debit_account, credit_account, amount FROM transfer ORDER BY id"):
        if phase == "POSTED":
            balances[debit][0] += amount
            balances[credit][1] += amount
        elif phase == "PENDING":
            balances[debit][2] += amount
            balances[credit][3] += amount
        elif phase == "POST_PENDING":
            balances[debit][2] -= amount
            balances[debit][0] += amount
            balances[credit][3] -= amount
            balances[credit][1] += amount
        else:  # VOID_PENDING, EXPIRE_PENDING
            balances[debit][2] -= amount
            balances[credit][3] -= amount
    return balances


@dataclasses.dataclass(frozen=True)
class Applied:
    """A gift that took effect, and what it answered."""

    command: SendGift
    result: GiftResult


class LedgerMachine(RuleBasedStateMachine):
    applied = Bundle("applied")
    top_ups = Bundle("top_ups")
    held_gifts = Bundle("held_gifts")
    payouts = Bundle("payouts")

    def __init__(self) -> None:
        super().__init__()
        self._directory = tempfile.TemporaryDirectory()
        # Low thresholds let short runs reach payouts and fraud holds.
        config = GiftsConfig(payouts=PayoutPolicy(minimum_eur_cents=100),
                             fraud=FraudPolicy(new_account_large_coins=2_000))
        self.h: Harness = build_harness(Path(self._directory.name), config, synchronous="OFF")
        self.lives: dict[str, str] = {}
        for host in HOSTS:
            self.lives[host] = self.h.go_live(host, identity_verified=True).live_id
        old = self.h.clock() - dt.timedelta(days=365)
        self.h.set_facts(AccountFacts("v0", joined_at=old))  # one veteran: large gifts go through
        for user in VIEWERS + HOSTS:
            self.h.top_up(user, "coins-5000")
        # Requests seen to take effect, each claiming one request row: LIVE starts and top-ups so far.
        self.effects = len(HOSTS) + len(VIEWERS + HOSTS)

    def teardown(self) -> None:
        self.h.close()
        self._directory.cleanup()

    def _run(self, use_case: str, command: Command[Any]) -> Any:
        try:
            result = self.h.run(command)
        except DomainError as error:
            event(f"{use_case}: {error.reason}")
            return None
        event(f"{use_case}: {getattr(result, 'state', 'applied')}")
        self.effects += 1
        return result

    def _keep_lives_open(self) -> None:
        for host, live_id in self.lives.items():
            session = self.h.reader.live(live_id)
            assert session is not None
            if session.state_at(self.h.clock()).value == "ENDED":
                self.lives[host] = self.h.go_live(host, identity_verified=True).live_id
                self.effects += 1

    @rule(target=top_ups, user=st.sampled_from(VIEWERS + HOSTS), pack=st.sampled_from(PACKS))
    def top_up(self, user: str, pack: str) -> Any:
        command = TopUpCoins(adult(user), str(uuid.uuid4()), pack, "local", self.h.receipt(user, pack))
        result = self._run("top_up", command)
        return result.top_up_id if result else multiple()

    @rule(target=applied, sender=st.sampled_from(VIEWERS + HOSTS), host=st.sampled_from(HOSTS),
          gift=st.sampled_from(GIFTS), count=st.integers(1, 3))
    def send_gift(self, sender: str, host: str, gift: str, count: int) -> Any:
        self._keep_lives_open()
        command = SendGift(adult(sender), str(uuid.uuid4()), self.lives[host], gift, count)
        result = self._run("send_gift", command)
        return Applied(command, result) if result else multiple()

    @rule(target=held_gifts, gift=applied)
    def note_held(self, gift: Applied) -> Any:
        return gift.result.gift_id if gift.result.state == "HELD" else multiple()

    @rule(earlier=applied)
    def retry_returns_the_first_result_and_changes_nothing(self, earlier: Applied) -> None:
        before = self._balances()
        again = self.h.submit(earlier.command).result()
        assert again == earlier.result
        assert self._balances() == before

    @rule(earlier=applied)
    def reusing_an_id_with_other_parameters_is_refused(self, earlier: Applied) -> None:
        before = self._balances()
        changed = dataclasses.replace(earlier.command, count=earlier.command.count + 1)
        try:
            self.h.submit(changed).result()
        except DomainError as error:
            assert error.reason == "REQUEST_ID_REUSED"
        else:
            raise AssertionError("a reused request id took effect")
        assert self._balances() == before

    @rule(gift_id=consumes(held_gifts), approve=st.booleans())
    def review(self, gift_id: str, approve: bool) -> None:
        self._run("review_held_gift", ReviewHeldGift(ADMIN, str(uuid.uuid4()), gift_id, approve))

    @rule(target=payouts, host=st.sampled_from(HOSTS), diamonds=st.sampled_from([200, 2_000, 10_000]))
    def request_payout(self, host: str, diamonds: int) -> Any:
        result = self._run("request_payout", RequestPayout(adult(host), str(uuid.uuid4()), diamonds))
        return result.payout_id if result else multiple()

    @rule(payout_id=payouts, paid=st.booleans())
    def settle(self, payout_id: str, paid: bool) -> None:
        self._run("settle_payout", SettlePayout(PAYMENTS_SERVICE, str(uuid.uuid4()), payout_id, paid))

    @rule(top_up_id=top_ups, kind=st.sampled_from(ReversalKind))
    def reverse(self, top_up_id: str, kind: ReversalKind) -> None:
        self._run("reverse_top_up", ReverseTopUp(PAYMENTS_SERVICE, str(uuid.uuid4()), top_up_id, kind))

    @rule(hours=st.sampled_from([1, 24, 24 * 3, 24 * 15]))
    def time_passes(self, hours: int) -> None:
        self.h.clock.advance(dt.timedelta(hours=hours))
        self.h.sweep().result()

    def _balances(self) -> dict[str, tuple[int, int, int, int]]:
        with self.h.reader.database.reading() as connection:
            return {row[0]: tuple(row[1:]) for row in connection.execute(
                "SELECT name, debits_posted, credits_posted, debits_pending, credits_pending FROM account")}

    @invariant()
    def every_currency_sums_to_zero(self) -> None:
        with self.h.reader.database.reading() as connection:
            for currency, posted, pending_debits, pending_credits in connection.execute(
                    "SELECT currency, SUM(credits_posted - debits_posted), SUM(debits_pending), SUM(credits_pending) "
                    "FROM account GROUP BY currency"):
                assert posted == 0, currency
                assert pending_debits == pending_credits, currency

    @invariant()
    def no_user_account_is_negative(self) -> None:
        for name, (debits, credits, pending_debits, _) in self._balances().items():
            if name.startswith("users/"):
                assert credits - debits - pending_debits >= 0, name

    @invariant()
    def balance_rows_match_the_transfer_log(self) -> None:
        with self.h.reader.database.reading() as connection:
            folded = reference_balances(connection)
        for name, balance in self._balances().items():
            assert tuple(folded.get(name, [0, 0, 0, 0])) == balance, name

    @invariant()
    def each_request_took_effect_once(self) -> None:
        with self.h.reader.database.reading() as connection:
            claimed = connection.execute("SELECT COUNT(*) FROM request WHERE operation <> 'Sweep'").fetchone()[0]
            answered = connection.execute("SELECT COUNT(*) FROM request_result").fetchone()[0]
            sweeps = connection.execute("SELECT COUNT(*) FROM request WHERE operation = 'Sweep'").fetchone()[0]
            gifts_per_request = connection.execute(
                "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM gift GROUP BY request_id)").fetchone()[0]
        assert claimed == self.effects  # facts carry no request id
        assert answered == claimed + sweeps
        assert gifts_per_request in (None, 1)


LedgerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_ledger_invariants_hold_over_random_operations = LedgerMachine.TestCase
