"""What affiliate holds about one person, for their access request, and their erasure step.

Served as the shared `limelight.privacy.v1.SubjectDataService` through `servicer.AffiliateSubjectData`.
"""

from __future__ import annotations

from typing import Protocol

from libs.privacy.subject_data import Erasure, RetentionException
from libs.timestamps import epoch_us
from services.affiliate.model.clicks import Click
from services.affiliate.usecases.clicks import COUNTRY_FIELD
from services.affiliate.usecases.ports import Attribution, AuditTrail, PersonalFields

FINANCIAL_RECORDS = RetentionException(
    "commissions and payouts (amounts, dates, opaque creator and order names)",
    "§ 257 HGB / § 147 AO: commercial and tax records, 10 years")
CLICK_COUNTS = RetentionException(
    "clicks and orders' attribution decisions without the visitor's identifiers (link, time, reason)",
    "Art. 17(3)(b) GDPR with § 257 HGB: the basis of commissions paid")
KEPT = (FINANCIAL_RECORDS, CLICK_COUNTS)


class SubjectRecords(Protocol):
    def clicks_of_user(self, user: str) -> list[tuple[Click, bytes | None]]: ...
    def attributions_of_buyer(self, buyer: str) -> list[Attribution]: ...
    async def erase_visitor_data(self, user: str, event: object) -> int: ...


async def export(records: SubjectRecords, personal: PersonalFields, user: str) -> dict[str, list[dict[str, object]]]:
    """The person's clicks (with their country, opened) and their orders' attribution decisions."""
    clicks = []
    for click, sealed in records.clicks_of_user(user):
        clicks.append({"click": click.name, "time_us": epoch_us(click.click_time), "counted": click.counted,
                       "filter_reason": click.filter_reason.value if click.filter_reason else "",
                       "visitor_id": click.visitor_id, "visitor_pseudonym": click.visitor_pseudonym,
                       "country": await personal.open(user, COUNTRY_FIELD, sealed) or ""})
    orders: list[dict[str, object]] = [
        {"order": a.order, "merchant": a.merchant, "attributed": a.attributed,
         "reason": a.reason.value if a.reason else "", "commission": a.commission, "click": a.click,
         "visitor_id": a.visitor_id} for a in records.attributions_of_buyer(user)]
    return {"clicks": clicks, "orders": orders}


async def erase(records: SubjectRecords, audit: AuditTrail, user: str) -> Erasure:
    """Blanks the person's visitor identifiers (the sealed country goes with their key); says what stays."""
    erased = await records.erase_visitor_data(
        user, audit.event("affiliate.EraseSubjectData", user, subject=user, attributes={"kept": "financial records"}))
    return Erasure(f"visitor id and address pseudonym blanked on {erased} clicks and the person's orders;"
                   " countries unreadable with the data key", KEPT)
