#!/usr/bin/env bash
# Installs everything Limelight needs on a fresh Debian machine, then generates the stubs.
# Idempotent: a second run only checks. `--with-bazel` adds Debian's Bazel for the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v ffmpeg >/dev/null || packages+=(ffmpeg)            # the transcode benchmark's baseline
if [[ "${1:-}" == "--with-bazel" ]] && ! command -v bazel >/dev/null; then
  packages+=(bazel-bootstrap)
fi
if (( ${#packages[@]} )); then
  sudo=""; [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
if [[ -f package-lock.json ]]; then
  npm ci --silent --no-audit --no-fund                       # buf, for proto lint
fi
.venv/bin/limelight protos
