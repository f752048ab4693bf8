"""Export and erasure of what affiliate holds about a visitor, on the real servers."""

from __future__ import annotations

from services.affiliate.conftest import Affiliate, fresh
from services.affiliate.usecases import subject_data


async def test_a_visitors_export_shows_their_clicks_and_erasure_blanks_their_identifiers(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant)
    link = await affiliate.link(fresh("c"), program)
    buyer = fresh("u")
    await affiliate.grant_tracking(buyer)
    click = await affiliate.click(link.token, user=buyer)
    await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 100)])
    backend = affiliate.service.backend
    user = f"users/{buyer}"
    exported = await subject_data.export(backend.store, backend.personal, user)
    assert [(c["country"], c["visitor_id"], c["counted"]) for c in exported["clicks"]] == [("DE", click.visitor_id, True)]
    assert exported["orders"][0]["attributed"] is True
    erased, kept = await subject_data.erase(backend.store, backend.call_audit(), user)
    assert erased == 1 and "§ 257 HGB" in kept
    after = await subject_data.export(backend.store, backend.personal, user)
    assert [(c["country"], c["visitor_id"], c["visitor_pseudonym"]) for c in after["clicks"]] == [("", "", "")]
    assert after["orders"][0]["visitor_id"] == ""
