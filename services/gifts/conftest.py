"""Fixtures for the gifts tests: a real store in tmp_path, a movable clock, signed receipts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.auth.principal import AgeBracket, Principal, Role
from services.gifts.bootstrap import GiftsApp
from services.gifts.config import GiftsConfig
from services.gifts.eligibility import AccountFacts
from services.gifts.gifting import Gifting, StartLive, TopUpCoins, UpdateAccountFacts, epoch_us
from services.gifts.live import LiveSession
from services.gifts.payments import LocalPaymentProvider, Purchase
from services.gifts.store import GiftsStore

START = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
_receipts = itertools.count()


class MovableClock:
    """A clock a test moves by hand."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


def adult(user: str, *roles: Role) -> Principal:
    return Principal(f"users/{user}", frozenset({Role.VIEWER, *roles}), START + dt.timedelta(days=365),
                     birth_date=dt.date(1990, 5, 17), country="DE")


def minor(user: str) -> Principal:
    return Principal(f"users/{user}", frozenset({Role.VIEWER}), START + dt.timedelta(days=365),
                     age_bracket=AgeBracket.FROM_16_TO_17, country="DE")


ADMIN = Principal("users/ops", frozenset({Role.ADMIN}), START + dt.timedelta(days=365),
                  birth_date=dt.date(1980, 1, 1))
PAYMENTS_SERVICE = Principal("services/payments", frozenset({Role.SERVICE}), START + dt.timedelta(days=365))


class Harness:
    """The gifts app over a real store, with helpers that read as the steps of a story."""

    def __init__(self, app: GiftsApp, clock: MovableClock, provider: LocalPaymentProvider) -> None:
        self.app = app
        self.gifting = app.gifting
        self.store = app.store
        self.clock = clock
        self.provider = provider

    def receipt(self, user: str, pack_id: str = "coins-1000", *, receipt_id: str | None = None) -> str:
        pack = self.gifting.config.catalog.pack(pack_id)
        assert pack is not None
        return self.provider.issue_receipt(Purchase(receipt_id or f"r-{next(_receipts)}", user, pack.pack_id,
                                                    pack.coins, pack.price_eur_cents, epoch_us(self.clock())))

    def top_up(self, user: str, pack_id: str = "coins-1000") -> str:
        command = TopUpCoins(adult(user), str(uuid.uuid4()), pack_id, "local", self.receipt(user, pack_id))
        result = self.app.execute(self.gifting.top_up, command).result()
        return result.top_up_id

    def set_facts(self, facts: AccountFacts) -> None:
        changes = {field.name: getattr(facts, field.name) for field in dataclasses.fields(facts)
                   if field.name != "user_id"}
        self.app.execute(self.gifting.update_account_facts, UpdateAccountFacts(ADMIN, facts.user_id, changes)).result()

    def go_live(self, host: str, *, follower_count: int = 5_000, **facts: Any) -> LiveSession:
        self.set_facts(AccountFacts(host, follower_count=follower_count, **facts))
        return self.app.execute(self.gifting.start_live, StartLive(adult(host), str(uuid.uuid4()), "tonight")).result()


def build_harness(root: Path, config: GiftsConfig | None = None, *, synchronous: str = "NORMAL",
                  max_batch: int = 512) -> Harness:
    clock = MovableClock()
    provider = LocalPaymentProvider.with_signing_key(Ed25519PrivateKey.generate())
    store = GiftsStore(root=root, synchronous=synchronous, max_batch=max_batch)
    gifting = Gifting(config or GiftsConfig(), clock=clock, payments={provider.name: provider})
    return Harness(GiftsApp(store=store, gifting=gifting, new_request_id=lambda: str(uuid.uuid4())), clock, provider)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    built = build_harness(tmp_path)
    yield built
    built.app.close()
