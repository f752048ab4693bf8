"""Going LIVE, ending a LIVE, and the operator-set facts that decide who may."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol

from libs.auth.principal import Role
from libs.errors import NotFound, PermissionDenied
from libs.timestamps import duration_us
from services.gifts.model.audit import AuditOutbox, Outcome
from services.gifts.model.eligibility import (
    AccountFacts,
    EligibilityFacts,
    gifts_barred_reason,
    require_live_eligible,
)
from services.gifts.model.idempotency import Parameters, RequestLog, run_once
from services.gifts.model.ledger import Account, Purpose
from services.gifts.model.live import EndReason, LiveSession, LiveSessions, LiveState
from services.gifts.model.names import UNKNOWN, live_name, standing_name
from services.gifts.usecases.commands import EndLive, StartLive, UpdateAccountFacts
from services.gifts.usecases.context import Context, audit, require_role, user_of


class AccountOpening(Protocol):
    def open_account(self, account: Account, now: dt.datetime) -> None: ...


class StartLiveUnit(RequestLog, LiveSessions, EligibilityFacts, AccountOpening, AuditOutbox, Protocol):
    """What StartLive touches."""


class EndLiveUnit(LiveSessions, AuditOutbox, Protocol):
    """What EndLive touches."""


class AccountFactsRegistry(EligibilityFacts, Protocol):
    def put_account_facts(self, facts: AccountFacts, *, updated_by: str, now: dt.datetime) -> None: ...


class UpdateAccountFactsUnit(AccountFactsRegistry, AuditOutbox, Protocol):
    """What UpdateAccountStanding touches."""


def start_live(context: Context, uow: StartLiveUnit, command: StartLive) -> LiveSession:
    now = context.now
    host = user_of(command.actor)
    policy = context.config.live
    duration = min(command.max_duration or policy.max_duration, policy.max_duration)
    parameters: Parameters = {"title": command.title_fingerprint, "max_duration_us": duration_us(duration)}

    def apply() -> LiveSession:
        facts = uow.account_facts(host)
        require_live_eligible(command.actor, facts, min_followers=policy.min_followers, today=context.today)
        end_if_overdue(uow, uow.open_live_of(host), now)
        session = LiveSession(live_id=context.new_id(), host=host, sealed_title=command.sealed_title, started_at=now,
                              deadline=now + duration, gifts_barred_reason=gifts_barred_reason(facts))
        uow.insert_live(session)
        # Diamonds land on hold here; opening it now keeps SendGift from having to.
        uow.open_account(Account.of_user(host, Purpose.DIAMONDS_ON_HOLD), now)
        audit(uow, context, command, Outcome.APPLIED, session.name,
              details={"gifts_barred_reason": session.gifts_barred_reason})
        return session

    return run_once(uow, request_id=command.request_id, operation="StartLive", caller=command.actor.subject,
                    parameters=parameters, now=now, result_type=LiveSession, apply=apply)


def end_live(context: Context, uow: EndLiveUnit, command: EndLive) -> LiveSession:
    now = context.now
    session = uow.live(command.live_id)
    if session is None:
        name = live_name(UNKNOWN, command.live_id)
        raise NotFound(f"no LIVE session {name}", resource_name=name, reason="LIVE_NOT_FOUND")
    admin = command.actor.has_role(Role.ADMIN)
    if session.host != command.actor.user_id and not admin:
        raise PermissionDenied("only the host can end a LIVE", reason="NOT_LIVE_HOST")
    if session.state_at(now) is LiveState.LIVE:
        reason = (EndReason.ENDED_BY_CREATOR if session.host == command.actor.user_id
                  else EndReason.STOPPED_BY_PLATFORM)
        uow.end_live(session.live_id, now, reason)
        audit(uow, context, command, Outcome.APPLIED, session.name, reason=reason)
    else:
        end_if_overdue(uow, session, now)
    ended = uow.live(session.live_id)
    assert ended is not None
    return ended


def end_if_overdue(sessions: LiveSessions, session: LiveSession | None, now: dt.datetime) -> bool:
    """Write down the end of a session whose deadline passed (it is ENDED from then on anyway)."""
    if session is None or session.ended_at is not None or now < session.deadline:
        return False
    return sessions.end_live(session.live_id, session.deadline, EndReason.MAX_DURATION_REACHED)


def update_account_facts(context: Context, uow: UpdateAccountFactsUnit, command: UpdateAccountFacts) -> AccountFacts:
    require_role(command.actor, Role.ADMIN)
    facts = dataclasses.replace(uow.account_facts(command.user_id), **command.changes)
    uow.put_account_facts(facts, updated_by=command.actor.subject, now=context.now)
    audit(uow, context, command, Outcome.APPLIED, standing_name(facts.user_id), details={
        "follower_count": str(facts.follower_count), "good_standing": str(facts.good_standing),
        "restriction_reason": facts.restriction_reason, "category": facts.category,
        "identity_verified": str(facts.identity_verified),
    })
    return facts
