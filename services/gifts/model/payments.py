"""Payment providers: where coins are bought, and how a purchase is proven.

`TopUpCoins` names a provider and carries its receipt; that provider's `verify_receipt`
turns the receipt into a `Purchase` or refuses it (FAILED_PRECONDITION `RECEIPT_REJECTED`,
with the failed check in `why`). The embedded default is `LocalPaymentProvider`, which
signs receipts with an Ed25519 key (the shop front and test tools hold the private key,
the gifts service only the public one). A real provider (an app store, a PSP) satisfies
the same protocol with its own receipt format.

A receipt is `base64url(payload JSON) "." base64url(Ed25519 signature over the payload)`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from libs.errors import FailedPrecondition
from libs.timestamps import epoch_us, from_epoch_us

MAX_RECEIPT_CHARS = 4_096


@dataclass(frozen=True)
class Purchase:
    """A paid purchase of one coin pack, as the provider vouches for it."""

    receipt_id: str
    user_id: str
    pack_id: str
    coins: int
    price_eur_cents: int
    purchased_at: dt.datetime


class PaymentProvider(Protocol):
    name: str

    def verify_receipt(self, receipt: str) -> Purchase:
        """The purchase the receipt proves; `ReceiptRejected` otherwise."""
        ...


class ReceiptRejected(FailedPrecondition):
    """The provider does not vouch for this purchase; `why` says which check failed."""

    def __init__(self, description: str, why: str) -> None:
        super().__init__(f"receipt rejected: {description}", reason="RECEIPT_REJECTED", metadata={"why": why})


# The signed payload's layout, which client teams reproduce: the purchase time is an integer
# of microseconds since the Unix epoch.
_RECEIPT_FIELDS = {"receipt_id", "user_id", "pack_id", "coins", "price_eur_cents", "purchased_at_us"}


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class LocalPaymentProvider:
    """Ed25519-signed receipts, verified offline."""

    name = "local"

    def __init__(self, public_key: Ed25519PublicKey, *, signing_key: Ed25519PrivateKey | None = None) -> None:
        self._public_key = public_key
        self._signing_key = signing_key

    @classmethod
    def with_signing_key(cls, signing_key: Ed25519PrivateKey) -> LocalPaymentProvider:
        return cls(signing_key.public_key(), signing_key=signing_key)

    def issue_receipt(self, purchase: Purchase) -> str:
        """Sign a purchase (the shop front's side; the gifts service never needs this)."""
        if self._signing_key is None:
            raise RuntimeError("this provider only verifies receipts")
        fields: dict[str, object] = {**asdict(purchase), "purchased_at_us": epoch_us(purchase.purchased_at)}
        del fields["purchased_at"]
        payload = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._signing_key.sign(payload))}"

    def verify_receipt(self, receipt: str) -> Purchase:
        if len(receipt) > MAX_RECEIPT_CHARS or receipt.count(".") != 1:
            raise ReceiptRejected("not a receipt from the local provider", "MALFORMED")
        encoded_payload, encoded_signature = receipt.split(".")
        try:
            payload, signature = _b64decode(encoded_payload), _b64decode(encoded_signature)
        except (binascii.Error, ValueError):
            raise ReceiptRejected("receipt is not base64url", "MALFORMED") from None
        try:
            self._public_key.verify(signature, payload)
        except InvalidSignature:
            raise ReceiptRejected("receipt signature does not verify", "SIGNATURE_INVALID") from None
        try:
            fields = json.loads(payload)
            if not isinstance(fields, dict) or fields.keys() != _RECEIPT_FIELDS:
                raise ValueError("unknown fields")
        except ValueError:
            raise ReceiptRejected("signed receipt has an unknown layout", "MALFORMED") from None
        if not all(type(fields[name]) is int for name in ("coins", "price_eur_cents", "purchased_at_us")):
            raise ReceiptRejected("signed receipt has non-integer amounts", "MALFORMED")
        return Purchase(fields["receipt_id"], fields["user_id"], fields["pack_id"], fields["coins"],
                        fields["price_eur_cents"], from_epoch_us(fields["purchased_at_us"]))
