"""What affiliate keeps about people, why, and for how long (GDPR Art. 30): its record of processing.

Visitors: a click stores no address and no user agent. It keeps a keyed pseudonym of the address
(HMAC-SHA256 under the deployment's `keys/affiliate-visitor.secret`, for the hourly de-duplication
and fraud checks), the visitor id issued for attribution, the signed-in user's opaque id, and the
country sealed under that user's data key (`libs.privacy`). Only clicks of visitors who consented
to affiliate tracking are counted and keep any of these; filtered clicks keep the link, the time
and the reason. Erasure (`usecases.subject_data.erase`) blanks the visitor id and pseudonym of the
person's clicks and orders; crypto-shredding makes their sealed countries unreadable.
Creators: commissions and payouts are financial records (amounts, dates, opaque names), kept by law.
"""

from __future__ import annotations

from libs.privacy.data_map import DataMap, NotPersonal, PersonalField, ProcessingActivity

DATA_MAP = DataMap(
    service="services/affiliate",
    activities=(
        ProcessingActivity(
            activity_id="affiliate.click_tracking",
            purpose="Counting clicks on creators' tracking links and attributing orders to them",
            legal_basis="Art. 6(1)(a) GDPR and § 25(1) TDDDG (consent to affiliate tracking)",
            subject_categories=("viewers", "buyers"),
            data_categories=("visitor id", "keyed address pseudonym", "country", "account identifier"),
            recipients=(),
            retention="90 days after the click (the longest attribution window), then the visitor fields are blanked",
        ),
        ProcessingActivity(
            activity_id="affiliate.commissions",
            purpose="Creators' commissions and their payout",
            legal_basis="Art. 6(1)(b) GDPR (contract); Art. 6(1)(c) GDPR (commercial and tax record keeping)",
            subject_categories=("creators",),
            data_categories=("commission amounts", "payout references", "account identifiers"),
            recipients=("payout providers (processors)", "tax authorities on request"),
            retention="10 years (§ 257 HGB, § 147 AO)",
        ),
    ),
    personal_fields=(
        PersonalField("clicks.visitor_id", "online identifier set on the device for attribution", sealed=False),
        PersonalField("clicks.visitor_pseudonym", "keyed pseudonym of the IP address (pseudonymised)", sealed=False),
        PersonalField("clicks.country_sealed", "country of the visitor", sealed=True),
        PersonalField("attributions.visitor_id", "online identifier set on the device for attribution", sealed=False),
        PersonalField("attributions.visitor_pseudonym", "keyed pseudonym of the IP address (pseudonymised)",
                      sealed=False),
    ),
    not_personal=(
        NotPersonal("clicks.clicked_by", "opaque user id (users/{id})"),
        NotPersonal("attributions.buyer", "opaque user id (users/{id})"),
        NotPersonal("attributions.order_name", "order resource name: opaque ids"),
        NotPersonal("commissions.order_name", "order resource name: opaque ids"),
        NotPersonal("commissions.payout_reference", "opaque payout id (payouts/{id})"),
        NotPersonal("commissions.creator", "opaque creator id (creators/{id})"),
        NotPersonal("tracking_links.creator", "opaque creator id (creators/{id})"),
        NotPersonal("programs.display_name", "a merchant's programme name, public to creators"),
        NotPersonal("tracking_links.name", "resource name: opaque ids"),
        NotPersonal("commissions.name", "resource name: opaque ids"),
        NotPersonal("payouts.creator", "opaque creator id (creators/{id})"),
        NotPersonal("cpc_days.creator", "opaque creator id (creators/{id})"),
        NotPersonal("payouts.reference", "our opaque payout id; creators' bank details stay with the payout provider"),
        NotPersonal("requests.method", "the RPC a request id was claimed by"),
    ),
)
