"""Privacy's gRPC handlers and the area's entry point.

The compliance server wires this area with `build(runtime)`: it registers each servicer of
`area.servicers`, merges `area.policy`, and calls `area.on_stop()` from its own hook.
`DataSubjectService` is not built yet: unregistered, the package serves it as UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from limelight.compliance.v1 import privacy_pb2, privacy_pb2_grpc

from libs.auth.principal import Role
from libs.clock import Clock, utc_now
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.server import ServiceRuntime
from services.compliance.privacy import messages
from services.compliance.privacy.config import PrivacyConfig
from services.compliance.privacy.keyfile import LocalKeyEncryptionKey
from services.compliance.privacy.store import SqlitePrivacyStore
from services.compliance.privacy.usecases import DataKeys, KeyEncryptionKey

DATA_KEYS = "limelight.compliance.v1.PersonalDataKeyService"
Context = grpc.aio.ServicerContext[Any, Any]

# A data key opens everything a service holds about its subject: services only, never a person.
POLICY = AccessPolicy(roles=method_paths(DATA_KEYS, {"GetDataKey": frozenset({Role.SERVICE})}))


class PersonalDataKeyServicer(privacy_pb2_grpc.PersonalDataKeyServiceServicer):
    def __init__(self, keys: DataKeys, config: PrivacyConfig) -> None:
        self._keys = keys
        self._config = config

    async def GetDataKey(self, request: privacy_pb2.GetDataKeyRequest, context: Context) -> privacy_pb2.GetDataKeyResponse:
        if request.key_id:
            key = await asyncio.to_thread(self._keys.key, request.subject, request.key_id)
        else:
            key = await asyncio.to_thread(self._keys.current_key, request.subject)
        return messages.data_key_out(key, self._config.key_cache_ttl)


@dataclass
class PrivacyArea:
    """What the privacy area adds to the compliance server."""

    keys: DataKeys
    store: SqlitePrivacyStore
    servicers: Mapping[str, object]
    policy: AccessPolicy = POLICY

    async def on_stop(self) -> None:
        await asyncio.to_thread(self.store.close)


def build(runtime: ServiceRuntime, *, clock: Clock = utc_now, kek: KeyEncryptionKey | None = None,
          config: PrivacyConfig | None = None) -> PrivacyArea:
    """The area over `<data>/compliance/privacy.db`; the key-encryption key defaults to the local key file."""
    store = SqlitePrivacyStore.open(runtime.data_root)
    keys = DataKeys(store, kek or LocalKeyEncryptionKey.for_deployment(runtime.data_root), clock)
    servicers: dict[str, object] = {
        DATA_KEYS: PersonalDataKeyServicer(keys, config or PrivacyConfig.from_environment()),
    }
    return PrivacyArea(keys, store, servicers)
