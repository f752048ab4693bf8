"""Who may call what: bearer-token authentication and per-method role rules.

A call carries `authorization: Bearer <token>`. A service acting for a user adds the
user's own token as `x-limelight-on-behalf-of`; both are verified, and the handler's
principal is the service with the user in `on_behalf_of`. Only a verified service may
delegate: a token granting the `service` role (`Principal.is_service`) and, with mutual
TLS, a client certificate naming the same service. The subject's shape grants nothing.

`access_table` lists the rule of every method a service exposes, from the same policy
the kit enforces, for authorisation-matrix tests and the README's access table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from google.protobuf import descriptor_pool

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


@dataclass(frozen=True)
class MethodAccess:
    """The rule for one method: public, or any valid token, or one of `roles`."""

    method: str
    public: bool
    roles: frozenset[Role]

    @property
    def rule(self) -> str:
        """The rule in words, as the README's access table prints it."""
        if self.public:
            return "public (no token needed)"
        if not self.roles:
            return "any valid token"
        return "one of: " + ", ".join(sorted(self.roles))


def access_table(service_names: Iterable[str], policy: AccessPolicy) -> list[MethodAccess]:
    """The access rule of every method of `service_names` (full proto names), in proto order.

    Read from the generated descriptors, so an RPC nobody built yet (UNIMPLEMENTED) is
    listed with the rule it will be served under.
    """
    pool = descriptor_pool.Default()
    table: list[MethodAccess] = []
    for service_name in service_names:
        for method in pool.FindServiceByName(service_name).methods:
            path = f"/{service_name}/{method.name}"
            table.append(MethodAccess(path, policy.is_public(path), policy.roles.get(path, frozenset())))
    return table


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

    def authenticate(self, metadata: Mapping[str, str | bytes],
                     certified_service: Callable[[], str] | None = None) -> tuple[Principal, str, str] | None:
        """(principal, token, on-behalf-of token) for the call, or None when no token was sent.

        `certified_service`, given when the transport verifies client certificates, names
        the service the peer's certificate proves (or ''); a service token must agree.
        """
        header = metadata.get(AUTHORIZATION_HEADER)
        if header is None:
            return None
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be 'Bearer <token>'", reason="TOKEN_MALFORMED")
        principal = self.principal_for(token)
        if certified_service is not None and Role.SERVICE in principal.roles:
            certificate = certified_service()
            if not principal.service or certificate != principal.service:
                raise Unauthenticated(
                    "a service token is accepted only with that service's client certificate (mesh port)",
                    reason="SERVICE_CERTIFICATE_REQUIRED",
                    metadata={"subject": principal.subject, "certificate_service": certificate},
                )
        on_behalf_of_token = str(metadata.get(ON_BEHALF_OF_HEADER, ""))
        if on_behalf_of_token:
            if not principal.is_service:
                raise PermissionDenied(
                    "only services may act on behalf of a user", reason="DELEGATION_NOT_ALLOWED",
                    metadata={"subject": principal.subject},
                )
            principal = replace(principal, on_behalf_of=self.principal_for(on_behalf_of_token))
        return principal, token, on_behalf_of_token
