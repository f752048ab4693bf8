"""Gifts domain values to and from the limelight.gifts.v1 messages: names, enums, timestamps.

Request shapes are already checked by protovalidate in the kit; what is left here is
splitting resource names and mapping enums, with an InvalidArgument naming the field when
a value the proto allows means nothing to the domain.
"""

from __future__ import annotations

import datetime as dt

from limelight.gifts.v1 import gifts_pb2, live_pb2, payouts_pb2, standing_pb2, wallet_pb2

from libs.errors import InvalidArgument
from libs.timestamps import from_timestamp, to_timestamp
from services.gifts.config import GiftsConfig
from services.gifts.model.catalog import CatalogGift, CoinPack
from services.gifts.model.eligibility import AccountCategory, LiveEligibility
from services.gifts.model.ledger import ROUNDING_RULE, Code, GiftRates, Phase, Purpose, split_gift
from services.gifts.model.live import EndReason, LiveSession, LiveState
from services.gifts.model.names import (
    TransactionIds,
    catalog_gift_name,
    coin_pack_name,
    gift_transfer_name,
    live_name,
    payout_name,
    standing_name,
    transaction_name,
    user_name,
    wallet_name,
)
from services.gifts.model.periods import Period
from services.gifts.model.records import GiftState, PayoutResult, PayoutState
from services.gifts.model.views import AccountStanding, FeedItem, LeaderboardEntry, Party, StatementLine, Wallet
from services.gifts.usecases.commands import GiftResult, TopUpResult

# LIVE ------------------------------------------------------------------------------------------

_END_REASONS = {
    EndReason.ENDED_BY_CREATOR: live_pb2.LIVE_END_REASON_ENDED_BY_CREATOR,
    EndReason.MAX_DURATION_REACHED: live_pb2.LIVE_END_REASON_MAX_DURATION_REACHED,
    EndReason.STOPPED_BY_PLATFORM: live_pb2.LIVE_END_REASON_STOPPED_BY_PLATFORM,
}
LIVE_STATES = {LiveState.LIVE: live_pb2.LIVE_SESSION_STATE_LIVE, LiveState.ENDED: live_pb2.LIVE_SESSION_STATE_ENDED}


def live_session(session: LiveSession, title: str, now: dt.datetime, *, gift_count: int = 0,
                 diamonds_earned: int = 0) -> live_pb2.LiveSession:
    state = session.state_at(now)
    message = live_pb2.LiveSession(
        name=live_name(session.host, session.live_id), title=title, state=LIVE_STATES[state],
        start_time=to_timestamp(session.started_at), max_end_time=to_timestamp(session.deadline),
        gifts_enabled=not session.gifts_barred_reason, gifts_disabled_reason=session.gifts_barred_reason,
        gift_count=gift_count, diamonds_earned=diamonds_earned,
    )
    if state is LiveState.ENDED:
        message.end_reason = _END_REASONS[EndReason(session.end_reason or EndReason.MAX_DURATION_REACHED)]
        message.end_time.CopyFrom(to_timestamp(session.deadline if session.ended_at is None else session.ended_at))
    return message


# Gifts -----------------------------------------------------------------------------------------

_GIFT_STATES = {
    GiftState.POSTED: gifts_pb2.GIFT_TRANSFER_STATE_POSTED,
    GiftState.HELD: gifts_pb2.GIFT_TRANSFER_STATE_HELD,
    GiftState.REJECTED: gifts_pb2.GIFT_TRANSFER_STATE_VOIDED,
    GiftState.EXPIRED: gifts_pb2.GIFT_TRANSFER_STATE_VOIDED,
    GiftState.REVERSED: gifts_pb2.GIFT_TRANSFER_STATE_REVERSED,
}


def catalog_gift(gift: CatalogGift, rates: GiftRates) -> gifts_pb2.Gift:
    split = split_gift(gift.coins, rates)
    return gifts_pb2.Gift(name=catalog_gift_name(gift.gift_id), display_name=gift.display_name, coin_price=gift.coins,
                          diamond_value=split.diamonds, platform_fee_coins=split.fee_coins,
                          asset_uri=f"assets/gifts/{gift.gift_id}.webp", available=True)


