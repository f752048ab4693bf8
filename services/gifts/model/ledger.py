"""The gifts ledger: accounts, transfers and the invariants that hold between them.

Invariants (stated here, enforced by the schema in `store.py`, checked by the tests):

1. Double entry. Every transfer debits one account and credits a different account of
   the same currency, by a positive integer amount. Each transfer adds its amount to one
   account's debits and to another's credits, so for every currency the sum over all
   accounts of (credits - debits) is zero, for posted and for pending amounts alike.
2. No user account goes negative. For an account that may not go negative,
   credits_posted - debits_posted - debits_pending >= 0 at every commit: a pending debit
   reserves funds, a pending credit is not yet spendable. The store checks this with a
   CHECK constraint on the balance row that each transfer updates, in the same statement,
   so concurrent requests cannot race past it. Only the platform's issuing and
   counterparty accounts (coin and diamond issuance, platform cash, the external payment
   rails) may go negative; that is a property of the account (`may_go_negative`), fixed
   when it is opened, never of a request.
3. Entries are immutable. Transfers, idempotency records, gifts and audit records are
   only ever inserted; a correction, refund or clawback is a new transfer in the opposite
   direction. A balance row is a running sum of its transfers and is changed only by the
   triggers that fire when a transfer is inserted.
4. One request, one atomic set of transfers. A gift posts its platform fee, the coins
   that back the creator's share and the creator's diamonds together or not at all; so
   does every other request.
5. One effect per request id. The client's `request_id` is stored with the request's
   transfers. A retry with the same id and the same parameters returns the first result;
   the same id with other parameters is refused (`REQUEST_ID_REUSED`) and changes nothing.
   A refusal leaves no record under its id, so a retry after fixing the cause can succeed.
6. Two-phase transfers. A pending transfer reserves its amount (holds of suspicious gifts,
   payouts); it is resolved exactly once, by posting it, voiding it or letting it expire
   at its timeout, always as a new entry that names the pending one. A pending transfer
   cannot be posted after its timeout.

Currencies are integers in their smallest unit: COIN, DIAMOND and EUR cents.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol

from libs.errors import FailedPrecondition

# Larger than any real amount, small enough that sums over many transfers stay in int64.
MAX_TRANSFER_AMOUNT = 10**15


class Currency(enum.StrEnum):
    COIN = "COIN"
    DIAMOND = "DIAMOND"
    EUR = "EUR"  # euro cents


class Purpose(enum.Enum):
    """What an account is for; it fixes the account's currency and whether it may go negative."""

    # Held by a user; never negative.
    COINS = ("coins", Currency.COIN, False)
    DIAMONDS_ON_HOLD = ("diamonds-on-hold", Currency.DIAMOND, False)
    DIAMONDS = ("diamonds", Currency.DIAMOND, False)
    # Held by the platform.
    COIN_ISSUANCE = ("coin-issuance", Currency.COIN, True)
    GIFT_FEES = ("gift-fees", Currency.COIN, False)
    CREATOR_SHARE = ("creator-share", Currency.COIN, False)
    DIAMOND_ISSUANCE = ("diamond-issuance", Currency.DIAMOND, True)
    DIAMOND_REDEMPTION = ("diamond-redemption", Currency.DIAMOND, False)
    # The platform's net cash position absorbs losses (a chargeback after a payout).
    CASH = ("cash", Currency.EUR, True)
    # Counterparties outside the platform: money arriving and leaving.
    PAYMENT_PROVIDER = ("payment-provider", Currency.EUR, True)
    PAYOUT_RAIL = ("payout-rail", Currency.EUR, False)

    def __init__(self, slug: str, currency: Currency, may_go_negative: bool) -> None:
        self.slug = slug
        self.currency = currency
        self.may_go_negative = may_go_negative


PLATFORM = "platform"
EXTERNAL = "external"
_PLATFORM_PURPOSES = frozenset({
    Purpose.COIN_ISSUANCE, Purpose.GIFT_FEES, Purpose.CREATOR_SHARE, Purpose.DIAMOND_ISSUANCE,
    Purpose.DIAMOND_REDEMPTION, Purpose.CASH,
})
_EXTERNAL_PURPOSES = frozenset({Purpose.PAYMENT_PROVIDER, Purpose.PAYOUT_RAIL})
_USER_PURPOSES = frozenset({Purpose.COINS, Purpose.DIAMONDS_ON_HOLD, Purpose.DIAMONDS})
_PURPOSE_BY_SLUG = {purpose.slug: purpose for purpose in Purpose}


