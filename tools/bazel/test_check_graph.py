from __future__ import annotations

from tools.bazel.check_graph import Graph, Imports, import_problems, layer_problems, parse_query_xml, read_imports

FILES = {
    "libs/__init__.py",
    "libs/errors.py",
    "services/__init__.py",
    "services/gifts/__init__.py",
    "services/gifts/ledger.py",
    "services/gifts/conftest.py",
    "services/gifts/test_ledger.py",
    "services/ingest/__init__.py",
    "services/ingest/probe.py",
    "services/compliance/__init__.py",
    "services/compliance/server.py",
}


def rule(kind: str, label: str, srcs: list[str], deps: list[str], testonly: bool = False) -> str:
    listed = "".join(f'<label value="{src}"/>' for src in srcs)
    declared = "".join(f'<label value="{dep}"/>' for dep in deps)
    inputs = "".join(f'<rule-input name="{item}"/>' for item in srcs + deps)
    flag = '<boolean name="testonly" value="true"/>' if testonly else ""
    return (f'<rule class="{kind}" name="{label}">{flag}<list name="srcs">{listed}</list>'
            f'<list name="deps">{declared}</list>{inputs}</rule>')


def graph(gifts_deps: list[str], test_deps: list[str]) -> Graph:
    rules = [
        rule("py_library", "//libs:libs", ["//libs:__init__.py", "//libs:errors.py"], []),
        rule("py_library", "//services:services", ["//services:__init__.py"], []),
        rule("py_library", "//services/gifts:gifts",
             ["//services/gifts:__init__.py", "//services/gifts:ledger.py"], gifts_deps),
        rule("py_library", "//services/gifts:testing", ["//services/gifts:conftest.py"],
             ["//services/gifts:gifts", *test_deps], testonly=True),
        rule("py_test", "//services/gifts:pytest", ["//services/gifts:test_ledger.py"], ["//services/gifts:testing"]),
        rule("py_library", "//services/ingest:ingest",
             ["//services/ingest:__init__.py", "//services/ingest:probe.py"], ["//services:services"]),
        rule("py_library", "//services/compliance:compliance",
             ["//services/compliance:__init__.py", "//services/compliance:server.py"], ["//services:services"]),
        rule("py_library", "//services/compliance:testing", [], ["//services/compliance:compliance"], testonly=True),
    ]
    return Graph(parse_query_xml('<?xml version="1.1" encoding="UTF-8"?><query>' + "".join(rules) + "</query>"))


IMPORTS = {path: read_imports("") for path in FILES} | {
    "services/gifts/ledger.py": read_imports("from libs.errors import NotFound\n"),
    "services/gifts/conftest.py": read_imports("from services.compliance.server import build\n"),
    "services/gifts/test_ledger.py": read_imports("import services.gifts.ledger\nfrom libs import errors\n"),
}


def test_a_consistent_package_has_no_problems() -> None:
    declared = graph(["//libs:libs", "//services:services"], ["//services/compliance:testing"])
    assert import_problems(declared, IMPORTS, FILES) == []
    assert layer_problems(declared) == []


def test_a_library_must_declare_each_package_it_imports() -> None:
    declared = graph(["//services:services"], ["//services/compliance:testing"])
    problems = import_problems(declared, IMPORTS, FILES)
    assert "services/gifts/ledger.py: imports libs/errors.py but //services/gifts:gifts does not depend on //libs:libs" in (
        problems)
    # The tests lean on the library's deps, so they lose libs/ with it.
    assert "services/gifts/test_ledger.py: imports libs/errors.py but //services/gifts:pytest does not depend on //libs:libs" in (
        problems)


def test_a_dependency_nothing_imports_is_reported() -> None:
    declared = graph(["//libs:libs", "//services:services", "//services/ingest:ingest"],
                     ["//services/compliance:testing"])
    assert "//services/gifts:gifts: depends on //services/ingest:ingest, which no file in services/gifts imports" in (
        import_problems(declared, IMPORTS, FILES))


def test_a_service_reaching_another_service_is_reported_except_compliance_from_tests() -> None:
    declared = graph(["//libs:libs", "//services:services", "//services/ingest:ingest"],
                     ["//services/compliance:testing"])
    problems = layer_problems(declared)
    assert any(problem.startswith("//services/gifts:gifts reaches //services/ingest") for problem in problems)
    assert not any("compliance" in problem for problem in problems)


def test_production_code_may_not_reach_compliance_either() -> None:
    declared = graph(["//libs:libs", "//services:services", "//services/compliance:compliance"], [])
    assert any(problem.startswith("//services/gifts:gifts reaches //services/compliance")
               for problem in layer_problems(declared))


def test_imports_by_name_are_read_as_prefixes() -> None:
    found = read_imports('import importlib\nbuild = importlib.import_module(f"services.{name}.server").build\n')
    assert found == Imports(frozenset({"importlib"}), frozenset({"services."}))
