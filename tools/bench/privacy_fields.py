"""Sealing and opening one personal field (AES-256-GCM under the subject's data key): µs per field.

Three figures, same run: the bare cipher (`libs.privacy.sealing`), and `PersonalData.seal` /
`.open` with the key already in the in-memory cache (what a service's hot path pays after the
first call for a subject; the key-service RPC is paid once per subject per cache lifetime).

    python -m tools.bench.privacy_fields [--samples 20000] [--length 120]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from libs.privacy.fields import EphemeralDataKeys, PersonalData
from libs.privacy.sealing import DataKey, open_sealed, seal

SUBJECT = "users/ada"
FIELD = "gift.message"


def per_call_us(operation: Callable[[], object], samples: int) -> list[float]:
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        operation()
        durations.append((time.perf_counter() - started) * 1e6)
    return durations


async def per_await_us(operation: Callable[[], Awaitable[object]], samples: int) -> list[float]:
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        await operation()
        durations.append((time.perf_counter() - started) * 1e6)
    return durations


def report(label: str, durations: list[float]) -> None:
    ordered = sorted(durations)
    print(f"{label:<28} p50 {statistics.median(ordered):6.2f} µs   p99 {ordered[int(len(ordered) * 0.99)]:6.2f} µs")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--length", type=int, default=120, help="characters per field (a caption, a message)")
    arguments = parser.parse_args()
    text = ("Für dich, Ada! " * (arguments.length // 15 + 1))[:arguments.length]
    key = DataKey.generate()
    sealed = seal(key, SUBJECT, FIELD, text)
    report("seal (cipher)", per_call_us(lambda: seal(key, SUBJECT, FIELD, text), arguments.samples))
    report("open (cipher)", per_call_us(lambda: open_sealed(key, SUBJECT, FIELD, sealed), arguments.samples))
    # In-process keys stand in for the key service: the bench times the cached path, not the RPC.
    personal = PersonalData(EphemeralDataKeys())
    sealed = await personal.seal(SUBJECT, FIELD, text)  # fills the cache, as the first call for a subject does
    report("PersonalData.seal (cached)", await per_await_us(lambda: personal.seal(SUBJECT, FIELD, text),
                                                            arguments.samples))
    report("PersonalData.open (cached)", await per_await_us(lambda: personal.open(SUBJECT, FIELD, sealed),
                                                            arguments.samples))


if __name__ == "__main__":
    asyncio.run(main())
