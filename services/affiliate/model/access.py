"""Who may act on which creator's or merchant's resources: decided on verified roles and ids."""

from __future__ import annotations

from dataclasses import dataclass

from libs.errors import PermissionDenied


@dataclass(frozen=True)
class Caller:
    """The verified caller: their user id ('' for a service) and what their roles allow."""

    user_id: str
    is_service: bool = False
    is_admin: bool = False
    is_officer: bool = False
    is_creator: bool = False
    is_merchant: bool = False

    @property
    def staff(self) -> bool:
        return self.is_service or self.is_admin


class NotOwner(PermissionDenied):
    default_reason = "NOT_RESOURCE_OWNER"

    def __init__(self, resource_name: str) -> None:
        super().__init__(f"the caller may not act on {resource_name}", metadata={"resource": resource_name})
        self.resource_name = resource_name


def require_creator(caller: Caller, creator: str, resource: str, *, officers: bool = False) -> None:
    """`creators/{id}`'s own resources: the creator, staff, and (for reading money) officers."""
    if caller.staff or (officers and caller.is_officer):
        return
    if not (caller.is_creator and creator == f"creators/{caller.user_id}"):
        raise NotOwner(resource)


def require_merchant(caller: Caller, merchant: str, resource: str) -> None:
    if caller.is_admin:
        return
    if not (caller.is_merchant and merchant == f"merchants/{caller.user_id}"):
        raise NotOwner(resource)


def require_creator_in_person(caller: Caller, creator: str, resource: str) -> None:
    """Only the creator themself (making links, submitting their content)."""
    if not (caller.is_creator and creator == f"creators/{caller.user_id}"):
        raise NotOwner(resource)


def user_of_creator(creator: str) -> str:
    """`creators/{id}` acts as `users/{id}`: one person, one opaque id."""
    return f"users/{creator.removeprefix('creators/')}"
