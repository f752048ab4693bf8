"""One Python package (a folder with its own BUILD.bazel): its library, its test fixtures, its tests.

Every package under libs/, services/ and tests/ is declared the same way, so a BUILD file
names only what differs: the packages it imports (`deps`, `test_deps`) and who may import
it (`visibility`). Sources are found by glob, so files can move inside the package without
a BUILD change; `tools/bazel/check_graph.py` (run by tools/test.sh) fails when the imports
and the declared deps drift apart.

    load("//tools/bazel:py_package.bzl", "py_package")

    py_package(
        name = "gifts",
        deps = ["//:stubs_py", "//libs", "//libs/kit"],
        test_deps = ["//tools"],
        visibility = SERVICE_VISIBILITY,
    )

declares
    :package  py_library  the folder's __init__.py alone, with separate_marker = True
    :gifts    py_library  every other *.py but test_*.py and conftest.py
    :testing  py_library  conftest.py files (testonly), when the package has any
    :pytest   py_test     every test_*.py in one pytest process
    :files    filegroup   all sources, for the tree-wide checks (//tools:layers, //tools:types)
"""

load(":pytest.bzl", "pytest_test")

# Who may import a service's code: the service itself (and its sub-packages), the
# wiring in tools/ (the `limelight` CLI, benchmarks) and the cross-service tests.
# Never another service and never libs/: Bazel fails the build on such a dependency.
SERVICE_VISIBILITY = [
    "//tools:__subpackages__",
    "//tests:__subpackages__",
]

_TESTS = ["**/test_*.py"]
_FIXTURES = ["**/conftest.py"]

def py_package(
        name,
        deps = [],
        test_deps = [],
        data = [],
        test_data = [],
        visibility = ["//visibility:public"],
        testing_visibility = None,
        exclusive = False,
        separate_marker = False):
    """Declares a package's library, fixtures, tests and file list.

    Args:
      name: the library's name, the folder's name by convention (`//libs/kit` is `//libs/kit:kit`).
      deps: what the library imports: other packages' libraries, `//:stubs_py` for generated stubs.
      test_deps: what the tests and fixtures import beyond the library and its deps.
      data: non-Python files the library reads at run time (SQL, templates).
      test_data: files the tests read.
      visibility: who may depend on the library; the package's own targets always may.
      testing_visibility: who may use the fixtures (`:testing`); defaults to the package only.
        A service that other packages' tests run for real (compliance) opens it to them:
        a testonly target cannot reach production code.
      exclusive: run the tests alone (Ray-heavy or whole-platform suites on two cores).
      separate_marker: declare `:package`, the folder's __init__.py alone, for a parent whose
        sub-packages it imports (services/compliance composing its areas): they depend on
        `:package`, the parent's library on them, and there is no cycle.
    """
    package = native.package_name()
    own = ["//%s:__subpackages__" % package]
    library_visibility = visibility if "//visibility:public" in visibility else own + visibility

    # The package marker on its own, so a sub-package (services/compliance/consent) can
    # have it without depending on the parent's code, which imports the sub-package.
    marker = native.glob(["__init__.py"]) if separate_marker else []
    if marker:
        native.py_library(
            name = "package",
            srcs = marker,
            visibility = library_visibility,
        )

    native.py_library(
        name = name,
        srcs = native.glob(["**/*.py"], exclude = _TESTS + _FIXTURES + marker),
        data = data,
        deps = deps + [":package" for _ in marker],
        visibility = library_visibility,
    )

    fixtures = native.glob(_FIXTURES)
    tested = [":" + name]
    if fixtures:
        native.py_library(
            name = "testing",
            testonly = True,
            srcs = fixtures,
            deps = [":" + name] + test_deps,
            visibility = own + (testing_visibility or []),
        )
        tested = [":testing"]

    tests = native.glob(_TESTS)
    if tests:
        pytest_test(
            name = "pytest",
            srcs = tests,
            deps = tested + test_deps,
            data = test_data,
            size = "large" if exclusive else "medium",
            # A package's suite may run for minutes on two cores; pytest-timeout
            # (pyproject.toml) still stops any single test after 300 s.
            timeout = "long",
            tags = ["exclusive"] if exclusive else [],
        )

    native.filegroup(
        name = "files",
        srcs = native.glob(["**/*.py"]) + data + test_data,
        visibility = ["//visibility:public"],
    )
