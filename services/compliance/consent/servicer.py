"""Consent: per user and purpose, with proof (GDPR Art. 7), and TCF v2.3 strings.

Append-only consent records, the current state per purpose, `CheckConsent` for the hot
paths of ranking, ads and affiliate clicks, and strict TC-string validation will live here.
Issue 11 builds it (the rooms: see services/compliance/README.md; its database:
`compliance/consent.db`); until then every RPC answers UNIMPLEMENTED.
"""

from __future__ import annotations

from limelight.compliance.v1 import consent_pb2_grpc

CONSENT = "limelight.compliance.v1.ConsentService"


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the area is built."""
