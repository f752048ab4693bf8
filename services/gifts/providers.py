"""What this deployment brings from its data directory: the payment providers it trusts
(keyed by the name a receipt gives) and the secret its audit events are pseudonymised with."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.keys import load_or_create_private_key
from services.gifts.audit_events import PlatformEvents
from services.gifts.model.payments import LocalPaymentProvider, PaymentProvider


def local_payment_provider(root: Path) -> LocalPaymentProvider:
    """The embedded provider; its key lives with the data (the shop front signs with it)."""
    key = load_or_create_private_key(root / "keys" / "local-payments-ed25519.pem")
    return LocalPaymentProvider(key.public_key())


def payments_of(*providers: PaymentProvider) -> Mapping[str, PaymentProvider]:
    return {provider.name: provider for provider in providers}


def deployment_events(root: Path) -> PlatformEvents:
    """How this deployment writes audit events: subjects pseudonymised with its own secret."""
    return PlatformEvents(Pseudonymizer.for_deployment(root))


def deployment_payments(root: Path) -> Mapping[str, PaymentProvider]:
    return payments_of(local_payment_provider(root))