def gift_rates(rates: GiftRates) -> gifts_pb2.GiftRates:
    return gifts_pb2.GiftRates(platform_fee_basis_points=rates.platform_fee_basis_points,
                               diamonds_per_share_coin=rates.diamonds_per_share_coin, rounding=ROUNDING_RULE)


def gift_transfer_from_result(result: GiftResult, request_id: str) -> gifts_pb2.GiftTransfer:
    return gifts_pb2.GiftTransfer(
        name=gift_transfer_name(result.creator, result.live_id, result.gift_id),
        sequence=result.sequence, gift=catalog_gift_name(result.catalog_gift), count=result.count,
        coins_spent=result.coins, diamonds_credited=result.diamonds, platform_fee_coins=result.fee_coins,
        state=_GIFT_STATES[GiftState(result.state)], hold_reason=result.hold_reasons.split(",")[0],
        request_id=request_id, create_time=to_timestamp(result.sent_at),
    )


def gift_transfer_from_feed(item: FeedItem) -> gifts_pb2.GiftTransfer:
    gift = item.gift
    return gifts_pb2.GiftTransfer(
        name=gift_transfer_name(gift.creator, gift.live_id, gift.gift_id),
        sequence=item.sequence, sender=user_name(gift.sender), gift=catalog_gift_name(gift.catalog_gift), count=gift.count,
        coins_spent=gift.coins, diamonds_credited=gift.diamonds, platform_fee_coins=gift.fee_coins,
        state=gifts_pb2.GIFT_TRANSFER_STATE_POSTED, create_time=to_timestamp(gift.sent_at),
    )


def leaderboard_entry(entry: LeaderboardEntry, party: Party) -> gifts_pb2.LeaderboardEntry:
    prefix = "users" if party is Party.GIFTER else "creators"
    return gifts_pb2.LeaderboardEntry(rank=entry.rank, account=f"{prefix}/{entry.user_id}", amount=entry.amount)


PARTIES = {gifts_pb2.LEADERBOARD_KIND_TOP_GIFTERS: Party.GIFTER, gifts_pb2.LEADERBOARD_KIND_TOP_CREATORS: Party.CREATOR}
_PERIODS = {gifts_pb2.LEADERBOARD_PERIOD_DAY: Period.DAY, gifts_pb2.LEADERBOARD_PERIOD_WEEK: Period.WEEK}


def period(value: gifts_pb2.LeaderboardPeriod) -> Period:
    """The proto's period; anything else the proto allows is a calendar month, as before."""
    return _PERIODS.get(value, Period.MONTH)


def live_eligibility(eligibility: LiveEligibility) -> live_pb2.GetLiveEligibilityResponse:
    return live_pb2.GetLiveEligibilityResponse(
        can_go_live=eligibility.can_go_live, can_receive_gifts=eligibility.can_receive_gifts,
        checks=[live_pb2.EligibilityCheck(requirement=r.reason, met=r.met, detail=r.detail)
                for r in eligibility.requirements])


# Wallets ---------------------------------------------------------------------------------------


def wallet(view: Wallet) -> wallet_pb2.Wallet:
    message = wallet_pb2.Wallet(
        name=wallet_name(view.user_id), coin_balance=view.available(Purpose.COINS),
        diamonds_on_hold=view.available(Purpose.DIAMONDS_ON_HOLD),
        diamonds_available=view.available(Purpose.DIAMONDS),
        diamonds_pending_payout=view.reserved(Purpose.DIAMONDS),
    )
    if view.updated_at:
        message.update_time.CopyFrom(to_timestamp(view.updated_at))
    return message


