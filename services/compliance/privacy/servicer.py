"""Privacy: data-subject requests (GDPR Art. 12, 15, 17, 20, 22) and records of processing (Art. 30).

Access, portability and erasure requests with their deadlines, gathering every service's
export, erasure by crypto-shredding, and `ListProcessingActivities` will live here.
Issue 11 builds it (the rooms: see services/compliance/README.md; its database:
`compliance/privacy.db`); until then every RPC answers UNIMPLEMENTED.
"""

from __future__ import annotations

from limelight.compliance.v1 import privacy_pb2_grpc

DATA_SUBJECT = "limelight.compliance.v1.DataSubjectService"


class DataSubjectServicer(privacy_pb2_grpc.DataSubjectServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the area is built."""
