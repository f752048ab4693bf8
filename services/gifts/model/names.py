"""The API's resource names (AIP-122), declared once from the patterns in limelight/gifts/v1.

Handlers parse requests with these patterns (`libs.resource_names`); audit events name what
they are about with the same names, so a prefix query such as `creators/ada/` finds
everything that happened to that creator's LIVEs and gifts.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from libs.resource_names import WILDCARD, ResourcePattern, is_valid_id

CREATOR = ResourcePattern("creators/{creator}")
LIVE = ResourcePattern("creators/{creator}/lives/{live}")
GIFT_TRANSFER = ResourcePattern("creators/{creator}/lives/{live}/giftTransfers/{gift_transfer}")
CATALOG_GIFT = ResourcePattern("gifts/{gift}")
COIN_PACK = ResourcePattern("coinPacks/{coin_pack}")
USER = ResourcePattern("users/{user}")
WALLET = ResourcePattern("users/{user}/wallet")
TRANSACTION = ResourcePattern("users/{user}/wallet/transactions/{transaction}")
PAYOUT = ResourcePattern("users/{user}/payouts/{payout}")
STANDING = ResourcePattern("users/{user}/standing")

# The id of a parent nobody could find: AIP-159's wildcard.
UNKNOWN = WILDCARD


def _name(pattern: ResourcePattern, **ids: str) -> str:
    """`pattern.format`, except that a name is still written (unchecked) for an id the API would
    refuse: the unknown parent of a refused command, or an id a tool made up. Naming what an
    audit event is about must never be the reason a call fails."""
    if all(is_valid_id(value) for value in ids.values()):
        return pattern.format(**ids)
    return pattern.pattern.format(**ids)


def creator_name(creator: str) -> str:
    return _name(CREATOR, creator=creator)


def live_name(host: str, live_id: str) -> str:
    return _name(LIVE, creator=host, live=live_id)


def gift_transfer_name(host: str, live_id: str, gift_id: str) -> str:
    return _name(GIFT_TRANSFER, creator=host, live=live_id, gift_transfer=gift_id)


def catalog_gift_name(gift_id: str) -> str:
    return _name(CATALOG_GIFT, gift=gift_id)


def coin_pack_name(pack_id: str) -> str:
    return _name(COIN_PACK, coin_pack=pack_id)


def user_name(user: str) -> str:
    return _name(USER, user=user)


def wallet_name(user: str) -> str:
    return _name(WALLET, user=user)


def transaction_name(user: str, transaction_id: str) -> str:
    """`transaction_id` is a `TransactionIds.public` id (or UNKNOWN), never the store's row id."""
    return _name(TRANSACTION, user=user, transaction=transaction_id)


_HALF_BITS = 32
_HALF_MASK = (1 << _HALF_BITS) - 1
_ROUNDS = 4
_PUBLIC_ID = re.compile(r"[0-9a-f]{16}")


class TransactionIds:
    """The public id of a ledger transfer: a keyed permutation (a four-round Feistel network
    over 64 bits, HMAC-SHA256 rounds) of the store's row id. A row id counts every transfer
    the platform ever made; its public id counts nothing, and without the deployment's key
    one id tells nothing about another. The service turns a public id back into its row."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the transaction id key must be at least 16 bytes")
        self._key = key

    def _round(self, number: int, half: int) -> int:
        digest = hmac.new(self._key, bytes([number]) + half.to_bytes(4, "big"), hashlib.sha256).digest()
        return int.from_bytes(digest[:4], "big")

    def public(self, transfer_id: int) -> str:
        left, right = transfer_id >> _HALF_BITS & _HALF_MASK, transfer_id & _HALF_MASK
        for number in range(_ROUNDS):
            left, right = right, left ^ self._round(number, right)
        return f"{left << _HALF_BITS | right:016x}"

    def transfer_id(self, public_id: str) -> int | None:
        """The row a public id names; None for text no `public` call wrote."""
        if not _PUBLIC_ID.fullmatch(public_id):
            return None
        value = int(public_id, 16)
        left, right = value >> _HALF_BITS, value & _HALF_MASK
        for number in reversed(range(_ROUNDS)):
            left, right = right ^ self._round(number, left), left
        return left << _HALF_BITS | right


def payouts_parent(user: str) -> str:
    return user_name(user)


def payout_name(user: str, payout_id: str) -> str:
    return _name(PAYOUT, user=user, payout=payout_id)


def standing_name(user: str) -> str:
    return _name(STANDING, user=user)