@dataclass(frozen=True)
class Account:
    """An account, named `users/{user}/accounts/{purpose}`, `platform/accounts/{purpose}` or
    `external/accounts/{purpose}`."""

    holder: str
    purpose: Purpose

    def __post_init__(self) -> None:
        allowed = (_PLATFORM_PURPOSES if self.holder == PLATFORM
                   else _EXTERNAL_PURPOSES if self.holder == EXTERNAL
                   else _USER_PURPOSES if self.holder.startswith("users/") else frozenset())
        if self.purpose not in allowed:
            raise ValueError(f"{self.holder} cannot hold a {self.purpose.slug} account")

    @classmethod
    def of_user(cls, user_id: str, purpose: Purpose) -> Account:
        return cls(f"users/{user_id}", purpose)

    @classmethod
    def platform(cls, purpose: Purpose) -> Account:
        return cls(PLATFORM if purpose in _PLATFORM_PURPOSES else EXTERNAL, purpose)

    @classmethod
    def parse(cls, name: str) -> Account:
        holder, _, slug = name.rpartition("/accounts/")
        return cls(holder, _PURPOSE_BY_SLUG[slug])

    @property
    def name(self) -> str:
        return f"{self.holder}/accounts/{self.purpose.slug}"

    @property
    def currency(self) -> Currency:
        return self.purpose.currency

    @property
    def may_go_negative(self) -> bool:
        return self.purpose.may_go_negative


PLATFORM_ACCOUNTS = tuple(Account.platform(purpose) for purpose in Purpose if purpose not in _USER_PURPOSES)


class Code(enum.StrEnum):
    """Why money moved; leaderboards and statements read these."""

    TOP_UP_PAYMENT = "TOP_UP_PAYMENT"
    TOP_UP_COINS = "TOP_UP_COINS"
    TOP_UP_REVERSAL_PAYMENT = "TOP_UP_REVERSAL_PAYMENT"
    TOP_UP_CLAWBACK = "TOP_UP_CLAWBACK"
    GIFT_FEE = "GIFT_FEE"
    GIFT_SHARE = "GIFT_SHARE"
    GIFT_DIAMONDS = "GIFT_DIAMONDS"
    GIFT_FEE_REVERSAL = "GIFT_FEE_REVERSAL"
    GIFT_SHARE_REVERSAL = "GIFT_SHARE_REVERSAL"
    GIFT_DIAMONDS_REVERSAL = "GIFT_DIAMONDS_REVERSAL"
    DIAMOND_HOLD_RELEASE = "DIAMOND_HOLD_RELEASE"
    PAYOUT_DIAMONDS = "PAYOUT_DIAMONDS"
    PAYOUT_CASH = "PAYOUT_CASH"


class Phase(enum.StrEnum):
    POSTED = "POSTED"  # a one-phase transfer
    PENDING = "PENDING"
    POST_PENDING = "POST_PENDING"
    VOID_PENDING = "VOID_PENDING"
    EXPIRE_PENDING = "EXPIRE_PENDING"


@dataclass(frozen=True)
class TransferOrder:
    """One leg to write: `amount` from `debit` to `credit`."""

    debit: Account
    credit: Account
    amount: int
    code: Code
    gift_id: str | None = None

    def __post_init__(self) -> None:
        if self.debit == self.credit:
            raise ValueError("a transfer needs two different accounts")
        if self.debit.currency is not self.credit.currency:
            raise ValueError("a transfer cannot cross currencies")
        if not 0 < self.amount <= MAX_TRANSFER_AMOUNT:
            raise ValueError(f"transfer amount out of range: {self.amount}")

    @property
    def currency(self) -> Currency:
        return self.debit.currency

    def reversed(self, code: Code) -> TransferOrder:
        return TransferOrder(self.credit, self.debit, self.amount, code, self.gift_id)


