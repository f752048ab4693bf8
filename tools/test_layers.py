"""The import rules that hold every service's shape (docs/conventions.md, "Rooms").

- A domain module (a service's `model.py`, `usecases.py`, anything in a `model/` or
  `usecases/` folder, in `services/<service>/` or `services/compliance/<area>/`, and the
  pure modules named in PURE_MODULES) imports no transport, storage, compute or tracing:
  not grpc, sqlite3, ray or opentelemetry, not a store and not a servicer.
- OpenTelemetry is imported only under `libs/kit/`, in the code of libs/ and services/.
  (Tests may inspect spans and benchmarks measure the kit against bare SDK spans.)

Under Bazel the files come from //:python_files in the runfiles tree, else from the checkout.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tools.repository import repository_root

ROOT = repository_root()

# Modules outside the rooms that their service or library names as pure (no I/O) in their
# docstring or in docs/conventions.md. When one moves into model.py or usecases.py, drop it here.
PURE_MODULES = (
    "libs/errors.py",
    "libs/clock.py",
    "libs/auth/principal.py",
    "libs/audit/events.py",
    "libs/tlog/checkpoint.py",
    "libs/tlog/export.py",
    "libs/tlog/hashing.py",
    "libs/tlog/note.py",
    "libs/tlog/proofs.py",
    "services/compliance/audit/merkle.py",
    "services/compliance/disclosure/advertising.py",
    "services/compliance/disclosure/ai_content.py",
    "services/compliance/disclosure/text.py",
    "services/ingest/hls.py",
    "services/ingest/ladder.py",
    "services/ingest/uploads.py",
)

# services/<service>/model.py, services/compliance/<area>/usecases/..., and so on.
ROOM = re.compile(r"^services/([a-z_]+/)?[a-z_]+/(model|usecases)(\.py|/.+\.py)$")

# What a domain module may not import: transport, storage, compute, tracing, and the adapters.
FORBIDDEN_IN_DOMAIN = re.compile(
    r"^(grpc|sqlite3|ray|opentelemetry)(\.|$)"  # the libraries themselves
    r"|(^|\.)(store|servicer|server)(\.|$)"  # a store or servicer module: services.gifts.store, .../servicer
    r"|_pb2_grpc$"  # generated servicers and stubs
    r"|^libs\.storage\.sqlite$"  # the SQLite adapter
    r"|^libs\.kit(\.|$)"  # the gRPC kit
)

OPENTELEMETRY = re.compile(r"^opentelemetry(\.|$)")


def imported_modules(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (an import inside a function still counts)."""
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                modules.append("." * node.level + node.module)
            else:
                modules.append(node.module)
                modules.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def is_code(relative: str) -> bool:
    name = relative.rpartition("/")[2]
    return not name.startswith("test_") and name != "conftest.py"


def python_files(*folders: str) -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for folder in folders
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def domain_modules() -> list[str]:
    rooms = [relative for relative in python_files("services") if ROOM.match(relative) and is_code(relative)]
    return sorted(set(rooms) | set(PURE_MODULES))


def forbidden_imports(relative: str, rule: re.Pattern[str]) -> list[str]:
    return sorted({module for module in imported_modules(ROOT / relative) if rule.search(module)})


def test_every_named_pure_module_exists() -> None:
    missing = [relative for relative in PURE_MODULES if not (ROOT / relative).is_file()]
    assert missing == [], "moved or removed: update PURE_MODULES in tools/test_layers.py"


@pytest.mark.parametrize("relative", domain_modules())
def test_a_domain_module_imports_no_transport_storage_or_tracing(relative: str) -> None:
    assert forbidden_imports(relative, FORBIDDEN_IN_DOMAIN) == []


def test_opentelemetry_is_imported_only_by_the_kit() -> None:
    outside_kit = {
        relative: forbidden_imports(relative, OPENTELEMETRY)
        for relative in python_files("libs", "services")
        if is_code(relative) and not relative.startswith("libs/kit/")
    }
    assert {relative: modules for relative, modules in outside_kit.items() if modules} == {}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("grpc", True),
        ("grpc.aio", True),
        ("sqlite3", True),
        ("ray.util", True),
        ("opentelemetry.trace", True),
        ("services.gifts.store", True),
        ("services.compliance.audit.store", True),
        ("services.gifts.servicer", True),
        ("limelight.gifts.v1.gifts_pb2_grpc", True),
        ("libs.kit.context", True),
        ("libs.storage.sqlite", True),
        ("grpcio_status", False),
        ("services.gifts.model", False),
        ("services.ingest.storefront", False),
        ("limelight.gifts.v1.gifts_pb2", False),
        ("libs.errors", False),
        ("libs.clock", False),
    ],
)
def test_the_domain_rule_names_what_it_forbids(module: str, forbidden: bool) -> None:
    assert bool(FORBIDDEN_IN_DOMAIN.search(module)) is forbidden


@pytest.mark.parametrize(
    ("relative", "room"),
    [
        ("services/gifts/model.py", True),
        ("services/gifts/usecases.py", True),
        ("services/gifts/model/ledger.py", True),
        ("services/compliance/consent/model.py", True),
        ("services/compliance/audit/usecases/append.py", True),
        ("services/gifts/store.py", False),
        ("services/gifts/modelling.py", False),
        ("libs/kit/model.py", False),
    ],
)
def test_rooms_are_recognised_in_services_and_compliance_areas(relative: str, room: bool) -> None:
    assert bool(ROOM.match(relative)) is room