TRANSACTION_KINDS: dict[wallet_pb2.TransactionKind, frozenset[Code]] = {
    wallet_pb2.TRANSACTION_KIND_TOP_UP: frozenset({Code.TOP_UP_COINS}),
    wallet_pb2.TRANSACTION_KIND_GIFT_SENT: frozenset({Code.GIFT_FEE, Code.GIFT_SHARE}),
    wallet_pb2.TRANSACTION_KIND_GIFT_RECEIVED: frozenset({Code.GIFT_DIAMONDS}),
    wallet_pb2.TRANSACTION_KIND_HOLD_RELEASED: frozenset({Code.DIAMOND_HOLD_RELEASE}),
    wallet_pb2.TRANSACTION_KIND_PAYOUT: frozenset({Code.PAYOUT_DIAMONDS}),
    wallet_pb2.TRANSACTION_KIND_REVERSAL: frozenset({Code.TOP_UP_CLAWBACK, Code.GIFT_FEE_REVERSAL,
                                                     Code.GIFT_SHARE_REVERSAL, Code.GIFT_DIAMONDS_REVERSAL}),
}
_KIND_OF_CODE = {code: kind for kind, codes in TRANSACTION_KINDS.items() for code in codes}
ASSETS: dict[wallet_pb2.Asset, frozenset[Purpose]] = {
    wallet_pb2.ASSET_COINS: frozenset({Purpose.COINS}),
    wallet_pb2.ASSET_DIAMONDS: frozenset({Purpose.DIAMONDS_ON_HOLD, Purpose.DIAMONDS}),
}


# Entries another party's request wrote into a creator's wallet: the gift's sender (or the
# payment provider reversing it); their idempotency keys are theirs alone.
_ENTRIES_OF_OTHERS_REQUESTS = frozenset({Code.GIFT_DIAMONDS, Code.GIFT_DIAMONDS_REVERSAL})


def transaction(user_id: str, line: StatementLine, ids: TransactionIds) -> wallet_pb2.Transaction:
    entry = line.entry
    mine = {f"users/{user_id}/accounts/{purpose.slug}" for purpose in Purpose}
    credited, debited = entry.credit_account in mine, entry.debit_account in mine
    state = wallet_pb2.TRANSACTION_STATE_POSTED
    if entry.phase is Phase.PENDING:
        state = {None: wallet_pb2.TRANSACTION_STATE_PENDING,
                 Phase.POST_PENDING: wallet_pb2.TRANSACTION_STATE_POSTED}.get(
            line.resolution, wallet_pb2.TRANSACTION_STATE_VOIDED)
    related = ""
    if line.live_id is not None and entry.gift_id is not None:
        related = gift_transfer_name(line.creator or "", line.live_id, entry.gift_id)
    elif line.payout_id is not None:
        related = payout_name(user_id, line.payout_id)
    return wallet_pb2.Transaction(
        name=transaction_name(user_id, ids.public(entry.transfer_id)),
        kind=_KIND_OF_CODE.get(entry.code, wallet_pb2.TRANSACTION_KIND_UNSPECIFIED), state=state,
        asset=wallet_pb2.ASSET_COINS if entry.currency.value == "COIN" else wallet_pb2.ASSET_DIAMONDS,
        # An entry between two of the user's own accounts (a hold release) adds to what they can use.
        amount=-entry.amount if debited and not credited else entry.amount,
        request_id="" if entry.code in _ENTRIES_OF_OTHERS_REQUESTS else entry.request_id, counterparty=entry.credit_account if debited else entry.debit_account,
        related_resource=related, create_time=to_timestamp(entry.created_at),
    )


def top_up_transaction(user_id: str, result: TopUpResult, request_id: str,
                       ids: TransactionIds) -> wallet_pb2.Transaction:
    return wallet_pb2.Transaction(
        name=transaction_name(user_id, ids.public(result.coins_transfer_id)), kind=wallet_pb2.TRANSACTION_KIND_TOP_UP,
        state=wallet_pb2.TRANSACTION_STATE_POSTED, asset=wallet_pb2.ASSET_COINS, amount=result.coins,
        request_id=request_id, counterparty="platform/accounts/coin-issuance",
        create_time=to_timestamp(result.created_at))


def coin_pack(pack: CoinPack) -> wallet_pb2.CoinPack:
    return wallet_pb2.CoinPack(name=coin_pack_name(pack.pack_id), coins=pack.coins, price_minor=pack.price_eur_cents,
                               currency_code="EUR")


# Payouts ---------------------------------------------------------------------------------------

