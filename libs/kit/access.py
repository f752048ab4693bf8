"""Who may call what: bearer-token authentication and per-method role rules.

A call carries `authorization: Bearer <token>`. A service acting for a user adds the
user's own token as `x-limelight-on-behalf-of`; both are verified, and the handler's
principal is the service with the user in `on_behalf_of`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from libs.auth.principal import Principal, Role
from libs.auth.tokens import TokenVerifier
from libs.clock import Clock, utc_now
from libs.errors import PermissionDenied, Unauthenticated

AUTHORIZATION_HEADER = "authorization"
ON_BEHALF_OF_HEADER = "x-limelight-on-behalf-of"

# Standard infrastructure services answer anyone, as every gRPC client expects.
INFRASTRUCTURE_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class AccessPolicy:
    """Per-method rules, keyed by full method path (`/limelight.gifts.v1.GiftsService/SendGift`).

    A method not listed needs any valid token. `public` methods need none (a token, if
    sent, is still verified). `roles` lists the roles of which the caller needs one.
    """

    public: frozenset[str] = frozenset()
    roles: Mapping[str, frozenset[Role]] = field(default_factory=dict)

    def is_public(self, method: str) -> bool:
        return method in self.public or method.startswith(INFRASTRUCTURE_PREFIXES)

    def authorize(self, method: str, principal: Principal) -> None:
        allowed = self.roles.get(method)
        if allowed and not principal.has_role(*allowed):
            raise PermissionDenied(
                f"{method.rsplit('/', 1)[-1]} needs one of the roles: {', '.join(sorted(allowed))}",
                reason="ROLE_REQUIRED",
                metadata={"method": method, "required_roles": ",".join(sorted(allowed)), "subject": principal.subject},
            )


def method_paths(service_full_name: str, rules: Mapping[str, frozenset[Role]]) -> dict[str, frozenset[Role]]:
    """Expand `{"SendGift": roles}` into full method paths of one service."""
    return {f"/{service_full_name}/{method}": roles for method, roles in rules.items()}


class Authenticator:
    """Verifies bearer tokens, remembering recent verdicts.

    Signature checks cost more than a small RPC; a token is immutable, so a verified one
    is cached until it expires (bounded LRU).
    """

    def __init__(self, verifier: TokenVerifier, *, cache_size: int = 4096,
                 clock: Clock = utc_now) -> None:
        self._verifier = verifier
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    def principal_for(self, token: str) -> Principal:
        principal = self._cache.get(token)
        if principal is None:
            principal = self._verifier.verify(token)
            self._cache[token] = principal
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        elif principal.expires_at <= self._clock():
            del self._cache[token]
            raise Unauthenticated("token expired", reason="TOKEN_EXPIRED")
        return principal

    def authenticate(self, metadata: Mapping[str, str]) -> tuple[Principal, str, str] | None:
        """(principal, token, on-behalf-of token) for the call, or None when no token was sent."""
        header = metadata.get(AUTHORIZATION_HEADER)
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be 'Bearer <token>'", reason="TOKEN_MALFORMED")
        principal = self.principal_for(token)
        on_behalf_of_token = metadata.get(ON_BEHALF_OF_HEADER, "")
        if on_behalf_of_token:
            if not principal.is_service:
                raise PermissionDenied(
                    "only services may act on behalf of a user", reason="DELEGATION_NOT_ALLOWED",
                    metadata={"subject": principal.subject},
                )
            principal = replace(principal, on_behalf_of=self.principal_for(on_behalf_of_token))
        return principal, token, on_behalf_of_token
