"""Who may read what: a user's own records, or an operator's or a service's.

The kit's `AccessPolicy` decides by role; these are the ownership checks on top, which
need the resource the call names.
"""

from __future__ import annotations

from libs.auth.principal import Principal, Role
from libs.errors import PermissionDenied
from services.gifts.model.names import user_name

SERVICES_AND_OPERATORS = frozenset({Role.ADMIN, Role.SERVICE})


class NotOwner(PermissionDenied):
    """The call names another user's resource; `resource_name` is the one it named (for the
    denial's audit event, not for the caller, who sent it)."""

    def __init__(self, message: str, *, resource_name: str, metadata: dict[str, str]) -> None:
        super().__init__(message, reason="NOT_OWNER", metadata=metadata)
        self.resource_name = resource_name


def acting(principal: Principal) -> Principal:
    """The user a call acts for: a service acting for a user speaks with the user's age and id."""
    return principal.on_behalf_of or principal


def require_self_or_staff(principal: Principal, user_id: str, *, resource: str) -> None:
    if acting(principal).user_id != user_id and not principal.has_role(*SERVICES_AND_OPERATORS):
        raise NotOwner("this belongs to another user", resource_name=resource,
                       metadata={"owner": user_name(user_id)})


def require_self(principal: Principal, user_id: str, *, field: str, resource: str) -> Principal:
    """The acting user, who must be `user_id`."""
    user = acting(principal)
    if user.user_id != user_id:
        raise NotOwner(f"{field} must name the caller", resource_name=resource, metadata={"field": field})
    return user
