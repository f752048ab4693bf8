"""pytest under Bazel: py_test targets whose main program runs pytest on their test files."""

_RUNNER = "//tools/bazel:pytest_runner.py"

# Tests run their servers on loopback in plaintext, by explicit choice (the root
# conftest.py makes the same one for a plain `pytest`); the TLS tests pass their
# transport explicitly, and tests/test_platform_up.py runs `limelight up` with TLS on.
TEST_ENV = {"LIMELIGHT_TLS": "off"}

def pytest_test(name, srcs, deps = [], data = [], size = "medium", timeout = None, tags = []):
    """A py_test that runs pytest on `srcs` with the repository root as rootdir.

    Args:
      name: target name.
      srcs: the test_*.py files to run.
      deps: py_library targets the tests import (code under test, generated stubs).
      data: files the tests read at run time (pyproject.toml, which holds pytest's
        options, is always added).
      size: Bazel test size; it also sets the default timeout.
      timeout: Bazel's hard limit for the whole target, over pytest-timeout's per-test limit.
      tags: Bazel test tags, e.g. "exclusive" for suites that need the machine alone.
    """
    package = native.package_name()
    native.py_test(
        name = name,
        srcs = [_RUNNER] + srcs,
        main = _RUNNER,
        # Paths from the repository root, where the runner starts pytest.
        args = [package + "/" + src if package else src for src in srcs],
        deps = deps,
        data = data + ["//:pyproject.toml"],
        size = size,
        timeout = timeout,
        tags = tags,
        env = TEST_ENV,
        python_version = "PY3",
        # Bazel would otherwise write __init__.py into every runfiles directory,
        # including the runfiles root itself. That root is the `limelight` workspace
        # folder, so the generated `limelight.<service>.v1` stubs would be shadowed
        # by it, and pytest would import test files as `limelight.libs...` instead
        # of `libs...` as a plain pytest run does.
        legacy_create_init = False,
    )
