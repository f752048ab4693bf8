"""Where each service listens and how to reach it.

Defaults suit one machine; every value can be overridden per service:
`LIMELIGHT_<SERVICE>_PORT` for the listening port and `LIMELIGHT_<SERVICE>_TARGET` for
the address end users dial (any gRPC target, e.g. `dns:///gifts.internal:443`). With TLS
on (`libs.kit.transport`), services call each other on the mutual-TLS mesh port:
`LIMELIGHT_<SERVICE>_MESH_PORT` (default: the port + 100) and
`LIMELIGHT_<SERVICE>_MESH_TARGET`.
"""

from __future__ import annotations

import os

DEFAULT_PORTS: dict[str, int] = {
    "ingest": 50051,
    "ranking": 50052,
    "gifts": 50053,
    "shop": 50054,
    "affiliate": 50055,
    "compliance": 50056,
}

SERVICES: tuple[str, ...] = tuple(DEFAULT_PORTS)


def listen_port(service: str) -> int:
    configured = os.environ.get(f"LIMELIGHT_{service.upper()}_PORT")
    return int(configured) if configured else DEFAULT_PORTS[service]


def target(service: str) -> str:
    return os.environ.get(f"LIMELIGHT_{service.upper()}_TARGET") or f"127.0.0.1:{listen_port(service)}"


MESH_PORT_OFFSET = 100


def mesh_port(service: str) -> int:
    configured = os.environ.get(f"LIMELIGHT_{service.upper()}_MESH_PORT")
    return int(configured) if configured else listen_port(service) + MESH_PORT_OFFSET


def mesh_target(service: str) -> str:
    return os.environ.get(f"LIMELIGHT_{service.upper()}_MESH_TARGET") or f"127.0.0.1:{mesh_port(service)}"
