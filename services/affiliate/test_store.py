"""The use cases over the real store (SQLite in tmp_path, and PostgreSQL), with an injected clock."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from libs.audit.events import AuditEvent, Outcome
from libs.audit.outbox import TracedEvent
from libs.storage.database import IntegrityError, open_database
from services.affiliate.model.commissions import Commission, CommissionKind, CommissionState
from services.affiliate.model.links import TrackingLink
from services.affiliate.model.programs import AttributionModel, Program, ProgramState, ProgramTerms
from services.affiliate.store import MIGRATIONS, AffiliateStore
from services.affiliate.usecases.commissions import SettleCommissions, settle_commissions
from services.affiliate.usecases.ports import AffiliateUnit

T0 = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
PROGRAM = Program("merchants/m", "p", ProgramTerms("P", (), 1000, 0, 0, "EUR", dt.timedelta(days=7),
                                                   AttributionModel.LAST_CLICK, dt.timedelta(days=1),
                                                   ProgramState.ACTIVE), T0, T0)
LINK = TrackingLink("creators/c", "l", PROGRAM.name, "", "code", "v1.k1.x.y", None, T0)


class RecordedAudit:
    def event(self, action: str, resource: str, *, reason: str = "", subject: str = "",
              attributes: Mapping[str, str] | None = None, rejected: bool = False,
              denied: bool = False) -> TracedEvent:
        return TracedEvent(AuditEvent(event_id=str(uuid.uuid4()), actor="services/test", action=action,
                                      resource=resource, outcome=Outcome.SUCCEEDED, reason=reason, event_time=T0,
                                      attributes=dict(attributes or {})))


@pytest.fixture
def store(tmp_path: Path, database_engine: str) -> Iterator[AffiliateStore]:  # noqa: F811 (the imported fixture)
    opened = AffiliateStore.open(tmp_path)
    yield opened
    opened.close()


async def test_settlement_never_runs_past_the_services_clock(store: AffiliateStore) -> None:
    sale = Commission("creators/c", "s1", CommissionKind.SALE, CommissionState.PENDING, "ORDER_ATTRIBUTED", LINK.name,
                      "k", "users/u/orders/o", 1000, 1000, 1000, 0, 1000, 100, "EUR", dt.timedelta(days=1),
                      T0 + dt.timedelta(days=1), T0)

    def seed(unit: AffiliateUnit) -> None:
        unit.add_program(PROGRAM)
        unit.add_link(LINK)
        unit.save_commission(sale, PROGRAM.name)

    await store.run(seed)
    audit = RecordedAudit()
    asked = SettleCommissions(str(uuid.uuid4()), T0 + dt.timedelta(days=30))
    early = await store.run(lambda unit: settle_commissions(asked, unit, audit, T0 + dt.timedelta(hours=12)))
    assert early.settled_count == 0 and store.commission(sale.name).state is CommissionState.PENDING  # type: ignore[union-attr]
    later = SettleCommissions(str(uuid.uuid4()), T0 + dt.timedelta(days=30))
    done = await store.run(lambda unit: settle_commissions(later, unit, audit, T0 + dt.timedelta(days=2)))
    assert done.settled_count == 1 and [t.amount_minor for t in done.totals] == [100]
    replay = await store.run(lambda unit: settle_commissions(later, unit, audit, T0 + dt.timedelta(days=3)))
    assert replay == done, "a retried settlement answers what the first one did"
    assert store.commission(sale.name).state is CommissionState.SETTLED  # type: ignore[union-attr]
    assert len(store.audit_outbox.pending(10)) == 1


def _sale(commission_id: str, order: str) -> Commission:
    return Commission("creators/c", commission_id, CommissionKind.SALE, CommissionState.PENDING, "ORDER_ATTRIBUTED",
                      LINK.name, "k", order, 1000, 1000, 1000, 0, 1000, 100, "EUR", dt.timedelta(days=1), None, T0)


async def test_the_schema_refuses_a_second_sale_commission_for_one_order(store: AffiliateStore) -> None:
    def seed(unit: AffiliateUnit) -> None:
        unit.add_program(PROGRAM)
        unit.add_link(LINK)
        unit.save_commission(_sale("s1", "users/u/orders/o"), PROGRAM.name)

    await store.run(seed)
    with pytest.raises(IntegrityError):
        await store.run(lambda unit: unit.save_commission(_sale("s2", "users/u/orders/o"), PROGRAM.name))
    again = _sale("s1", "users/u/orders/o")  # the same commission saved again is an update, not a second sale
    await store.run(lambda unit: unit.save_commission(again, PROGRAM.name))
    assert [c.commission_id for c in store.commissions("creators/c", None, None, 10)] == ["s1"]


@pytest.mark.parametrize("row", [
    # counted, yet with a filter reason
    "INSERT INTO clicks (click_id, link, counted, filter_reason, visitor_id, clicked_by, visitor_pseudonym, burst,"
    " cpc_earned_minor, click_us) VALUES ('k', 'creators/c/trackingLinks/l', 1, 'BOT', '', '', '', 0, 0, 0)",
    "INSERT INTO payouts (reference, creator, currency_code, amount_minor, commission_count, create_us)"
    " VALUES ('r', 'creators/c', 'EUR', -5, 1, 0)",
    "INSERT INTO cpc_days (creator, program, day_us, earned_minor) VALUES ('creators/c', 'p', 0, -1)",
])
def test_the_schema_refuses_rows_outside_the_invariants(tmp_path: Path, database_engine: str, row: str) -> None:  # noqa: F811
    database = open_database("affiliate", MIGRATIONS, root=tmp_path)
    try:
        with database.transaction() as tx:
            tx.execute("INSERT INTO tracking_links (name, creator, link_id, program, product, short_code, token,"
                       " create_us) VALUES ('creators/c/trackingLinks/l', 'creators/c', 'l', 'p', '', 's', 't', 0)")
        with pytest.raises(IntegrityError), database.transaction() as tx:
            tx.execute(row)
    finally:
        database.close()
