"""The audit domain's rules without I/O: the actor rule and counted refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from libs.auth.principal import Principal, Role
from libs.errors import PermissionDenied
from services.compliance.audit.conftest import audit_event
from services.compliance.audit.model import OTHER_PEERS, UnauthenticatedDenials, require_own_events

START = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
GIFTS = Principal("services/gifts", frozenset({Role.SERVICE}), START + dt.timedelta(days=1), service="gifts")


def refused(caller: Principal, **fields: str) -> str:
    with pytest.raises(PermissionDenied) as raised:
        require_own_events(caller, [audit_event(0, action="gifts.SendGift", **fields)])
    return raised.value.reason


def test_a_service_records_its_own_actions_by_whoever_called_it() -> None:
    require_own_events(GIFTS, [audit_event(0, actor=actor, action="gifts.SendGift")
                               for actor in ("users/alice", "services/gifts", "services/payments")])
    require_own_events(GIFTS, [audit_event(1, actor="services/ranking", on_behalf_of="users/ada",
                                           action="gifts.SendGift")])


def test_another_services_action_is_refused_whoever_it_names() -> None:
    for action in ("compliance.QueryEvents", "ingest.PublishVideo", "giftsx.SendGift"):
        with pytest.raises(PermissionDenied) as raised:
            require_own_events(GIFTS, [audit_event(0, actor="services/gifts", action=action)])
        assert raised.value.reason == "AUDIT_ACTION_MISMATCH"
    user_with_service_role = dataclasses.replace(GIFTS, subject="users/mallory", service="")  # as the verifier makes it
    with pytest.raises(PermissionDenied):
        require_own_events(user_with_service_role, [audit_event(0, action="gifts.SendGift")])


def test_a_service_name_without_the_verified_service_identity_appends_nothing() -> None:
    """Issue 9, finding 2: the subject's shape grants nothing; the identity is the token's service role."""
    with_viewer_role_only = dataclasses.replace(GIFTS, roles=frozenset({Role.VIEWER}), service="")
    with_role_but_no_identity = dataclasses.replace(GIFTS, service="")
    for caller in (with_viewer_role_only, with_role_but_no_identity):
        assert refused(caller, actor="services/gifts") == "AUDIT_ACTION_MISMATCH"


def test_on_behalf_of_needs_a_service_actor_and_the_verified_delegation() -> None:
    assert refused(GIFTS, actor="users/bob", on_behalf_of="users/alice") == "AUDIT_ACTOR_MISMATCH"
    acting_for_alice = dataclasses.replace(GIFTS, on_behalf_of=Principal("users/alice", frozenset(), GIFTS.expires_at))
    assert refused(acting_for_alice, actor="services/gifts", on_behalf_of="users/bob") == "AUDIT_ACTOR_MISMATCH"
    require_own_events(acting_for_alice, [audit_event(0, actor="services/gifts", on_behalf_of="users/alice",
                                                      action="gifts.SendGift")])


def test_refusals_are_counted_per_peer_method_and_reason_until_their_window_closes() -> None:
    denials = UnauthenticatedDenials(window=dt.timedelta(seconds=60), max_peers=10)
    for second in range(20):
        denials.count(peer="ipv4:10.0.0.7", method="/a/QueryEvents", reason="TOKEN_MISSING",
                      at=START + dt.timedelta(seconds=second))
    denials.count(peer="ipv4:10.0.0.8", method="/a/QueryEvents", reason="TOKEN_MISSING", at=START)
    denials.count(peer="ipv4:10.0.0.7", method="/a/ExportEvents", reason="TOKEN_EXPIRED", at=START)
    assert denials.due(START + dt.timedelta(seconds=59)) == []
    closed = denials.due(START + dt.timedelta(seconds=60))
    assert sorted((c.peer, c.method, c.reason, c.count) for c in closed) == [
        ("ipv4:10.0.0.7", "/a/ExportEvents", "TOKEN_EXPIRED", 1),
        ("ipv4:10.0.0.7", "/a/QueryEvents", "TOKEN_MISSING", 20),
        ("ipv4:10.0.0.8", "/a/QueryEvents", "TOKEN_MISSING", 1),
    ]
    [flood] = [c for c in closed if c.count == 20]
    assert (flood.first, flood.last) == (START, START + dt.timedelta(seconds=19))
    assert denials.drain() == []


def test_peers_beyond_the_limit_share_one_count() -> None:
    denials = UnauthenticatedDenials(window=dt.timedelta(seconds=60), max_peers=3)
    for host in range(100):
        denials.count(peer=f"ipv4:10.0.1.{host}", method="/a/QueryEvents", reason="TOKEN_MISSING", at=START)
    counted = {c.peer: c.count for c in denials.drain()}
    assert len(counted) == 4 and counted[OTHER_PEERS] == 97
