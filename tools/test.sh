#!/usr/bin/env bash
# Installs what the suite needs, then runs every test through Bazel and prints
# one pytest line per target and a total: `bash tools/test.sh [bazel target ...]`
# (default //...). The README's test command; CI runs it through .ci/run.
# Exits non-zero when any test fails or a test file belongs to no Bazel target.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
# Bazel's Python toolchain and the stub genrule take python3 from PATH (.bazelrc);
# node_modules/.bin holds buf (package.json) for tests that lint the protos.
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"

build_events=$(mktemp)
# Leave no Bazel server running behind us.
trap 'rm -f "$build_events"; bazel shutdown' EXIT

# The root BUILD.bazel finds test files by glob; a BUILD file added below it would
# silently hide that folder's tests unless its own targets cover them.
covered=$(bazel query --noshow_progress --ui_event_filters=-info 'labels(srcs, tests(//...))' \
    | sed -E 's#^//([^:]*):#\1/#; s#^/##' | sort)
# (A folder that does not exist yet is no error.)
found=$(find libs services tools tests -name 'test_*.py' 2>/dev/null | sort || true)
uncovered=$(comm -23 <(echo "$found") <(echo "$covered"))
if [ -n "$uncovered" ]; then
    echo "These test files belong to no Bazel test target:" >&2
    echo "$uncovered" >&2
    exit 1
fi

status=0
bazel test --build_event_json_file="$build_events" "${@:-//...}" || status=$?
if ! .venv/bin/python tools/bazel/summarize_tests.py "$build_events" && [ "$status" -eq 0 ]; then
    status=1
fi
exit "$status"
