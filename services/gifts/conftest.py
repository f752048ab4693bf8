"""Fixtures for the gifts tests: a real store in tmp_path, a movable clock, signed receipts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.auth.principal import AgeBracket, Principal, Role
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from services.gifts.config import GiftsConfig
from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.live import LiveSession
from services.gifts.model.payments import LocalPaymentProvider, Purchase
from services.gifts.providers import payments_of
from services.gifts.runner import InProcessRunner
from services.gifts.store.outbox import GiftsAuditOutbox
from services.gifts.store.reads import GiftsReader
from services.gifts.usecases.commands import Command, StartLive, Sweep, SweepResult, TopUpCoins, UpdateAccountFacts

R = TypeVar("R")
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
    """The gifts ledger over a real store, run by the service's own in-process runner, with
    helpers that read as the steps of a story."""

    def __init__(self, runner: InProcessRunner, reader: GiftsReader, config: GiftsConfig, clock: MovableClock,
                 provider: LocalPaymentProvider, outbox: GiftsAuditOutbox) -> None:
        self.runner = runner
        self.reader = reader
        self.config = config
        self.clock = clock
        self.provider = provider
        self.outbox = outbox

    def submit(self, command: Command[R]) -> Future[R]:
        """The command in the next durable batch, at the harness clock's now."""
        return self.runner.submit(command, now=self.clock())

    def run(self, command: Command[R]) -> R:
        return self.submit(command).result()

    def sweep(self) -> Future[SweepResult]:
        return self.submit(Sweep(str(uuid.uuid4())))

    def close(self) -> None:
        self.runner.store.close()
        self.reader.close()
        self.outbox.close()

    def receipt(self, user: str, pack_id: str = "coins-1000", *, receipt_id: str | None = None) -> str:
        pack = self.config.catalog.pack(pack_id)
        assert pack is not None
        return self.provider.issue_receipt(Purchase(receipt_id or f"r-{next(_receipts)}", user, pack.pack_id,
                                                    pack.coins, pack.price_eur_cents, self.clock()))

    def top_up(self, user: str, pack_id: str = "coins-1000") -> str:
        command = TopUpCoins(adult(user), str(uuid.uuid4()), pack_id, "local", self.receipt(user, pack_id))
        return self.run(command).top_up_id

    def set_facts(self, facts: AccountFacts) -> None:
        changes = {field.name: getattr(facts, field.name) for field in dataclasses.fields(facts)
                   if field.name != "user_id"}
        self.run(UpdateAccountFacts(ADMIN, facts.user_id, changes))

    def go_live(self, host: str, *, follower_count: int = 5_000, **facts: Any) -> LiveSession:
        self.set_facts(AccountFacts(host, follower_count=follower_count, **facts))
        return self.run(StartLive(adult(host), str(uuid.uuid4()), "tonight", "tonight"))


def build_harness(root: Path, config: GiftsConfig | None = None, *, synchronous: str = "NORMAL",
                  max_batch: int = 512) -> Harness:
    config = config or GiftsConfig()
    provider = LocalPaymentProvider.with_signing_key(Ed25519PrivateKey.generate())
    runner = InProcessRunner.open(root, config, payments=payments_of(provider), synchronous=synchronous,
                                  max_batch=max_batch)
    return Harness(runner, GiftsReader.of_service(root), config, MovableClock(), provider,
                   GiftsAuditOutbox.of_service(root))


ON_BOTH_ENGINES = pytest.mark.usefixtures("database_engine")
"""Runs a test once on SQLite and once on PostgreSQL: the stores it opens (`harness`, or its own) use that engine."""


@pytest.fixture
def harness(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The ledger on SQLite, or on each engine in turn for a test marked `ON_BOTH_ENGINES`."""
    if "database_engine" in request.fixturenames:
        request.getfixturevalue("database_engine")  # before the store opens: it picks the engine
    built = build_harness(tmp_path)
    yield built
    built.close()
