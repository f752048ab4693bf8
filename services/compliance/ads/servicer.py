"""Ads: the DSA ad repository (Art. 26, 39) and the targeting check (Art. 28).

Records of every ad and piece of commercial content with the Art. 39(2) fields, reach
per member state, search, the retention sweep, and `CheckAdTargeting` will live here.
Issue 10 builds it (the rooms: see services/compliance/README.md; its database:
`compliance/ads.db`); until then every RPC answers UNIMPLEMENTED.
"""

from __future__ import annotations

from limelight.compliance.v1 import ads_pb2_grpc

AD_REPOSITORY = "limelight.compliance.v1.AdRepositoryService"


class AdRepositoryServicer(ads_pb2_grpc.AdRepositoryServiceServicer):
    """Every RPC answers UNIMPLEMENTED until the area is built."""
