"""The embedded payment provider (`local`): the shop's default `PaymentProvider`, with books of
its own in `<data>/shop/local-payments.db` (or the PostgreSQL schema `shop_local_payments`), apart
from the orders, as a real provider's are.

It behaves as a card provider's API does where the shop's guarantees depend on it: every call
is idempotent by key (the order's name; a refund's request id), an authorisation lapses after
`authorization_ttl`, a voided authorisation is never captured and a captured one never voided
(each call answers the state it left), and refunds never exceed the capture. The funding of a
token is read from its first word (see `PaymentMethod.token` in orders.proto).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from libs.clock import Clock
from libs.storage.committer import GroupCommitter
from libs.storage.database import Database, Migration, Transaction, open_database
from libs.timestamps import epoch_us, from_epoch_us
from services.shop.model import Funding, PaymentState
from services.shop.usecases.ports import Authorization

_BOOKS = """
CREATE TABLE authorizations (
    payment_key TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency_code TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('AUTHORIZED', 'CAPTURED', 'VOIDED', 'DECLINED')),
    captured_minor INTEGER NOT NULL DEFAULT 0,
    refunded_minor INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor <= captured_minor),
    expire_us INTEGER NOT NULL
);
CREATE TABLE refunds (
    refund_key TEXT PRIMARY KEY,
    payment_key TEXT NOT NULL REFERENCES authorizations (payment_key),
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0)
);
"""

MIGRATIONS = (Migration.portable(1, _BOOKS),)

_FUNDING = {"credit": Funding.CREDIT, "paylater": Funding.POST_PAID, "prepaid": Funding.PREPAID}


def open_books(data_root: Path) -> Database:
    """The provider's own database: `<data>/shop/local-payments.db`, or the schema `shop_local_payments`."""
    return open_database("shop", MIGRATIONS, area="local-payments", root=data_root)


class LocalPaymentProvider:
    name = "local"

    def __init__(self, database: Database, *, clock: Clock,
                 authorization_ttl: dt.timedelta = dt.timedelta(days=7)) -> None:
        self._database = database
        self._committer = GroupCommitter(self._database, name="local-payments")
        self._clock = clock
        self._ttl = authorization_ttl

    @classmethod
    def open(cls, data_root: Path, *, clock: Clock) -> LocalPaymentProvider:
        return cls(open_books(data_root), clock=clock)

    def close(self) -> None:
        self._committer.close()
        self._database.close()

    def funding(self, token: str) -> Funding:
        return _FUNDING.get(token.split("_", 1)[0], Funding.DEBIT)

    async def authorize(self, key: str, token: str, amount_minor: int, currency_code: str) -> Authorization:
        now = self._clock()
        declined = token.startswith("decline_")
        reference = "la_" + hashlib.sha256(key.encode()).hexdigest()[:24]

        def work(tx: Transaction) -> Authorization:
            tx.execute("INSERT INTO authorizations (payment_key, reference, amount_minor, currency_code, state,"
                       " expire_us) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (payment_key) DO NOTHING",
                       (key, reference, amount_minor, currency_code, "DECLINED" if declined else "AUTHORIZED",
                        epoch_us(now + self._ttl)))
            row = tx.execute("SELECT state, expire_us FROM authorizations WHERE payment_key = ?", (key,)).fetchone()
            if row["state"] in ("AUTHORIZED", "CAPTURED"):
                return Authorization(True, reference, from_epoch_us(row["expire_us"]))
            return Authorization(False, decline_reason="declined by the card issuer" if row["state"] == "DECLINED"
                                 else "the authorisation was voided")

        return await self._committer.run(work)

    async def capture(self, key: str, amount_minor: int) -> PaymentState:
        now = epoch_us(self._clock())

        def work(tx: Transaction) -> PaymentState:
            tx.execute("UPDATE authorizations SET state = 'CAPTURED', captured_minor = ?"
                       " WHERE payment_key = ? AND state = 'AUTHORIZED' AND expire_us > ? AND amount_minor >= ?",
                       (amount_minor, key, now, amount_minor))
            return self._state(tx, key)

        return await self._committer.run(work)

    async def void(self, key: str) -> PaymentState:
        def work(tx: Transaction) -> PaymentState:
            # A key never authorised is voided in advance, so a late authorisation cannot succeed.
            tx.execute("INSERT INTO authorizations (payment_key, reference, amount_minor, currency_code, state,"
                       " expire_us) VALUES (?, ?, 1, '', 'VOIDED', 0) ON CONFLICT (payment_key) DO NOTHING",
                       (key, "la_" + hashlib.sha256(key.encode()).hexdigest()[:24]))
            tx.execute("UPDATE authorizations SET state = 'VOIDED' WHERE payment_key = ? AND state = 'AUTHORIZED'",
                       (key,))
            return self._state(tx, key)

        return await self._committer.run(work)

    async def refund(self, key: str, refund_key: str, amount_minor: int) -> None:
        def work(tx: Transaction) -> None:
            if tx.execute("INSERT INTO refunds (refund_key, payment_key, amount_minor) VALUES (?, ?, ?)"
                          " ON CONFLICT (refund_key) DO NOTHING", (refund_key, key, amount_minor)).rowcount:
                tx.execute("UPDATE authorizations SET refunded_minor = refunded_minor + ? WHERE payment_key = ?",
                           (amount_minor, key))

        await self._committer.run(work)

    @staticmethod
    def _state(tx: Transaction, key: str) -> PaymentState:
        row = tx.execute("SELECT state FROM authorizations WHERE payment_key = ?", (key,)).fetchone()
        return PaymentState(row["state"])
