"""RecordClick: verify the token, decide whether the click counts, then record it durably.

The decision runs on the event loop from memory (the link and programme cache, the last hour's
visitors, the consent cache); only the write goes to the store, through its group committer,
so one fsync serves every click that arrived meanwhile. What memory cannot know, because another
replica may have counted it, the write decides on the store's clicks, inside the transaction
that records the click: whether this visitor was already counted on the link within the hour,
and whether the link is bursting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from libs.errors import FailedPrecondition, InvalidArgument
from services.affiliate.model.access import user_of_creator
from services.affiliate.model.clicks import DUPLICATE_WINDOW, Click, FilterReason, GivtFilter, RecentVisitors
from services.affiliate.model.commissions import CLICK_BURST, Commission, CommissionKind, CommissionState
from services.affiliate.model.links import TokenClaims, TokenKeys, TrackingLink, verify_token
from services.affiliate.model.programs import Program
from services.affiliate.usecases.catalogue import link_not_found, program_not_found
from services.affiliate.usecases.ports import (
    AffiliateUnit,
    AuditTrail,
    PersonalFields,
    Reads,
    TrackingConsent,
    fingerprint,
)

COUNTRY_FIELD = "affiliate.click_country"
TOKENS_REMEMBERED = 100_000
METHOD = "RecordClick"


@dataclass(frozen=True)
class RecordClick:
    request_id: str
    token: str
    visitor_id: str
    user: str  # users/{user} or ''
    user_agent: str
    ip_hash: str
    client_ip: str
    country_code: str
    purpose_header: str
    click_time: dt.datetime

    def asked(self) -> dict[str, object]:
        return {"token": self.token, "visitor_id": self.visitor_id, "user": self.user,
                "click_time": self.click_time.isoformat()}


@dataclass(frozen=True)
class CapturedClick:
    click: Click
    redirect_url: str


Write = Callable[[Callable[[AffiliateUnit], Click]], Awaitable[Click]]


class LinkDirectory:
    """Links and programmes in memory, filled from the store on a miss; our own writes replace them.

    With `cached=False` every lookup reads the store: where replicas share it (PostgreSQL), a
    programme another replica paused or repriced would otherwise stay stale here for good.
    """

    def __init__(self, reads: Reads, read: Callable[[Callable[[], object]], Awaitable[object]], *,
                 cached: bool = True) -> None:
        self._reads = reads
        self._read = read  # runs a blocking read off the event loop
        self._cached = cached
        self._links: dict[str, TrackingLink] = {}
        self._programs: dict[str, Program] = {}

    async def link(self, name: str) -> TrackingLink | None:
        link = self._links.get(name)
        if link is None:
            found = await self._read(lambda: self._reads.link(name))
            if isinstance(found, TrackingLink):
                link = found
                self.changed_link(link)
        return link

    async def program(self, name: str) -> Program | None:
        program = self._programs.get(name)
        if program is None:
            found = await self._read(lambda: self._reads.program(name))
            if isinstance(found, Program):
                program = found
                self.changed_program(program)
        return program

    def changed_link(self, link: TrackingLink) -> None:
        if self._cached:
            self._links[link.name] = link

    def changed_program(self, program: Program) -> None:
        if self._cached:
            self._programs[program.name] = program


@dataclass(frozen=True)
class ClickPolicy:
    redirect_base_url: str
    click_review_period: dt.timedelta
    burst_limit: int
    burst_window: dt.timedelta


class ClickCapture:
    def __init__(self, *, keys: TokenKeys, givt: GivtFilter, directory: LinkDirectory, consent: TrackingConsent,
                 personal: PersonalFields, pseudonym: Callable[[str], str], policy: ClickPolicy,
                 recent: RecentVisitors | None = None) -> None:
        self._keys = keys
        self._givt = givt
        self._directory = directory
        self._consent = consent
        self._personal = personal
        self._pseudonym = pseudonym
        self._policy = policy
        self.recent = recent or RecentVisitors()
        self._tokens: OrderedDict[str, TokenClaims] = OrderedDict()

    def remember(self, clicks: list[Click]) -> None:
        """The last hour's counted clicks from the store, at start."""
        for click in clicks:
            self.recent.remember(click.link, _visitor_keys(click.visitor_pseudonym, click.visitor_id, click.user),
                                 click.click_time)

    def _verified(self, token: str) -> TokenClaims:
        """A token verified once stays verified: the keys do not change while the process runs."""
        claims = self._tokens.get(token)
        if claims is None:
            claims = verify_token(self._keys, token)
            self._tokens[token] = claims
            if len(self._tokens) > TOKENS_REMEMBERED:
                self._tokens.popitem(last=False)
        return claims

    async def record(self, command: RecordClick, write: Write, audit: AuditTrail) -> CapturedClick:
        claims = self._verified(command.token)
        link = await self._directory.link(claims.link)
        if link is None:
            raise link_not_found(claims.link)
        if (link.program, link.product) != (claims.program, claims.product):
            raise InvalidArgument.for_field("token", "the token does not match its link", reason="TOKEN_INVALID")
        program = await self._directory.program(link.program)
        if program is None:
            raise program_not_found(link.program)
        pseudonym = self._pseudonym(command.client_ip or command.ip_hash) if (command.client_ip or command.ip_hash) else ""
        keys = _visitor_keys(pseudonym, command.visitor_id, command.user)
        reason = await self._reason(command, link, program, keys)
        counted = reason is None
        visitor_id = command.visitor_id or (secrets.token_urlsafe(18) if counted else "")
        if counted:
            keys = _visitor_keys(pseudonym, visitor_id, command.user)
            self.recent.remember(link.name, keys, command.click_time)
        sealed = None
        if counted and command.country_code and command.user:
            try:
                sealed = await self._personal.seal(command.user, COUNTRY_FIELD, command.country_code)
            except FailedPrecondition:  # the user was erased: nothing personal may be stored for them
                sealed = None
        click = Click(link.name, secrets.token_hex(16), counted, reason, visitor_id, command.user, pseudonym, False,
                      0, command.click_time)
        asked = fingerprint(METHOD, command.asked())
        stored = await write(lambda unit: _store_click(unit, command.request_id, asked, click, sealed, link, program,
                                                      self._policy, audit))
        return CapturedClick(stored, self._policy.redirect_base_url + (link.product or link.merchant))

    async def _reason(self, command: RecordClick, link: TrackingLink, program: Program,
                      keys: list[str]) -> FilterReason | None:
        reason = self._givt.reason(user_agent=command.user_agent, purpose_header=command.purpose_header,
                                   client_ip=command.client_ip)
        if reason is not None:
            return reason
        if not program.active:
            return FilterReason.PROGRAM_INACTIVE
        if command.user and command.user.removeprefix("users/") == link.creator_id:
            return FilterReason.SELF_CLICK
        if not command.user:
            return FilterReason.NO_TRACKING_CONSENT  # consent is recorded per signed-in user
        permitted = self._consent.cached(command.user)
        if permitted is None:
            permitted = await self._consent.permits(command.user)
        if not permitted:
            return FilterReason.NO_TRACKING_CONSENT
        if self.recent.seen_within_window(link.name, keys, command.click_time):
            return FilterReason.DUPLICATE_WITHIN_HOUR
        return None


