"""The API's resource names (AIP-122), as the protos in limelight/gifts/v1 define them.

Audit events name what they are about with these same names, so a prefix query such as
`creators/ada/` finds everything that happened to that creator's LIVEs and gifts.
"""

from __future__ import annotations


def creator_name(creator: str) -> str:
    return f"creators/{creator}"


def live_name(host: str, live_id: str) -> str:
    return f"creators/{host}/lives/{live_id}"


def gift_transfer_name(host: str, live_id: str, gift_id: str) -> str:
    return f"creators/{host}/lives/{live_id}/giftTransfers/{gift_id}"


def wallet_name(user: str) -> str:
    return f"users/{user}/wallet"


def transaction_name(user: str, transfer_id: int | str) -> str:
    return f"users/{user}/wallet/transactions/{transfer_id}"


def payouts_parent(user: str) -> str:
    return f"users/{user}"


def payout_name(user: str, payout_id: str) -> str:
    return f"users/{user}/payouts/{payout_id}"


def standing_name(user: str) -> str:
    return f"users/{user}/standing"


# A segment nobody can be named: AIP-159's wildcard, for a resource whose parent is not known.
UNKNOWN = "-"
