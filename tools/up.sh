#!/usr/bin/env bash
# The main job: install what is needed, then run the whole platform until Ctrl-C
# (arguments go to `limelight up`, e.g. --max-crashes 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/limelight up "$@"
