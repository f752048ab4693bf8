"""Channels to other Limelight services.

Every call gets a deadline (the caller's, or the default), this service's identity, the
end user's token when the call serves one, and a CLIENT span. Retries happen only on
UNAVAILABLE, through the channel's service config, so a non-idempotent call is never
repeated after it may have taken effect.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import trace

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token
from libs.kit import config
from libs.kit.interceptors import KitClientInterceptor

StubT = TypeVar("StubT")

RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

SERVICE_TOKEN_TTL = dt.timedelta(minutes=10)


class ServiceTokenSource:
    """This service's own bearer token, re-minted well before it expires."""

    def __init__(self, service: str, key: Ed25519PrivateKey, *, ttl: dt.timedelta = SERVICE_TOKEN_TTL) -> None:
        self._claims = TokenClaims(subject=f"services/{service}", roles=frozenset({Role.SERVICE}))
        self._key = key
        self._ttl = ttl
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    def __call__(self) -> str:
        now = dt.datetime.now(dt.UTC)
        if now >= self._renew_at:
            with self._lock:
                if now >= self._renew_at:
                    self._token = mint_token(self._key, self._claims, ttl=self._ttl, now=now)
                    self._renew_at = now + self._ttl / 2
        return self._token


class ServiceClients:
    """One channel per target service, shared by every stub of that service."""

    def __init__(
        self,
        *,
        tracer: trace.Tracer,
        service_token: Callable[[], str],
        targets: Mapping[str, str] | None = None,
        default_timeout: float = 5.0,
    ) -> None:
        self._interceptor = KitClientInterceptor(
            tracer=tracer, service_token=service_token, default_timeout=default_timeout
        )
        self._targets = dict(targets or {})
        self._channels: dict[str, grpc.aio.Channel] = {}

    def target_of(self, service: str) -> str:
        return self._targets.get(service) or config.target(service)

    def channel(self, service: str) -> grpc.aio.Channel:
        channel = self._channels.get(service)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                self.target_of(service),
                options=[("grpc.service_config", RETRY_SERVICE_CONFIG), ("grpc.enable_retries", 1)],
                interceptors=[self._interceptor],
            )
            self._channels[service] = channel
        return channel

    def stub(self, service: str, stub_type: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        return stub_type(self.channel(service))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
