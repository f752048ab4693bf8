"""Pseudonymous subject references: how the log records whom an event is about.

The log is append-only and handed to regulators, so it must hold no direct identifiers
(names, e-mail or IP addresses, free text written by users). The person an event is
about is recorded as `subject_ref`, an HMAC-SHA256 of their identifier under a
per-deployment secret:
- stable, so an officer can find every event about one person;
- keyed, because identifiers are few and guessable: a plain hash of `users/42` is
  reversed by hashing every candidate;
- one-way, so after erasure (GDPR Art. 17, by crypto-shredding the person's data in
  the owning services) the log keeps only entries nobody without the secret can link
  to them, and the tree stays intact.
Actors and resources are Limelight resource names, which carry opaque ids only.

Every service and the compliance service share the secret (a file under the data
directory, like the platform key); a multi-node deployment distributes it the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from libs.storage.paths import data_dir
from libs.storage.secret_files import read_or_create_secret

SECRET_BYTES = 32


def secret_path(root: Path | None = None) -> Path:
    return (root or data_dir()) / "keys" / "audit-pseudonym.secret"


class Pseudonymizer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the pseudonymisation secret must be at least {SECRET_BYTES} bytes")
        self._secret = secret

    @classmethod
    def for_deployment(cls, root: Path | None = None) -> Pseudonymizer:
        return cls(read_or_create_secret(secret_path(root), lambda: secrets.token_bytes(SECRET_BYTES)))

    def subject_ref(self, subject: str) -> str:
        """The reference for `subject` (e.g. `users/42`); '' for no subject."""
        if not subject:
            return ""
        return hmac.digest(self._secret, subject.encode(), hashlib.sha256).hex()  # one-shot C path, same value
