"""Checks that the Bazel graph matches the code: run by tools/test.sh before `bazel test`.

It reads the graph from `bazel query` (so it runs outside Bazel, never as a test target)
and the imports from the sources, and fails when:

- a Python file under libs/, services/, tools/ or tests/ belongs to no library or test
  target, a test file to no test target, or a file is missing from //:python_files (the
  tree-wide checks would not see it);
- a library imports a package it does not list in its deps, or a test imports code its
  target does not reach (Bazel itself would notice only when that line runs);
- a package declares a dependency on another package that none of its files imports
  (stale deps re-run tests for nothing and hide the real shape);
- a service's tests reach another service's code. Compliance is the exception: it is
  the audit sink other tests run for real, through its testonly `:testing` target.
  `bazel query 'somepath(//services/gifts:pytest, //services/ingest/...:*)'` is run as
  well, and must answer nothing.

Visibility already stops a service's library from depending on another service, and
libs/ from depending on any (Bazel fails the build); this adds what visibility cannot
see: undeclared imports, unused deps, and test-time reach.

Usage: python3 tools/bazel/check_graph.py   (from the repository root, bazel on PATH)
Exit status: 0 when the graph is consistent, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CODE_FOLDERS = ("libs", "services", "tools", "tests")
STUB_PACKAGES = ("limelight", "buf")
STUBS_TARGET = "//:stubs_py"
ALL_PYTHON_FILES = "//:python_files"
# The service other services' tests may run for real (the audit trail they write to).
SHARED_TEST_SERVICE = "compliance"
RULE_KINDS = "py_library|py_test|py_binary|filegroup"


@dataclass
class Rule:
    label: str
    kind: str
    srcs: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    testonly: bool = False

    @property
    def is_test_code(self) -> bool:
        return self.testonly or self.kind == "py_test"

    @property
    def package(self) -> str:
        return package_of(self.label)


def package_of(label: str) -> str:
    return label.removeprefix("//").partition(":")[0]


def file_of(label: str) -> str:
    """`//services/gifts:store.py` -> `services/gifts/store.py`."""
    package, _, name = label.removeprefix("//").partition(":")
    return f"{package}/{name}" if package else name


def parse_query_xml(text: str) -> dict[str, Rule]:
    # Bazel writes XML 1.1, which expat refuses; the content is 1.0-compatible.
    root = ElementTree.fromstring(text.replace('<?xml version="1.1"', '<?xml version="1.0"', 1))
    rules: dict[str, Rule] = {}
    for element in root.iter("rule"):
        rule = Rule(label=element.attrib["name"], kind=element.attrib["class"])
        for attribute in element.findall("list"):
            labels = [label.attrib["value"] for label in attribute.findall("label")]
            if attribute.attrib["name"] == "srcs":
                rule.srcs = labels
            elif attribute.attrib["name"] == "deps":
                rule.deps = labels
        rule.inputs = [item.attrib["name"] for item in element.findall("rule-input")]
        rule.testonly = any(
            flag.attrib["name"] == "testonly" and flag.attrib["value"] == "true" for flag in element.findall("boolean")
        )
        rules[rule.label] = rule
    return rules


@dataclass(frozen=True)
class Imports:
    """What one file imports: dotted module names, and prefixes of modules it imports by name."""

    modules: frozenset[str]
    by_name_prefixes: frozenset[str]


def read_imports(source: str) -> Imports:
    modules: set[str] = set()
    prefixes: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from libs.kit import config` may name a module or an attribute: keep both readings.
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
        ):
            # importlib.import_module(f"services.{service}.server"): the wiring loads services by name.
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                modules.add(first.value)
            elif isinstance(first, ast.JoinedStr) and first.values and isinstance(first.values[0], ast.Constant):
                prefixes.add(str(first.values[0].value))
    return Imports(frozenset(modules), frozenset(prefixes))


def module_file(module: str, files: set[str]) -> str | None:
    """The file that defines `module` (the longest importable prefix), if it is ours."""
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        base = "/".join(parts[:length])
        for candidate in (f"{base}.py", f"{base}/__init__.py"):
            if candidate in files:
                return candidate
    return None


def parent_markers(path: str, files: set[str]) -> Iterator[str]:
    """The `__init__.py` of every folder above `path`'s own: pytest and Python need the chain."""
    folders = path.split("/")[:-1]
    for depth in range(1, len(folders)):
        marker = "/".join(folders[:depth]) + "/__init__.py"
        if marker in files:
            yield marker


class Graph:
    def __init__(self, rules: dict[str, Rule]) -> None:
        self.rules = rules
        self.python_rules = {label: rule for label, rule in rules.items() if rule.kind != "filegroup"}
        # A file's owner is the library that holds it (a binary re-lists a library's main file).
        self.owner: dict[str, str] = {}
        for rule in sorted(self.python_rules.values(), key=lambda rule: rule.kind != "py_library"):
            for src in rule.srcs:
                self.owner.setdefault(file_of(src), rule.label)
        self._reach: dict[str, frozenset[str]] = {}

    def reach(self, label: str) -> frozenset[str]:
        """Every target and file `label` depends on, itself included (all edges, as `deps()` follows)."""
        if label not in self._reach:
            self._reach[label] = frozenset()  # guards against cycles, which Bazel forbids anyway
            found = {label}
            rule = self.rules.get(label)
            for item in rule.inputs if rule else []:
                found |= self.reach(item) if item in self.rules else {item}
            self._reach[label] = frozenset(found)
        return self._reach[label]


