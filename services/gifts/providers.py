"""What this deployment brings from its data directory: the payment providers it trusts
(keyed by the name a receipt gives) and the secret its audit events are pseudonymised with."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path

from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.keys import load_or_create_private_key
from libs.storage.secret_files import read_or_create_secret
from services.gifts.audit_events import PlatformEvents
from services.gifts.model.catalog import Catalog
from services.gifts.model.names import TransactionIds
from services.gifts.model.payments import LocalPaymentProvider, PaymentProvider, Purchase


def _local_key_path(root: Path) -> Path:
    return root / "keys" / "local-payments-ed25519.pem"


def local_payment_provider(root: Path) -> LocalPaymentProvider:
    """The embedded provider; its key lives with the data (the shop front signs with it)."""
    return LocalPaymentProvider(load_or_create_private_key(_local_key_path(root)).public_key())


def issue_dev_receipt(root: Path, catalog: Catalog, *, user_id: str, pack_id: str, now: dt.datetime,
                      receipt_id: str | None = None) -> str:
    """A receipt from this deployment's local provider for one published pack, as its shop
    front would issue it (`limelight dev receipt`, and tests): nobody handles the key."""
    pack = catalog.pack(pack_id)
    if pack is None:
        known = ", ".join(known.pack_id for known in catalog.packs)
        raise ValueError(f"no coin pack {pack_id!r}; the catalog sells {known}")
    issuer = LocalPaymentProvider.with_signing_key(load_or_create_private_key(_local_key_path(root)))
    return issuer.issue_receipt(Purchase(receipt_id or str(uuid.uuid4()), user_id, pack.pack_id, pack.coins,
                                         pack.price_eur_cents, now))


def payments_of(*providers: PaymentProvider) -> Mapping[str, PaymentProvider]:
    return {provider.name: provider for provider in providers}


def deployment_events(root: Path) -> PlatformEvents:
    """How this deployment writes audit events: subjects pseudonymised with its own secret."""
    return PlatformEvents(Pseudonymizer.for_deployment(root))


def deployment_transaction_ids(root: Path) -> TransactionIds:
    """The key that hides the ledger's row ids in transaction names: one per deployment, kept
    with the data, so that names stay the same across restarts and processes."""
    return TransactionIds(read_or_create_secret(root / "keys" / "gifts-transaction-ids.secret",
                                                lambda: secrets.token_bytes(32)))


def deployment_payments(root: Path) -> Mapping[str, PaymentProvider]:
    return payments_of(local_payment_provider(root))
