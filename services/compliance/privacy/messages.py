"""Privacy's domain values to and from limelight.compliance.v1 privacy messages."""

from __future__ import annotations

import datetime as dt

from limelight.compliance.v1 import privacy_pb2

from libs.privacy.sealing import DataKey


def data_key_out(key: DataKey, cache_ttl: dt.timedelta) -> privacy_pb2.GetDataKeyResponse:
    response = privacy_pb2.GetDataKeyResponse(key_id=key.key_id, key=key.material)
    response.cache_ttl.FromTimedelta(cache_ttl)
    return response
