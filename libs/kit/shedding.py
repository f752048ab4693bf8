"""Load shedding: a bound on calls in flight, and a per-peer rate for calls without a token.

grpcio, overloaded, cancels calls at random (the outside test saw up to 10% CANCELLED).
The kit refuses early instead, with RESOURCE_EXHAUSTED, a `google.rpc.RetryInfo` delay
and an ErrorInfo reason, so a caller can tell overload from failure and back off:

- `SERVER_OVERLOADED`: the service already runs `max_concurrent_calls` calls (an open
  stream counts until it ends).
- `RATE_LIMITED`: a peer address sent calls without a valid token (none, or one that
  fails verification) faster than its bucket refills: the public RPCs, and refused
  calls, which would otherwise feed the denial audit trail. A call with a valid token is
  accountable and bounded only by the concurrency limit, so services on one host never
  throttle one another.

Health and reflection are never shed: a probe must see the service, not its load.
Settings per service, from the environment (`ShedSettings.from_environment`):

    LIMELIGHT_<SERVICE>_MAX_CONCURRENT_CALLS   default 1024
    LIMELIGHT_<SERVICE>_OVERLOAD_RETRY_MS      default 250 (RetryInfo on SERVER_OVERLOADED)
    LIMELIGHT_<SERVICE>_TOKENLESS_RATE         calls per second per peer, default 50
    LIMELIGHT_<SERVICE>_TOKENLESS_BURST        bucket size per peer, default 100
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from libs.errors import ResourceExhausted

DEFAULT_MAX_CONCURRENT_CALLS = 1024
DEFAULT_OVERLOAD_RETRY = dt.timedelta(milliseconds=250)
DEFAULT_TOKENLESS_RATE = 50.0
DEFAULT_TOKENLESS_BURST = 100.0
# Buckets of peers that went quiet are forgotten first; a forgotten peer starts full.
MAX_TRACKED_PEERS = 10_000


@dataclass(frozen=True)
class ShedSettings:
    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS
    overload_retry: dt.timedelta = DEFAULT_OVERLOAD_RETRY
    tokenless_rate: float = DEFAULT_TOKENLESS_RATE
    tokenless_burst: float = DEFAULT_TOKENLESS_BURST

    @classmethod
    def from_environment(cls, service: str) -> ShedSettings:
        prefix = f"LIMELIGHT_{service.upper().replace('-', '_')}_"

        def number(name: str, default: float) -> float:
            configured = os.environ.get(prefix + name)
            return float(configured) if configured else default

        return cls(
            max_concurrent_calls=int(number("MAX_CONCURRENT_CALLS", DEFAULT_MAX_CONCURRENT_CALLS)),
            overload_retry=dt.timedelta(
                milliseconds=number("OVERLOAD_RETRY_MS", DEFAULT_OVERLOAD_RETRY / dt.timedelta(milliseconds=1))
            ),
            tokenless_rate=number("TOKENLESS_RATE", DEFAULT_TOKENLESS_RATE),
            tokenless_burst=number("TOKENLESS_BURST", DEFAULT_TOKENLESS_BURST),
        )


class ConcurrencyLimit:
    """Counts calls in flight; single event loop, so a plain counter is exact."""

    __slots__ = ("_limit", "_retry", "in_flight")

    def __init__(self, limit: int, retry: dt.timedelta) -> None:
        self._limit = limit
        self._retry = retry
        self.in_flight = 0

    def enter(self) -> None:
        if self.in_flight >= self._limit:
            raise ResourceExhausted(
                "the service is at its limit of concurrent calls; retry after the given delay",
                reason="SERVER_OVERLOADED",
                metadata={"max_concurrent_calls": str(self._limit)},
                retry_delay=self._retry,
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1


class PeerRateLimit:
    """A token bucket per peer host: `rate` calls a second, up to `burst` at once."""

    def __init__(self, *, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (tokens, at)

    def take(self, peer: str) -> None:
        now = self._clock()
        tokens, at = self._buckets.pop(peer, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[peer] = (tokens, now)
            wait = (1.0 - tokens) / self._rate if self._rate > 0 else 60.0
            raise ResourceExhausted(
                "too many calls without a token from this address; retry after the given delay",
                reason="RATE_LIMITED",
                metadata={"peer": peer, "calls_per_second": f"{self._rate:g}", "burst": f"{self._burst:g}"},
                retry_delay=dt.timedelta(seconds=wait),
            )
        self._buckets[peer] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_TRACKED_PEERS:
            self._buckets.popitem(last=False)


def peer_host(peer: str) -> str:
    """`ipv4:10.0.0.7:5123` -> `ipv4:10.0.0.7`; the port changes with every connection."""
    scheme, _, address = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        return f"{scheme}:{address.rsplit(':', 1)[0]}"
    return peer
