#!/usr/bin/env bash
# The set-up from nothing, as on a new machine: a new venv, empty pip, npm and UI caches (so
# visdom's sdist is really built, never taken from a wheel an earlier run cached), no stamp; then
# the README's two commands. PYTHON picks the interpreter (default 3.12, which gets visdom 0.3.0;
# the main job of .ci/run is the default python3). Extra arguments go to both pytest runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/modelviz-fresh.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export PYTHON="${PYTHON:-3.12}"
export MODELVIZ_VENV="$scratch/venv"
export PIP_CACHE_DIR="$scratch/pip-cache"
export XDG_CACHE_HOME="$scratch/cache"
export npm_config_cache="$scratch/npm-cache"
echo "modelviz: set-up from nothing with PYTHON=$PYTHON in $scratch"
start=$SECONDS
bash "$ROOT/.ci/run-tests.sh" "$@"
bash "$ROOT/.ci/run-example.sh" "$@"
echo "modelviz: set-up from nothing and both commands on PYTHON=$PYTHON took $((SECONDS - start)) s"
