"""What the shop keeps about people, why, and for how long (GDPR Art. 30): its record of processing.

Buyers' shipping details (the address reference and the recipient's name) are sealed under the
buyer's data key (`libs.privacy`), so an erasure shreds them; the orders themselves stay, by law,
as commercial and tax records: amounts, products, dates and the pseudonymous buyer id.
"""

from __future__ import annotations

from libs.privacy.data_map import DataMap, NotPersonal, PersonalField, ProcessingActivity
from services.shop.usecases.subject_data import CONSENTS_KEPT, ORDERS_KEPT

# What an erasure keeps, and the law that keeps it: the same words the erasure step answers.
ORDER_RETENTION = ORDERS_KEPT[1]

DATA_MAP = DataMap(
    service="services/shop",
    activities=(
        ProcessingActivity(
            activity_id="shop.orders",
            purpose="Selling products: checkout, payment, shipping, cancellations and refunds",
            legal_basis="Art. 6(1)(b) GDPR (performance of the contract); Art. 6(1)(c) GDPR (commercial and tax"
                        " record keeping)",
            subject_categories=("buyers",),
            data_categories=("account identifiers", "order contents and amounts", "shipping address reference",
                             "recipient name", "payment references"),
            recipients=("payment providers (processors)", "merchants (the orders to them)",
                        "affiliate attribution (pseudonymous visitor id, order amounts)"),
            retention="orders and payments 10 years (§ 257 HGB, § 147 AO); shipping details until erasure",
        ),
        ProcessingActivity(
            activity_id="shop.minors",
            purpose="Protecting minors: spending caps and parental consent (§§ 104-113 BGB)",
            legal_basis="Art. 6(1)(c) GDPR (legal obligation); Art. 6(1)(b) GDPR",
            subject_categories=("buyers under 18", "their parents or guardians"),
            data_categories=("age from the token (not stored)", "parental consent records with an evidence"
                             " reference"),
            recipients=(),
            retention="parental consent records while the account exists, then 3 years (§ 195 BGB limitation)",
        ),
        ProcessingActivity(
            activity_id="shop.catalogue_and_pins",
            purpose="Merchants' catalogues and products pinned in LIVE streams (advertising, DSA Art. 26 and 39)",
            legal_basis="Art. 6(1)(b) GDPR (contract with merchants and creators); Art. 6(1)(c) GDPR (DSA)",
            subject_categories=("merchants", "creators"),
            data_categories=("product texts written by merchants", "which creator pinned what, when"),
            recipients=("compliance's ad repository (public, Art. 39 DSA)",),
            retention="while the catalogue exists; pins one year after the LIVE (Art. 39 DSA)",
        ),
    ),
    personal_fields=(
        PersonalField("orders.shipping_address_sealed", "shipping address reference", sealed=True),
        PersonalField("orders.recipient_name_sealed", "the recipient's name", sealed=True),
        PersonalField("parental_consents.evidence_reference", "reference to the guardian check (kept by the"
                      " operator, never the document)", sealed=False),
        PersonalField("products.title", "text written by the merchant (may name a person)", sealed=False),
        PersonalField("products.description", "text written by the merchant (may name a person)", sealed=False),
        PersonalField("deliveries.payload", "order events for affiliate: order name, pseudonymous visitor id,"
                      " amounts; deleted once delivered", sealed=False),
    ),
    not_personal=(
        NotPersonal("orders.buyer", "opaque user id"),
        NotPersonal("orders.payment_reference", "the payment provider's authorisation id, not card data"),
        NotPersonal("orders.name", "order resource name (users/{id}/orders/{id}): opaque ids"),
        NotPersonal("products.name", "product resource name"),
        NotPersonal("refund_intents.order_name", "order resource name: opaque ids"),
        NotPersonal("reservations.name", "reservation resource name (merchants/{id}/reservations/{id})"),
        NotPersonal("authorizations.reference", "the local payment provider's authorisation id"
                    " (local-payments.db)"),
        NotPersonal("live_pins.name", "pin resource name (creators/{id}/lives/{id}/pins/{id}): opaque ids"),
        NotPersonal("parental_consents.recorded_by", "the operator's resource name: an opaque id"),
        NotPersonal("audit_outbox_rejected.error", "machine text"),
    ),
    retention_exceptions={ORDERS_KEPT[0]: ORDER_RETENTION, CONSENTS_KEPT[0]: CONSENTS_KEPT[1]},
)