@dataclass(frozen=True)
class Balance:
    account: str
    currency: Currency
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What can be spent now: pending debits are reserved, pending credits not yet usable."""
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(frozen=True)
class Entry:
    """A transfer as stored, for statements."""

    transfer_id: int
    request_id: str
    code: Code
    phase: Phase
    debit_account: str
    credit_account: str
    currency: Currency
    amount: int
    created_at: dt.datetime
    pending_id: int | None  # the pending transfer this entry resolves
    timeout: dt.datetime | None  # when a pending transfer expires
    gift_id: str | None


class Ledger(Protocol):
    """What the use cases need from the ledger inside one unit of work.

    Each method writes immediately inside the caller's transaction; an overdraft raises
    `InsufficientFunds` and leaves the unit to be rolled back by its savepoint.
    """

    def open_account(self, account: Account, now: dt.datetime) -> None: ...

    def post(self, request_id: str, orders: list[TransferOrder], now: dt.datetime) -> list[int]: ...

    def pend(self, request_id: str, orders: list[TransferOrder], now: dt.datetime, timeout: dt.datetime) -> list[int]: ...

    def resolve(self, request_id: str, pending_ids: list[int], phase: Phase, now: dt.datetime) -> None: ...

    def balance(self, account: Account) -> Balance | None: ...


_SHORTFALL_REASONS = {Purpose.COINS: "INSUFFICIENT_COINS", Purpose.DIAMONDS: "INSUFFICIENT_AVAILABLE_DIAMONDS"}


class InsufficientFunds(FailedPrecondition):
    """A debit would take an account below zero."""

    def __init__(self, account: Account, *, available: int, required: int) -> None:
        super().__init__(
            f"{account.name} holds {available} {account.currency.value}, {required} needed",
            reason=_SHORTFALL_REASONS.get(account.purpose, "INSUFFICIENT_FUNDS"),
            metadata={"account": account.name, "available": str(available), "required": str(required)},
        )
        self.account = account


@dataclass(frozen=True)
class GiftRates:
    """The published economics of a gift, integers only.

    `platform_fee_basis_points` of the coins stay with the platform; the rest back the
    creator's share, paid as `diamonds_per_share_coin` diamonds per coin. A payout converts
    `diamonds_per_eur_cent` diamonds into one euro cent.

    The rounding rule (`ROUNDING_RULE`, published by `ListGifts`): the fee is computed for
    one gift of the catalogue and rounded down, in the creator's favour; a call of `count`
    gifts moves exactly `count` times one gift's figures. So what the catalogue shows per
    gift is what every call adds up to (a 1-coin gift carries no fee, at any count).
    """

    platform_fee_basis_points: int = 5_000
    diamonds_per_share_coin: int = 2
    diamonds_per_eur_cent: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.platform_fee_basis_points <= 10_000:
            raise ValueError("platform_fee_basis_points must be within 0..10000")
        if self.diamonds_per_share_coin < 1 or self.diamonds_per_eur_cent < 1:
            raise ValueError("diamond rates must be positive integers")

    @property
    def creator_share_basis_points(self) -> int:
        return 10_000 - self.platform_fee_basis_points

    @property
    def diamond_value_micros(self) -> int:
        """What one diamond pays out, in millionths of a euro (rounded down)."""
        return 1_000_000 // 100 // self.diamonds_per_eur_cent


@dataclass(frozen=True)
class GiftSplit:
    coins: int
    fee_coins: int
    share_coins: int
    diamonds: int


ROUNDING_RULE = "PER_GIFT_FEE_ROUNDED_DOWN"


def split_gift(coins: int, rates: GiftRates) -> GiftSplit:
    """One gift of `coins`: the fee rounded down, the rest the creator's share."""
    fee = coins * rates.platform_fee_basis_points // 10_000
    share = coins - fee
    return GiftSplit(coins=coins, fee_coins=fee, share_coins=share, diamonds=share * rates.diamonds_per_share_coin)


def split_gifts(price: int, count: int, rates: GiftRates) -> GiftSplit:
    """`count` gifts of `price` coins each: `count` times one gift's split (`ROUNDING_RULE`)."""
    one = split_gift(price, rates)
    return GiftSplit(coins=one.coins * count, fee_coins=one.fee_coins * count, share_coins=one.share_coins * count,
                     diamonds=one.diamonds * count)


def gift_orders(sender: str, creator: str, split: GiftSplit, gift_id: str) -> list[TransferOrder]:
    """The legs of one gift: the viewer's coins to the fee and share accounts, and new
    diamonds onto the creator's hold. Zero legs are left out (a transfer is never empty)."""
    coins = Account.of_user(sender, Purpose.COINS)
    legs = [
        (coins, Account.platform(Purpose.GIFT_FEES), split.fee_coins, Code.GIFT_FEE),
        (coins, Account.platform(Purpose.CREATOR_SHARE), split.share_coins, Code.GIFT_SHARE),
        (Account.platform(Purpose.DIAMOND_ISSUANCE), Account.of_user(creator, Purpose.DIAMONDS_ON_HOLD),
         split.diamonds, Code.GIFT_DIAMONDS),
    ]
    return [TransferOrder(debit, credit, amount, code, gift_id) for debit, credit, amount, code in legs if amount]


GIFT_REVERSAL_CODES = {
    Code.GIFT_FEE: Code.GIFT_FEE_REVERSAL,
    Code.GIFT_SHARE: Code.GIFT_SHARE_REVERSAL,
    Code.GIFT_DIAMONDS: Code.GIFT_DIAMONDS_REVERSAL,
}
