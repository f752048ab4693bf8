"""What gifts keeps about people, why, and for how long (GDPR Art. 30): its record of processing.

Erasure reaches gifts by crypto-shredding (`libs.privacy`): the personal fields below are sealed
under the subject's data key. The ledger itself stays, by law: amounts and the pseudonymous
account names keep it balanced and auditable for the retention period.
"""

from __future__ import annotations

from libs.privacy.data_map import DataMap, NotPersonal, PersonalField, ProcessingActivity

LEDGER_RETENTION = "§ 257 HGB / § 147 AO: 10 years for financial records (amounts, dates, account references)"

DATA_MAP = DataMap(
    service="services/gifts",
    activities=(
        ProcessingActivity(
            activity_id="gifts.wallet_and_gifts",
            purpose="Coin wallets, top-ups and gifts sent during LIVE sessions",
            legal_basis="Art. 6(1)(b) GDPR (performance of the contract)",
            subject_categories=("viewers", "creators"),
            data_categories=("account identifiers", "LIVE titles", "payment references", "transaction amounts"),
            recipients=("payment providers (processors)",),
            retention="ledger entries 10 years (§ 257 HGB, § 147 AO); LIVE titles until erasure",
        ),
        ProcessingActivity(
            activity_id="gifts.payouts",
            purpose="Paying creators for the diamonds they earned",
            legal_basis="Art. 6(1)(b) GDPR (contract); Art. 6(1)(c) GDPR (tax and commercial record keeping)",
            subject_categories=("creators",),
            data_categories=("payout method", "settlement references", "amounts"),
            recipients=("payout providers (processors)", "tax authorities on request"),
            retention="10 years (§ 257 HGB, § 147 AO)",
        ),
        ProcessingActivity(
            activity_id="gifts.account_standing",
            purpose="Eligibility to receive gifts and fraud prevention (holds, standing)",
            legal_basis="Art. 6(1)(f) GDPR (legitimate interest: preventing fraud)",
            subject_categories=("creators",),
            data_categories=("follower count", "standing", "identity verified (yes/no)"),
            recipients=(),
            retention="while the account exists",
        ),
        ProcessingActivity(
            activity_id="gifts.live_rooms",
            purpose="LIVE room chat, Q&A and its moderation (keyword filters, mutes, bans, statements of reasons)",
            legal_basis="Art. 6(1)(b) GDPR (contract: the room's features); Art. 6(1)(c) GDPR with DSA Art. 17 "
                        "(statements of reasons)",
            subject_categories=("viewers", "creators", "moderators"),
            data_categories=("chat messages", "questions", "moderation decisions and their reasons"),
            recipients=("ranking (pseudonymous room activity signals)",),
            retention="chat and questions until erasure (sealed per author); moderation records while they apply",
        ),
    ),
    personal_fields=(
        PersonalField("live_session.title", "free text written by the creator (sealed text form)", sealed=True),
        PersonalField("top_up.receipt_id", "payment reference, kept with the ledger (§ 147 AO)", sealed=False),
        PersonalField("payout.payout_method", "payment details, kept with the ledger (§ 147 AO)", sealed=False),
        PersonalField("payout_settlement.provider_reference", "payment reference, kept with the ledger (§ 147 AO)",
                      sealed=False),
        # LIVE rooms (store/room.py, room.db)
        PersonalField("chat_message.text_sealed", "chat message written by the viewer", sealed=True),
        PersonalField("question.text_sealed", "question written by the viewer", sealed=True),
        PersonalField("ban.reason", "a moderator's reason for a ban (about the banned user)", sealed=False),
        PersonalField("mute.reason", "a moderator's reason for a mute (about the muted user)", sealed=False),
        PersonalField("room_event.body", "room events: moderators' reasons in statements of reasons; chat and "
                      "question texts are not in it (sealed in their own tables)", sealed=False),
    ),
    not_personal=(
        NotPersonal("request.parameters", "a copy of the request; the LIVE title only as its keyed fingerprint"),
        NotPersonal("account.name", "ledger account resource name (users/{id}/wallet): an opaque id"),
        NotPersonal("account_facts.user_id", "opaque user id"),
        NotPersonal("diamond_hold.creator", "opaque user id"),
        NotPersonal("diamond_hold.sender", "opaque user id"),
        NotPersonal("gift.creator", "opaque user id"),
        NotPersonal("gift.sender", "opaque user id"),
        NotPersonal("live_session.host", "opaque user id"),
        NotPersonal("payout.user_id", "opaque user id"),
        NotPersonal("request.caller", "the caller's resource name: an opaque id"),
        NotPersonal("top_up.user_id", "opaque user id"),
        NotPersonal("chat_message.author", "opaque user id"),
        NotPersonal("chat_message.host", "opaque user id"),
        NotPersonal("chat_message.message_id", "opaque id"),
        NotPersonal("room_event.message_id", "opaque id"),
        NotPersonal("question.author", "opaque user id"),
        NotPersonal("question.host", "opaque user id"),
        NotPersonal("question_vote.voter", "opaque user id"),
        NotPersonal("moderator.creator", "opaque user id"),
        NotPersonal("moderator.user_id", "opaque user id"),
        NotPersonal("ban.creator", "opaque user id"),
        NotPersonal("ban.user_id", "opaque user id"),
        NotPersonal("ban.banned_by", "opaque user id"),
        NotPersonal("mute.user_id", "opaque user id"),
        NotPersonal("mute.muted_by", "opaque user id"),
        NotPersonal("keyword_filter.creator", "opaque user id"),
        NotPersonal("co_host.host", "opaque user id"),
        NotPersonal("co_host.co_host", "opaque user id"),
    ),
    retention_exceptions={"gifts.ledger": LEDGER_RETENTION},
)
