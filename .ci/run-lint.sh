#!/usr/bin/env bash
# Lint and type-check: ruff on the package, tests, benchmarks and the example project, then mypy
# --strict on the package; both read their settings from pyproject.toml. Lint only: nothing is
# reformatted or fixed here.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_venv
cd "$ROOT"
rc=0
"$PY" -m ruff check pytest_modelviz tests benchmarks example_project || rc=1
"$PY" -m mypy || rc=1
exit "$rc"
