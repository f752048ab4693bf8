"""Ledger throughput at the storage level: group commit against one commit per gift.

Both runs use the same store, the same SendGift use case (fraud rules, idempotency claim,
three transfers, feed, hold and audit rows) and `synchronous=FULL`, with 64 gifts in
flight from asyncio; the only difference is the committer's batch limit (512 against 1).

    python -m tools.bench.gift_ledger [--seconds 5] [--in-flight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.auth.principal import Principal, Role
from libs.clock import utc_now
from services.gifts.config import GiftsConfig
from services.gifts.model.audit import NO_TRACE
from services.gifts.model.fraud import FraudPolicy
from services.gifts.model.payments import LocalPaymentProvider, Purchase
from services.gifts.providers import payments_of
from services.gifts.runner import InProcessRunner
from services.gifts.usecases.commands import SendGift, StartLive, TopUpCoins, UpdateAccountFacts

SENDERS = 512
GIFT = "doughnut"  # 30 coins: a fee, a share and a diamond leg
TRANSFERS_PER_GIFT = 3


def _principal(user: str, *roles: Role) -> Principal:
    return Principal(f"users/{user}", frozenset({Role.VIEWER, *roles}),
                     dt.datetime.now(dt.UTC) + dt.timedelta(days=1), birth_date=dt.date(1990, 1, 1))


def _build(root: Path, max_batch: int) -> tuple[InProcessRunner, str]:
    # Velocity and new-account rules would hold or refuse a benchmark's traffic; they
    # still run (and query) on every gift, they just never trigger.
    config = GiftsConfig(fraud=FraudPolicy(max_gifts_per_window=10**9, new_account_large_coins=10**12))
    signing_key = Ed25519PrivateKey.generate()
    provider = LocalPaymentProvider.with_signing_key(signing_key)
    runner = InProcessRunner.open(root, config, payments=payments_of(provider), synchronous="FULL",
                                  max_batch=max_batch)
    admin = _principal("ops", Role.ADMIN)
    runner.submit(UpdateAccountFacts(admin, "host", {"follower_count": 10_000}), now=utc_now()).result()
    live = runner.submit(StartLive(_principal("host"), str(uuid.uuid4()), "bench", "bench"), now=utc_now()).result()
    pack = config.catalog.pack("coins-20000")
    assert pack is not None
    futures = []
    for index in range(SENDERS):
        user = f"viewer-{index}"
        receipt = provider.issue_receipt(Purchase(str(uuid.uuid4()), user, pack.pack_id, pack.coins,
                                                  pack.price_eur_cents, utc_now()))
        command = TopUpCoins(_principal(user), str(uuid.uuid4()), pack.pack_id, provider.name, receipt)
        futures.append(runner.submit(command, now=utc_now()))
    for future in futures:
        future.result()
    return runner, live.live_id


async def _drive(runner: InProcessRunner, live_id: str, seconds: float, in_flight: int) -> tuple[int, list[float]]:
    senders = [_principal(f"viewer-{index}") for index in range(SENDERS)]
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def worker(offset: int) -> None:
        turn = offset
        while time.perf_counter() < deadline:
            command = SendGift(senders[turn % SENDERS], str(uuid.uuid4()), live_id, GIFT, 1)
            started = time.perf_counter()
            await runner.run(command, trace=NO_TRACE, now=utc_now())
            latencies.append(time.perf_counter() - started)
            turn += in_flight

    await asyncio.gather(*(worker(offset) for offset in range(in_flight)))
    return len(latencies), latencies


@dataclasses.dataclass
class Figures:
    gifts_per_second: float
    p50_ms: float
    p99_ms: float

    @property
    def transfers_per_second(self) -> float:
        return self.gifts_per_second * TRANSFERS_PER_GIFT


def measure(max_batch: int, seconds: float, in_flight: int) -> Figures:
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-gifts-") as directory:
        runner, live_id = _build(Path(directory), max_batch)
        try:
            started = time.perf_counter()
            count, latencies = asyncio.run(_drive(runner, live_id, seconds, in_flight))
            elapsed = time.perf_counter() - started
        finally:
            runner.store.close()
    quantiles = statistics.quantiles(latencies, n=100)
    return Figures(count / elapsed, quantiles[49] * 1000, quantiles[98] * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=64)
    arguments = parser.parse_args()
    grouped = measure(512, arguments.seconds, arguments.in_flight)
    single = measure(1, arguments.seconds, arguments.in_flight)
    for label, figures in (("group commit", grouped), ("one commit per gift", single)):
        print(f"{label:>20}: {figures.gifts_per_second:8.0f} gifts/s  {figures.transfers_per_second:8.0f} "
              f"transfers/s  p50 {figures.p50_ms:6.1f} ms  p99 {figures.p99_ms:6.1f} ms")
    print(f"ratio group/single: {grouped.gifts_per_second / single.gifts_per_second:.2f}x "
          f"(synchronous=FULL, {arguments.in_flight} in flight, {arguments.seconds:.0f} s each)")


if __name__ == "__main__":
    main()