def unowned_files(graph: Graph, files: Iterable[str], grouped: set[str]) -> list[str]:
    problems = []
    tested = {file_of(src) for rule in graph.python_rules.values() if rule.kind == "py_test" for src in rule.srcs}
    for path in sorted(files):
        name = path.rpartition("/")[2]
        if path not in graph.owner:
            problems.append(f"{path}: belongs to no py_library or test target (is its folder's BUILD.bazel missing?)")
        elif name.startswith("test_") and path not in tested:
            problems.append(f"{path}: a test file outside every test target")
        if path not in grouped:
            problems.append(f"{path}: missing from {ALL_PYTHON_FILES} (add its package to PACKAGES in BUILD.bazel)")
    return problems


def import_problems(graph: Graph, imports: dict[str, Imports], files: set[str]) -> list[str]:
    problems: list[str] = []
    used_packages: dict[str, set[str]] = {}
    for path, found in sorted(imports.items()):
        label = graph.owner.get(path)
        if label is None:
            continue  # reported as unowned
        rule = graph.rules[label]
        used = used_packages.setdefault(rule.package, set())
        needed = {module_file(module, files) for module in found.modules}
        if not path.endswith("/__init__.py"):
            # A package marker's own chain comes with the code that needs it.
            needed |= set(parent_markers(path, files))
        for target_file in sorted(filter(None, needed)):
            target = graph.owner.get(target_file)
            if target is None or target == label:
                continue
            used.add(package_of(target))
            # Whatever the file imports must be among the target's runfiles; a library also
            # names each package it imports, so its BUILD file reads as its layer. (Tests may
            # lean on what their package's library brings along.)
            declared = target in graph.reach(label) and (
                rule.is_test_code or package_of(target) in {rule.package, *map(package_of, rule.deps)}
            )
            if not declared:
                problems.append(f"{path}: imports {target_file} but {label} does not depend on {target}")
        if any(module.split(".")[0] in STUB_PACKAGES for module in found.modules):
            used.add(package_of(STUBS_TARGET))
            if STUBS_TARGET not in graph.reach(label):
                problems.append(f"{path}: imports generated stubs but {label} does not depend on {STUBS_TARGET}")
        for prefix in found.by_name_prefixes:
            folder = prefix.replace(".", "/")
            used.update(package_of(graph.owner[other]) for other in files
                        if other.startswith(folder) and other in graph.owner)

    for label, rule in sorted(graph.python_rules.items()):
        for dep in rule.deps:
            dep_package = package_of(dep)
            if dep_package != rule.package and dep_package not in used_packages.get(rule.package, set()):
                problems.append(f"{label}: depends on {dep}, which no file in {rule.package or '//'} imports")
    return problems


def layer_problems(graph: Graph) -> list[str]:
    """Reach, not just direct deps: no service's code reaches another service, libs/ reaches none.

    Test code may reach compliance, the audit sink it writes to, through compliance's
    testonly `:testing` target.
    """
    problems = []
    for label, rule in sorted(graph.python_rules.items()):
        layer, _, rest = rule.package.partition("/")
        if layer not in ("libs", "services"):
            continue
        own = rest.partition("/")[0] if layer == "services" else None
        allowed = {own, SHARED_TEST_SERVICE} if rule.is_test_code else {own}
        for item in sorted(graph.reach(label)):
            top, _, below = package_of(item).partition("/")
            if top == "services" and below and below.partition("/")[0] not in allowed:
                problems.append(f"{label} reaches {item}: {layer}/ code never depends on another service")
                break
    return problems


def bazel_query(expression: str, output: str = "label") -> str:
    completed = subprocess.run(
        ["bazel", "query", "--noshow_progress", "--ui_event_filters=-info", f"--output={output}", expression],
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bazel query {expression!r} failed:\n{completed.stderr}")
    return completed.stdout


def python_files(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for folder in CODE_FOLDERS
        for path in (root / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }


def main(root: Path) -> int:
    rules = parse_query_xml(bazel_query(f'kind("{RULE_KINDS}", //...)', output="xml"))
    graph = Graph(rules)
    files = python_files(root)
    grouped = {
        file_of(src)
        for group in rules[ALL_PYTHON_FILES].srcs
        for src in rules[group].srcs
    }
    imports = {path: read_imports((root / path).read_text()) for path in files}

    problems = unowned_files(graph, files, grouped)
    problems += import_problems(graph, imports, files)
    problems += layer_problems(graph)
    path = bazel_query("somepath(//services/gifts:pytest, //services/ingest/...:*)").split()
    if path:
        problems.append("gifts' tests depend on ingest's code: " + " -> ".join(path))

    for problem in problems:
        print(problem, file=sys.stderr)
    checked = len(graph.python_rules)
    print(f"check_graph: {checked} targets, {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path.cwd()))
