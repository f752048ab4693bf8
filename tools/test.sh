#!/usr/bin/env bash
# Installs what the suite needs, then runs every test through Bazel and prints
# one pytest line per target and a total: `bash tools/test.sh [bazel target ...]`
# (default //...). The README's test command; CI runs it through .ci/run.
# Exits non-zero when any test fails or the Bazel graph disagrees with the code
# (tools/bazel/check_graph.py: a file in no target, an import its target does not
# declare, a stale dep, a service's tests reaching another service).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
# Bazel's Python toolchain and the stub genrule take python3 from PATH (.bazelrc);
# node_modules/.bin holds buf (package.json) for tests that lint the protos.
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"

build_events=$(mktemp)
# Leave no Bazel server running behind us.
trap 'rm -f "$build_events"; bazel shutdown' EXIT

status=0
python3 tools/bazel/check_graph.py || status=1
bazel test --build_event_json_file="$build_events" "${@:-//...}" || status=$?
if ! python3 tools/bazel/summarize_tests.py "$build_events" && [ "$status" -eq 0 ]; then
    status=1
fi
exit "$status"
