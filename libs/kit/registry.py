"""Finding the gRPC services a generated proto package declares.

A service registers the servicers it implements; every other service of its package is
registered with the generated base class, which answers UNIMPLEMENTED. So a server
always exposes its whole contract, and reflection shows all of it. A server may also
implement a shared service declared in another package (`limelight.privacy.v1`'s
SubjectDataService, which every service holding personal data serves).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from libs.kit.interceptors import HandlerRegistry


@dataclass(frozen=True)
class ProtoService:
    full_name: str
    servicer_base: type
    add_to_server: Callable[[Any, HandlerRegistry], None]


def proto_services(package: str) -> list[ProtoService]:
    """Every service in a generated package such as `limelight.gifts.v1`, by full name."""
    found: list[ProtoService] = []
    for module_info in sorted(pkgutil.iter_modules(importlib.import_module(package).__path__), key=lambda m: m.name):
        if not module_info.name.endswith("_pb2_grpc"):
            continue
        grpc_module = importlib.import_module(f"{package}.{module_info.name}")
        messages_module = importlib.import_module(f"{package}.{module_info.name.removesuffix('_grpc')}")
        for name, descriptor in messages_module.DESCRIPTOR.services_by_name.items():
            found.append(
                ProtoService(
                    full_name=descriptor.full_name,
                    servicer_base=getattr(grpc_module, f"{name}Servicer"),
                    add_to_server=getattr(grpc_module, f"add_{name}Servicer_to_server"),
                )
            )
    return found


def package_of(full_name: str) -> str:
    """`limelight.privacy.v1` of `limelight.privacy.v1.SubjectDataService`."""
    return full_name.rpartition(".")[0]


def registrar(package: str, implementations: Mapping[str, object]) -> tuple[list[str], Callable[[HandlerRegistry], None]]:
    """(service names, register function) for a package, with base servicers where unimplemented,
    plus the shared services of other packages that `implementations` names."""
    services = proto_services(package)
    for shared_package in sorted({package_of(name) for name in implementations} - {package}):
        services += [service for service in proto_services(shared_package) if service.full_name in implementations]
    unknown = set(implementations) - {service.full_name for service in services}
    if unknown:
        raise ValueError(f"no generated package declares a service named {sorted(unknown)}")

    def register(server: HandlerRegistry) -> None:
        for service in services:
            servicer = implementations.get(service.full_name) or service.servicer_base()
            service.add_to_server(servicer, server)

    return [service.full_name for service in services], register
