"""Bearer tokens: Ed25519-signed JWTs (EdDSA) carrying who the caller is.

Claims: `sub` (`users/…` or `services/…`), `roles`, `birthdate` (ISO date) or
`age_bracket`, `country` (ISO 3166-1 alpha-2), `exp`, `iat`, `iss`, `aud`.

A token makes its bearer a service (`Principal.service`) only when it grants the
`service` role to a `services/{name}` subject; the subject's shape alone grants nothing.
With mutual TLS the kit further requires the client certificate to name that service.

In a local deployment every process shares the platform key under the data directory:
the CLI mints dev tokens with it and services mint their own service identity with it.
A production deployment gives each service its own key and the verifiers a key set;
`TokenVerifier` already takes the public key alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from libs.auth.keys import load_or_create_private_key
from libs.auth.principal import AgeBracket, Principal, Role
from libs.errors import Unauthenticated
from libs.storage.paths import data_dir

ISSUER = "limelight"
AUDIENCE = "limelight"
_ALGORITHM = "EdDSA"


def platform_key_path(root: Path | None = None) -> Path:
    return (root or data_dir()) / "keys" / "platform-dev-ed25519.pem"


def platform_signing_key(root: Path | None = None) -> Ed25519PrivateKey:
    return load_or_create_private_key(platform_key_path(root))


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    roles: frozenset[Role]
    birth_date: dt.date | None = None
    age_bracket: AgeBracket = AgeBracket.UNKNOWN
    country: str = ""


def mint_token(key: Ed25519PrivateKey, claims: TokenClaims, *, ttl: dt.timedelta,
               now: dt.datetime | None = None) -> str:
    issued = now or dt.datetime.now(dt.UTC)
    payload: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": claims.subject,
        "roles": sorted(role.value for role in claims.roles),
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "age_bracket": claims.age_bracket.value,
    }
    if claims.birth_date is not None:
        payload["birthdate"] = claims.birth_date.isoformat()
    if claims.country:
        payload["country"] = claims.country
    return jwt.encode(payload, key, algorithm=_ALGORITHM)


class TokenVerifier:
    """Checks signature, expiry, issuer and audience, and turns the claims into a `Principal`."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._public_key = public_key

    def verify(self, token: str) -> Principal:
        try:
            payload = jwt.decode(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iat"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("token expired", reason="TOKEN_EXPIRED") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}", reason="TOKEN_INVALID") from error
        return _principal_from(payload)


def _principal_from(payload: dict[str, object]) -> Principal:
    subject = str(payload["sub"])
    if not subject.startswith(("users/", "services/")) or subject.count("/") != 1:
        raise Unauthenticated("token subject must be users/{id} or services/{id}", reason="TOKEN_INVALID")
    granted = payload.get("roles", [])
    if not isinstance(granted, list):
        raise Unauthenticated("token roles must be a list", reason="TOKEN_INVALID")
    try:
        roles = frozenset(Role(str(role)) for role in granted)
        birth_date = dt.date.fromisoformat(str(payload["birthdate"])) if "birthdate" in payload else None
        bracket = AgeBracket(str(payload.get("age_bracket", AgeBracket.UNKNOWN.value)))
    except ValueError as error:
        raise Unauthenticated(f"invalid token claims: {error}", reason="TOKEN_INVALID") from error
    # The issuer's grant of the service role is what makes a service, and the identity it
    # vouches for is the service subject it signed. A `services/` subject without the role
    # is no service; the role on a user subject grants the role-gated methods but no
    # service identity (no delegation, and with mutual TLS no certificate can match it).
    service = subject.removeprefix("services/") if Role.SERVICE in roles and subject.startswith("services/") else ""
    return Principal(
        subject=subject,
        roles=roles,
        expires_at=dt.datetime.fromtimestamp(int(str(payload["exp"])), dt.UTC),
        birth_date=birth_date,
        age_bracket=bracket,
        country=str(payload.get("country", "")),
        service=service,
    )