def _as_counted_by_every_replica(unit: AffiliateUnit, click: Click, policy: ClickPolicy) -> Click:
    """A click memory counted, judged again on the store's counted clicks (every replica's), under
    the writer lock: a duplicate within the hour is not counted; past the burst limit it is frozen."""
    if unit.counted_on_link_near(click.link, click.visitor_pseudonym, click.visitor_id, click.user,
                                 click.click_time, DUPLICATE_WINDOW):
        return dataclasses.replace(click, counted=False, filter_reason=FilterReason.DUPLICATE_WITHIN_HOUR)
    earlier = unit.counted_on_link_between(click.link, click.click_time - policy.burst_window, click.click_time)
    return dataclasses.replace(click, burst=earlier + 1 > policy.burst_limit)


def _visitor_keys(pseudonym: str, visitor_id: str, user: str) -> list[str]:
    return [key for key in (f"p:{pseudonym}" if pseudonym else "", f"v:{visitor_id}" if visitor_id else "",
                            f"u:{user}" if user else "") if key]


def _store_click(unit: AffiliateUnit, request_id: str, asked: str, click: Click, sealed: bytes | None,
                 link: TrackingLink, program: Program, policy: ClickPolicy, audit: AuditTrail) -> Click:
    earlier = unit.claim(request_id, METHOD, asked)
    if earlier is not None:
        stored = unit.click(earlier)
        assert stored is not None, "a claimed click request names its click"
        return stored
    if click.counted:
        click = _as_counted_by_every_replica(unit, click, policy)
        sealed = sealed if click.counted else None
    terms = program.terms
    if click.counted and terms.cost_per_click_minor > 0:
        day = click.click_time.replace(hour=0, minute=0, second=0, microsecond=0)
        earned = unit.cpc_earned(link.creator, program.name, day)
        cpc = max(0, min(terms.cost_per_click_minor, terms.daily_click_cap_minor - earned))
        if cpc > 0:
            click = Click(click.link, click.click_id, True, None, click.visitor_id, click.user, click.visitor_pseudonym,
                          click.burst, cpc, click.click_time)
            commission = Commission(
                link.creator, f"cpc-{click.click_id}", CommissionKind.CLICK,
                CommissionState.FROZEN if click.burst else CommissionState.PENDING,
                CLICK_BURST if click.burst else "CLICK_COUNTED", link.name, click.name, "", 0, 0, 0, 0, 0, cpc,
                terms.currency_code, dt.timedelta(0), click.click_time + policy.click_review_period, click.click_time,
                frozen_from=CommissionState.PENDING if click.burst else None)
            unit.save_commission(commission, program.name)
            unit.add_cpc_earned(link.creator, program.name, day, cpc)
            unit.record(audit.event("affiliate.RecordClick", commission.name, subject=user_of_creator(link.creator),
                                    reason=commission.state_reason,
                                    attributes={"kind": "CLICK", "state": commission.state.value,
                                                "amount_minor": str(cpc), "currency_code": terms.currency_code,
                                                "click": click.name}))
    unit.add_click(click, sealed)
    unit.set_result(request_id, click.click_id)
    return click
