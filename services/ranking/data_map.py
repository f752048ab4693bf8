"""What ranking keeps about people, why, and for how long (GDPR Art. 30): its record of processing.

Viewer histories, follows and feed settings are personal data about the viewer. They are keyed
by opaque user ids (`users/{id}` carries no name), the only free text a viewer writes (a
report's details) is sealed under their key (`libs.privacy`), and erasure deletes the rest
(`Ranking.erase_subject`): signals, follows both ways, settings, shown feed items, a bot flag.
"""

from __future__ import annotations

from libs.privacy.data_map import DataMap, NotPersonal, PersonalField, ProcessingActivity

DATA_MAP = DataMap(
    service="services/ranking",
    activities=(
        ProcessingActivity(
            activity_id="ranking.personalised_feed",
            purpose="Ranking the For-You feed from the viewer's engagement (profiling, with consent)",
            legal_basis="Art. 6(1)(a) GDPR (consent to personalised content), DSA Art. 38 (a non-personalised "
                        "alternative is offered)",
            subject_categories=("viewers",),
            data_categories=("watch time and engagement with videos", "follows", "feed settings",
                             "items shown and why"),
            recipients=("no one outside ranking; follower counts (aggregates) to gifts",),
            retention="until the viewer deletes their account or asks for erasure",
        ),
        ProcessingActivity(
            activity_id="ranking.manipulation_defence",
            purpose="Discounting bot-like engagement (bursts, impossible watch times, flagged accounts)",
            legal_basis="Art. 6(1)(f) GDPR (legitimate interest in an unmanipulated feed)",
            subject_categories=("viewers",),
            data_categories=("signal timing", "a bot flag"),
            recipients=(),
            retention="as the signals",
        ),
        ProcessingActivity(
            activity_id="ranking.reports",
            purpose="Receiving viewers' reports of videos",
            legal_basis="DSA Art. 16 (notice and action)",
            subject_categories=("viewers who report",),
            data_categories=("report reason", "report details (the viewer's words)"),
            recipients=("compliance (moderation)",),
            retention="as the signals",
        ),
    ),
    personal_fields=(
        PersonalField("signals.report_details_sealed", "free text written by the viewer (report details)",
                      sealed=True),
        PersonalField("signals.viewer", "whose engagement (opaque user id: pseudonymous, erased on request)",
                      sealed=False),
        PersonalField("follows.follower", "who follows whom (opaque user ids, erased on request)", sealed=False),
        PersonalField("feed_items.viewer", "what was shown to whom (opaque user id, erased on request)",
                      sealed=False),
        PersonalField("feed_settings.account", "the viewer's feed settings (opaque user id, erased on request)",
                      sealed=False),
        PersonalField("flagged_accounts.account", "an account flagged as bot-like (opaque user id, erased "
                      "on request)", sealed=False),
    ),
    not_personal=(
        NotPersonal("candidates.creator", "opaque creator id of a published video"),
        NotPersonal("candidates.region_code", "the creator's country as ingest registered it: a coarse "
                    "attribute of published content"),
        NotPersonal("follows.creator", "opaque creator id"),
        NotPersonal("feed_items.creator", "opaque creator id of the video shown"),
        NotPersonal("live_engagement.creator", "opaque creator id; counts are aggregates"),
    ),
)
