"""The ad repository on a real database (SQLite and PostgreSQL): idempotency, reach, search, and the retention sweep on a moved clock."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from libs.errors import AlreadyExists, InvalidArgument, NotFound
from services.compliance.ads import usecases
from services.compliance.ads.conftest import MovableClock
from services.compliance.ads.model import AdDraft, AdKind, AdSearch, Displays, Targeting
from services.compliance.ads.store import AdRepositoryStore


def draft(advertiser: str = "Glowlab", **fields: object) -> AdDraft:
    values: dict[str, object] = {
        "kind": AdKind.COMMERCIAL_CONTENT, "content": "creators/ada/videos/v1",
        "summary": "Morning routine with the new serum", "advertiser": advertiser, "payer": "",
        "targeting": Targeting(member_states=("DE", "AT"), min_age=18)}
    return AdDraft(**{**values, **fields})  # type: ignore[arg-type]


def test_a_retried_registration_returns_the_first_entry_and_a_reused_id_is_refused(
    store: AdRepositoryStore, clock: MovableClock
) -> None:
    request_id = str(uuid.uuid4())
    first = usecases.register_ad(store, draft(), request_id, clock)
    clock.advance(dt.timedelta(minutes=1))
    assert usecases.register_ad(store, draft(), request_id, clock) == first
    with pytest.raises(AlreadyExists) as raised:
        usecases.register_ad(store, draft(advertiser="Other"), request_id, clock)
    assert raised.value.reason == "REQUEST_ID_REUSED"


def test_impressions_add_up_per_member_state_once_per_batch(store: AdRepositoryStore, clock: MovableClock) -> None:
    ad = usecases.register_ad(store, draft(), str(uuid.uuid4()), clock)
    day = clock.now.date()
    batch = [Displays("DE", day, 100), Displays("AT", day, 5), Displays("DE", day - dt.timedelta(days=1), 50)]
    batch_id = str(uuid.uuid4())
    usecases.record_impressions(store, ad.name, batch_id, batch, clock)
    again = usecases.record_impressions(store, ad.name, batch_id, batch, clock)
    assert dict(again.reach) == {"AT": 5, "DE": 150} and again.total_reach == 155
    assert again.first_display == dt.datetime.combine(day - dt.timedelta(days=1), dt.time(), dt.UTC)
    with pytest.raises(AlreadyExists):
        usecases.record_impressions(store, ad.name, batch_id, batch[:1], clock)
    with pytest.raises(InvalidArgument):
        usecases.record_impressions(store, ad.name, str(uuid.uuid4()), [Displays("DE", day + dt.timedelta(days=1), 1)],
                                    clock)
    with pytest.raises(NotFound):
        usecases.record_impressions(store, "ads/unknown", str(uuid.uuid4()), batch, clock)


def test_the_sweep_deletes_an_entry_one_year_after_its_last_display_and_not_before(
    store: AdRepositoryStore, clock: MovableClock
) -> None:
    shown = usecases.register_ad(store, draft(), str(uuid.uuid4()), clock)
    never_shown = usecases.register_ad(store, draft(advertiser="Quiet"), str(uuid.uuid4()), clock)
    clock.advance(dt.timedelta(days=100))
    shown = usecases.record_impressions(store, shown.name, str(uuid.uuid4()), [Displays("DE", clock.now.date(), 3)],
                                        clock)
    assert shown.retain_until > clock.now + dt.timedelta(days=364)

    clock.now = never_shown.retain_until + dt.timedelta(seconds=1)
    assert usecases.sweep_expired(store, clock) == 1
    assert usecases.get_ad(store, shown.name, clock).total_reach == 3
    with pytest.raises(NotFound):
        usecases.get_ad(store, never_shown.name, clock)

    clock.now = shown.retain_until - dt.timedelta(seconds=1)
    assert usecases.sweep_expired(store, clock) == 0
    clock.now = shown.retain_until + dt.timedelta(seconds=1)
    with pytest.raises(NotFound):  # past retention it is gone for readers even before the sweep runs
        usecases.get_ad(store, shown.name, clock)
    assert usecases.sweep_expired(store, clock) == 1


def test_search_filters_by_advertiser_payer_text_country_kind_and_period_and_pages(
    store: AdRepositoryStore, clock: MovableClock
) -> None:
    names = {}
    for number, (advertiser, payer, state) in enumerate(
            [("Glowlab", "", "DE"), ("Runfast", "Sport Agency", "FR"), ("Glowlab Kids", "", "DE"), ("Luma", "", "IT")]):
        ad = usecases.register_ad(store, draft(advertiser, payer=payer, summary=f"spot {number} {advertiser}"),
                                  str(uuid.uuid4()), clock)
        usecases.record_impressions(store, ad.name, str(uuid.uuid4()), [Displays(state, clock.now.date(), 10)], clock)
        names[advertiser] = ad.name
        clock.advance(dt.timedelta(days=1))

    def found(**search: object) -> list[str]:
        page = usecases.search_ads(store, AdSearch(**search), 0, "", clock)  # type: ignore[arg-type]
        return [ad.draft.advertiser for ad in page.ads]

    assert found() == ["Luma", "Glowlab Kids", "Runfast", "Glowlab"]  # most recently shown first
    assert found(advertiser="glowlab") == ["Glowlab Kids", "Glowlab"]
    assert found(advertiser="agency") == ["Runfast"] and found(payer="sport") == ["Runfast"]
    assert found(text="spot 1") == ["Runfast"] and found(member_state="DE") == ["Glowlab Kids", "Glowlab"]
    assert found(kind=AdKind.PAID_AD) == []
    day_two = dt.datetime(2026, 3, 11, tzinfo=dt.UTC)
    assert found(start=day_two, end=day_two + dt.timedelta(days=1)) == ["Runfast"]

    seen, token = [], ""
    while True:
        page = usecases.search_ads(store, AdSearch(), 1, token, clock)
        seen += [ad.draft.advertiser for ad in page.ads]
        token = page.next_page_token
        if not token:
            break
    assert seen == found()
    first = usecases.search_ads(store, AdSearch(), 1, "", clock)
    with pytest.raises(InvalidArgument) as raised:
        usecases.search_ads(store, AdSearch(advertiser="luma"), 1, first.next_page_token, clock)
    assert raised.value.reason == "PAGE_TOKEN_INVALID"
