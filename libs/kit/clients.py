"""Channels to other Limelight services.

Every call gets a deadline (the caller's, or the default), this service's identity, the
end user's token when the call serves one, and a CLIENT span. Retries happen only on
UNAVAILABLE, through the channel's service config, so a non-idempotent call is never
repeated after it may have taken effect.

RESOURCE_EXHAUSTED is not retried here: it means the callee is shedding load
(`libs.kit.shedding`), and an automatic retry from every caller is the storm the bound
exists to stop. The error reaches the calling handler with its `google.rpc.RetryInfo`
intact; a handler that lets it escape passes that status and RetryInfo on to its own
caller (the kit's server pipeline does that), and one whose call is idempotent may wait
the delay RetryInfo names and try once more.

With TLS on (`libs.kit.transport`) each channel is mutual TLS to the target's mesh port,
presenting this service's certificate; with TLS off, a channel to a non-loopback target
is refused rather than send a token in plaintext.
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
from libs.kit.interceptors import KitClientInterceptor, channel_interceptors
from libs.kit.transport import Transport

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
        transport: Transport | None = None,
        service: str = "",
    ) -> None:
        """`service` names the caller, whose certificate a TLS channel presents."""
        self._interceptor = KitClientInterceptor(
            tracer=tracer, service_token=service_token, default_timeout=default_timeout
        )
        self._targets = dict(targets or {})
        self._transport = transport or Transport.from_environment()
        self._service = service
        self._channels: dict[str, grpc.aio.Channel] = {}

    def target_of(self, service: str) -> str:
        configured = self._targets.get(service)
        if configured:
            return configured
        return config.mesh_target(service) if self._transport.tls else config.target(service)

    def channel(self, service: str) -> grpc.aio.Channel:
        channel = self._channels.get(service)
        if channel is None:
            channel = self._transport.service_channel(
                service,
                self.target_of(service),
                options=[("grpc.service_config", RETRY_SERVICE_CONFIG), ("grpc.enable_retries", 1)],
                interceptors=channel_interceptors(self._interceptor),
                as_service=self._service,
            )
            self._channels[service] = channel
        return channel

    def stub(self, service: str, stub_type: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        return stub_type(self.channel(service))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
