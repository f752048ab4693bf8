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
postgres_url=$(mktemp)
postgres_pid=""
# Leave no Bazel server and no PostgreSQL running behind us.
trap 'rm -f "$build_events" "$postgres_url"; [ -z "$postgres_pid" ] || kill "$postgres_pid"; bazel shutdown' EXIT

# One throwaway PostgreSQL for every target's engine-parametrised tests (each test makes a
# database of its own): a test inside Bazel's sandbox cannot start one itself, since it
# runs as root there and PostgreSQL only runs as another user (libs/storage/testing.py).
python3 -m libs.storage.testing >"$postgres_url" &
postgres_pid=$!
for _ in $(seq 600); do
    [ -s "$postgres_url" ] || ! kill -0 "$postgres_pid" 2>/dev/null && break
    sleep 0.1
done
test_postgres=$(head -n 1 "$postgres_url")
[ -n "$test_postgres" ] || echo "tools/test.sh: no PostgreSQL for the tests (see above)" >&2

status=0
python3 tools/bazel/check_graph.py || status=1
bazel test --build_event_json_file="$build_events" --test_env=LIMELIGHT_TEST_POSTGRES_URL="$test_postgres" \
    "${@:-//...}" || status=$?
if ! python3 tools/bazel/summarize_tests.py "$build_events" && [ "$status" -eq 0 ]; then
    status=1
fi
exit "$status"
