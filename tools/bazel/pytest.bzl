"""pytest under Bazel: py_test targets whose main program runs pytest on their test files."""

_RUNNER = "//tools/bazel:pytest_runner.py"

def pytest_test(name, srcs, deps = [], data = [], size = "medium", timeout = None, tags = []):
    """A py_test that runs pytest on `srcs` with the repository root as rootdir.

    Args:
      name: target name.
      srcs: the test_*.py files to run.
      deps: py_library targets the tests import (code under test, generated stubs).
      data: files the tests read at run time.
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
        data = data,
        size = size,
        timeout = timeout,
        tags = tags,
        python_version = "PY3",
        # Bazel would otherwise write __init__.py into every runfiles directory,
        # including the runfiles root itself. That root is the `limelight` workspace
        # folder, so the generated `limelight.<service>.v1` stubs would be shadowed
        # by it, and pytest would import test files as `limelight.libs...` instead
        # of `libs...` as a plain pytest run does.
        legacy_create_init = False,
    )

def pytest_per_directory(test_files, deps = [], data = [], exclusive_under = []):
    """One pytest_test per directory holding test files, named `<directory>/pytest`.

    A directory's files share one pytest process, so session fixtures (a local
    Ray, a running platform) start once per directory, while directories still
    run in parallel and cache their results separately.

    Args:
      test_files: test_*.py paths relative to this package, usually a glob.
      deps: py_library targets every test imports.
      data: files every test may read.
      exclusive_under: directory prefixes whose tests run alone, with a long timeout.
    """
    files_by_directory = {}
    for path in test_files:
        directory = path.rpartition("/")[0]
        files_by_directory.setdefault(directory, []).append(path)

    for directory, files in sorted(files_by_directory.items()):
        exclusive = [
            prefix
            for prefix in exclusive_under
            if directory == prefix or directory.startswith(prefix + "/")
        ]
        pytest_test(
            name = directory + "/pytest" if directory else "pytest",
            srcs = files,
            deps = deps,
            data = data,
            size = "large" if exclusive else "medium",
            # A directory's suite may run for minutes on two cores; pytest-timeout
            # (pyproject.toml) still stops any single test after 300 s.
            timeout = "long",
            tags = ["exclusive"] if exclusive else [],
        )
