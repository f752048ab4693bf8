#!/usr/bin/env bash
# Installs what Limelight needs on a fresh Debian 12 machine and skips what is
# already there, so running it again costs about a second:
#   - Debian packages: bazel-bootstrap (Bazel 4.2.3), ffmpeg, redis-server, postgresql,
#     python3-venv, npm;
#   - .venv, a virtualenv with the pinned dependencies and test tools
#     (reinstalled when pyproject.toml changes);
#   - node_modules with buf, when package.json exists (reinstalled when the lock changes).
set -euo pipefail
cd "$(dirname "$0")/.."

missing_packages=()
command -v bazel >/dev/null || missing_packages+=(bazel-bootstrap)
command -v ffmpeg >/dev/null || missing_packages+=(ffmpeg)
# LIVE rooms' bus across replicas (Redis Streams; `limelight up` starts it when configured).
command -v redis-server >/dev/null || missing_packages+=(redis-server)
# PostgreSQL: the stores' second engine; `limelight up` with replicas and the tests' throwaway
# servers start it from here (libs/storage/postgres_cluster.py).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing_packages+=(postgresql)
command -v python3 >/dev/null || missing_packages+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || missing_packages+=(python3-venv)
if [ -f package.json ] && ! command -v npm >/dev/null; then
    missing_packages+=(npm)
fi
if ((${#missing_packages[@]})); then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing_packages[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
installed_pins=.venv/.installed-pyproject.toml
if ! cmp -s pyproject.toml "$installed_pins"; then
    .venv/bin/pip install -e '.[test]'
    cp pyproject.toml "$installed_pins"
fi
# MovieLens-100k for `limelight rank eval` ships inside recbole's wheel; recbole's own
# dependencies (torch pins, a trainer stack) are not needed to read its files.
.venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("recbole") is None)' \
    || .venv/bin/pip install --no-deps recbole==1.2.1

if [ -f package.json ]; then
    installed_lock=node_modules/.installed-package-lock.json
    if ! cmp -s package-lock.json "$installed_lock"; then
        npm ci
        cp package-lock.json "$installed_lock"
    fi
fi

# Stubs for plain Python runs (`limelight up`, pytest) live in gen/, which the venv
# finds through a .pth file; Bazel generates its own.
.venv/bin/python - <<'PY'
import pathlib, sysconfig
pathlib.Path(sysconfig.get_paths()["purelib"], "limelight-generated-stubs.pth").write_text(
    str(pathlib.Path("gen").resolve()) + "\n"
)
PY
.venv/bin/python -m tools.protogen
