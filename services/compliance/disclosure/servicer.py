"""Disclosure: whether content is advertising and labelled as its market demands, and AI-content labels.

`EvaluateDisclosure` (versioned disclosure rules as data, verdicts naming the rule set that
decided them) and `AssessAiContent` (C2PA evidence and the creator's declaration, EU AI
Act Art. 50) will live here.
Issue 10 builds it (the rooms: see services/compliance/README.md; its database:
`compliance/disclosure.db`); until then every RPC answers UNIMPLEMENTED.
"""

from __future__ import annotations

from limelight.compliance.v1 import disclosure_pb2_grpc

DISCLOSURE = "limelight.compliance.v1.DisclosureService"


class DisclosureServicer(disclosure_pb2_grpc.DisclosureServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the area is built."""
