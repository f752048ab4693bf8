"""What the use cases need from the outside, declared here and satisfied by the store and the adapters.

Writes are units of work: a function of one `AffiliateUnit`, run on the store's group committer
(one transaction per unit, audit events written in it). Reads go around the committer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from libs.errors import AlreadyExists
from services.affiliate.model.clicks import Click
from services.affiliate.model.commissions import CandidateClick, Commission, CommissionState, NonAttribution
from services.affiliate.model.links import TrackingLink
from services.affiliate.model.programs import Program, ProgramState


@dataclass(frozen=True)
class Attribution:
    """Why an order was or was not attributed: recorded once per order."""

    order: str
    merchant: str
    buyer: str
    visitor_id: str
    attributed: bool
    reason: NonAttribution | None
    commission: str  # its name, '' when not attributed
    click: str
    visitor_pseudonym: str
    order_time: dt.datetime


@dataclass(frozen=True)
class Total:
    state: CommissionState
    currency_code: str
    amount_minor: int


@dataclass(frozen=True)
class PayoutRecord:
    reference: str
    creator: str
    currency_code: str
    amount_minor: int
    commission_count: int
    create_time: dt.datetime


def fingerprint(method: str, asked: Mapping[str, object]) -> str:
    """What a request asked, so that a reused request id with other parameters is told apart.

    Keys are the command's own field names and values are ids, times and numbers, whose `str`
    is unambiguous once separated by control characters no id or name may contain."""
    text = "\x1f".join([method, *(f"{key}\x1e{asked[key]}" for key in sorted(asked))])
    return hashlib.sha256(text.encode()).hexdigest()


def request_id_reused(request_id: str, method: str) -> AlreadyExists:
    return AlreadyExists(f"request_id {request_id} was used for a different {method} request",
                         reason="REQUEST_ID_REUSED", metadata={"request_id": request_id, "method": method})


class AffiliateUnit(Protocol):
    """One transaction's view of the store."""

    def claim(self, request_id: str, method: str, fingerprint: str) -> str | None:
        """None for a new request (claimed now); the first request's result for a retry; raises
        AlreadyExists REQUEST_ID_REUSED for the same id with another fingerprint."""
        ...

    def set_result(self, request_id: str, result: str) -> None: ...

    def record(self, event: object) -> None:
        """Writes an audit event (from `AuditTrail`) in this transaction."""
        ...

    def program(self, name: str) -> Program | None: ...
    def add_program(self, program: Program) -> None: ...
    def update_program(self, program: Program) -> None: ...

    def link(self, name: str) -> TrackingLink | None: ...
    def add_link(self, link: TrackingLink) -> None: ...
    def set_link_rate(self, name: str, rate_bps: int | None) -> None: ...

    def click(self, click_id: str) -> Click | None: ...
    def add_click(self, click: Click, country_sealed: bytes | None) -> None: ...
    def counted_on_link_near(self, link: str, pseudonym: str, visitor_id: str, user: str, at: dt.datetime,
                             window: dt.timedelta) -> bool:
        """Whether a counted click on `link` within `window` either side of `at` shares one of the
        visitor's keys (an empty key matches nothing)."""
        ...
    def counted_on_link_between(self, link: str, since: dt.datetime, until: dt.datetime) -> int:
        """Counted clicks on `link` from `since` to `until`, both included."""
        ...
    def cpc_earned(self, creator: str, program: str, day: dt.datetime) -> int: ...
    def add_cpc_earned(self, creator: str, program: str, day: dt.datetime, amount_minor: int) -> None: ...
    def candidate_clicks(self, visitor_id: str, merchant: str, order_time: dt.datetime) -> list[CandidateClick]: ...
    def orders_from_pseudonym(self, pseudonym: str, since: dt.datetime) -> int: ...

    def attribution(self, order: str) -> Attribution | None: ...
    def add_attribution(self, attribution: Attribution) -> None: ...

    def commission(self, name: str) -> Commission | None: ...
    def save_commission(self, commission: Commission, program: str) -> None:
        """Inserts or replaces the commission (its program kept for the CPC cap)."""
        ...

    def settleable(self, before: dt.datetime) -> list[Commission]: ...
    def payable(self, creator: str) -> list[Commission]: ...
    def add_payout(self, payout: PayoutRecord) -> None: ...


class AuditTrail(Protocol):
    """Builds audit events; made on the request's task (caller, trace), used inside units."""

    def event(self, action: str, resource: str, *, reason: str = "", subject: str = "",
              attributes: Mapping[str, str] | None = None, rejected: bool = False,
              denied: bool = False) -> object: ...


class TrackingConsent(Protocol):
    """Affiliate-tracking consent: compliance's CheckConsent through the local cache; no answer is no."""

    def cached(self, user: str) -> bool | None: ...

    async def permits(self, user: str) -> bool: ...


class PersonalFields(Protocol):
    """libs.privacy's PersonalData: fields sealed under their subject's key."""

    async def seal(self, subject: str, field_name: str, plaintext: str) -> bytes: ...

    async def open(self, subject: str, field_name: str, sealed: bytes | None) -> str | None: ...


class DisclosureReview(Protocol):
    """Compliance's disclosure engine, for content that carries a link; returns its answer as is."""

    async def review(self, link: TrackingLink, content: str, caption: str, hashtags: Sequence[str], brand_name: str,
                     label_text: str, label_placement: int) -> object: ...


class Reads(Protocol):
    """The read side (around the committer)."""

    def program(self, name: str) -> Program | None: ...
    def programs(self, merchant: str | None, state: ProgramState | None, after: tuple[int, str] | None,
                 limit: int) -> list[Program]: ...
    def link(self, name: str) -> TrackingLink | None: ...
    def links(self, creator: str, program: str, after: tuple[int, str] | None, limit: int) -> list[TrackingLink]: ...
    def counted_clicks(self, link: str) -> int: ...
    def commission(self, name: str) -> Commission | None: ...
    def commissions(self, creator: str, state: CommissionState | None, after: tuple[int, str] | None,
                    limit: int) -> list[Commission]: ...
    def totals(self, creator: str, since: dt.datetime | None, until: dt.datetime | None) -> list[Total]: ...
    def recent_counted_clicks(self, since: dt.datetime) -> list[Click]: ...
