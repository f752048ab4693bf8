"""The shape holds: the domain and the use cases import no transport, storage, Ray or tracing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FORBIDDEN = ("grpc", "sqlite3", "ray", "opentelemetry", "limelight", "google.protobuf", "services.gifts.store",
             "services.gifts.servicer", "services.gifts.server", "services.gifts.runner",
             "services.gifts.ledger_process", "libs.kit", "libs.storage")
CORE = sorted([*HERE.glob("model/*.py"), *HERE.glob("usecases/*.py")])


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda path: str(path.relative_to(HERE)))
def test_the_domain_and_the_use_cases_import_no_adapter(path: Path) -> None:
    bad = sorted(name for name in _imports(path)
                 if any(name == banned or name.startswith(f"{banned}.") for banned in FORBIDDEN))
    assert bad == [], f"{path.name} imports {bad}"


def test_the_rule_sees_the_rooms() -> None:
    assert {path.parent.name for path in CORE} == {"model", "usecases"} and len(CORE) > 15
