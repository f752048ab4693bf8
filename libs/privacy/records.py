"""A data map's processing activities as the Art. 30 record's messages (every service serves them)."""

from __future__ import annotations

from limelight.compliance.v1 import privacy_pb2

from libs.privacy.data_map import DataMap


def activities_out(data_map: DataMap) -> list[privacy_pb2.ProcessingActivity]:
    return [privacy_pb2.ProcessingActivity(
        activity_id=activity.activity_id, purpose=activity.purpose, legal_basis=activity.legal_basis,
        subject_categories=list(activity.subject_categories), data_categories=list(activity.data_categories),
        recipients=list(activity.recipients), third_country_transfers=list(activity.third_country_transfers),
        retention=activity.retention, service=data_map.service) for activity in data_map.activities]