_PAYOUT_STATES = {PayoutState.PENDING: payouts_pb2.PAYOUT_STATE_PENDING,
                  PayoutState.POSTED: payouts_pb2.PAYOUT_STATE_POSTED,
                  PayoutState.VOIDED: payouts_pb2.PAYOUT_STATE_VOIDED}
PAYOUT_STATE_FILTERS = {value: state for state, value in _PAYOUT_STATES.items()}


def payout(result: PayoutResult, request_id: str = "") -> payouts_pb2.Payout:
    message = payouts_pb2.Payout(
        name=payout_name(result.user_id, result.payout_id), state=_PAYOUT_STATES[PayoutState(result.state)],
        diamonds=result.diamonds, amount_minor=result.eur_cents, currency_code="EUR",
        payout_method=result.payout_method, provider_reference=result.provider_reference,
        void_reason=result.void_reason, request_id=request_id, create_time=to_timestamp(result.requested_at),
        expire_time=to_timestamp(result.expires_at),
    )
    if result.settled_at:
        message.settle_time.CopyFrom(to_timestamp(result.settled_at))
    return message


def payout_policy(config: GiftsConfig) -> payouts_pb2.GetPayoutPolicyResponse:
    policy = payouts_pb2.GetPayoutPolicyResponse(
        currency_code="EUR", diamond_value_micros=config.rates.diamond_value_micros,
        creator_share_bps=config.rates.creator_share_basis_points,
        minimum_payout_minor=config.payouts.minimum_eur_cents, daily_limit_minor=config.payouts.daily_limit_eur_cents)
    policy.hold_period.FromTimedelta(config.payouts.diamond_hold)
    return policy


# Account standing ------------------------------------------------------------------------------

_CATEGORIES = {
    AccountCategory.PERSONAL: standing_pb2.ACCOUNT_CATEGORY_PERSONAL,
    AccountCategory.BUSINESS: standing_pb2.ACCOUNT_CATEGORY_BUSINESS,
    AccountCategory.POLITICAL: standing_pb2.ACCOUNT_CATEGORY_POLITICAL,
    AccountCategory.GOVERNMENT: standing_pb2.ACCOUNT_CATEGORY_GOVERNMENT,
}
_CATEGORY_OF = {value: category for category, value in _CATEGORIES.items()}


def standing(view: AccountStanding) -> standing_pb2.AccountStanding:
    facts = view.facts
    message = standing_pb2.AccountStanding(
        name=standing_name(facts.user_id), in_good_standing=facts.good_standing,
        restriction_reason=facts.restriction_reason, category=_CATEGORIES[AccountCategory(facts.category)],
        identity_verified=facts.identity_verified, updated_by=view.updated_by, follower_count=facts.follower_count,
    )
    if facts.joined_at is not None:
        message.account_create_time.CopyFrom(to_timestamp(facts.joined_at))
    if view.updated_at:
        message.update_time.CopyFrom(to_timestamp(view.updated_at))
    return message


_WRITABLE_STANDING = ("in_good_standing", "restriction_reason", "category", "identity_verified",
                      "account_create_time", "follower_count")


def standing_changes(update: standing_pb2.AccountStanding, paths: list[str]) -> dict[str, object]:
    """The AccountFacts fields to change, from the fields named in `paths` (all writable when empty)."""
    fields = set(paths or _WRITABLE_STANDING)
    changes: dict[str, object] = {}
    if "category" in fields:
        if update.category == standing_pb2.ACCOUNT_CATEGORY_UNSPECIFIED:
            raise InvalidArgument.for_field("standing.category", "must be set when updated")
        changes["category"] = _CATEGORY_OF[update.category]
    if "account_create_time" in fields:
        changes["joined_at"] = (from_timestamp(update.account_create_time, field="standing.account_create_time")
                                if update.HasField("account_create_time") else None)
    for proto_field, fact in (("follower_count", "follower_count"), ("in_good_standing", "good_standing"),
                              ("restriction_reason", "restriction_reason"),
                              ("identity_verified", "identity_verified")):
        if proto_field in fields:
            changes[fact] = getattr(update, proto_field)
    return changes
