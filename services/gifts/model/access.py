"""Who may read what: a user's own records, or an operator's or a service's.

The kit's `AccessPolicy` decides by role; these are the ownership checks on top, which
need the resource the call names.
"""

from __future__ import annotations

from libs.auth.principal import Principal, Role
from libs.errors import PermissionDenied
from services.gifts.model.names import user_name

SERVICES_AND_OPERATORS = frozenset({Role.ADMIN, Role.SERVICE})


def acting(principal: Principal) -> Principal:
    """The user a call acts for: a service acting for a user speaks with the user's age and id."""
    return principal.on_behalf_of or principal


def require_self_or_staff(principal: Principal, user_id: str, *, resource: str) -> None:
    if acting(principal).user_id != user_id and not principal.has_role(*SERVICES_AND_OPERATORS):
        raise PermissionDenied("this belongs to another user", reason="NOT_OWNER",
                               metadata={"owner": user_name(user_id), "resource": resource})


def require_self(principal: Principal, user_id: str, *, field: str, resource: str) -> Principal:
    """The acting user, who must be `user_id`."""
    user = acting(principal)
    if user.user_id != user_id:
        raise PermissionDenied(f"{field} must name the caller", reason="NOT_OWNER",
                               metadata={"field": field, "resource": resource})
    return user
