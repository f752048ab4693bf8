"""What a handler may ask about the call it is serving, set by the kit interceptor.

Values travel in `contextvars`, as in grpc's async interceptor examples, so handlers and
the clients they call need no extra parameters.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from libs.auth.principal import Principal
from libs.errors import Unauthenticated


@dataclass(frozen=True)
class CallIdentity:
    """The verified caller, and the raw tokens to forward when calling onward."""

    principal: Principal
    token: str
    on_behalf_of_token: str = ""

    @property
    def user_token(self) -> str:
        """The token of the end user this call serves, if any (forwarded as on-behalf-of)."""
        if self.on_behalf_of_token:
            return self.on_behalf_of_token
        return "" if self.principal.is_service else self.token


_identity: ContextVar[CallIdentity | None] = ContextVar("limelight_call_identity", default=None)
_peer: ContextVar[str] = ContextVar("limelight_call_peer", default="")


def current_identity() -> CallIdentity | None:
    return _identity.get()


def current_principal() -> Principal:
    """The authenticated caller; raises UNAUTHENTICATED on a public method with no token."""
    identity = _identity.get()
    if identity is None:
        raise Unauthenticated("this call needs a bearer token", reason="TOKEN_MISSING")
    return identity.principal


def set_identity(identity: CallIdentity | None) -> object:
    return _identity.set(identity)


def current_peer() -> str:
    """The refused caller's address as gRPC names it (`ipv4:10.0.0.7:51234`); set for `on_denied` hooks."""
    return _peer.get()


def set_peer(peer: str) -> None:
    _peer.set(peer)


def reset_identity(token: object) -> None:
    _identity.reset(token)  # type: ignore[arg-type]
