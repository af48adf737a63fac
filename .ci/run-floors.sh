#!/usr/bin/env bash
# The declared ranges are tested ranges: the plugin's suite with the oldest releases pyproject.toml
# allows (.ci/floors.txt, on the oldest supported Python) and with the newest ones (no pins, on
# the newest supported Python). Venvs are kept in .venvs/ between runs. Not part of every CI run:
# it downloads two more torch builds. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
read -r -a supported <<<"$SUPPORTED_PYTHONS"
dir="$(venvs_dir)"
failed=0
floors="$(grep -E '^(torch|torchvision)==' "$ROOT/.ci/floors.txt" | tr '\n' ' ')"

echo "modelviz: floors: Python ${supported[0]} with $(grep -v '^#' "$ROOT/.ci/floors.txt" | tr '\n' ' ')"
PYTHON="${supported[0]}" MODELVIZ_VENV="$dir/floors-py${supported[0]}" MODELVIZ_TORCH_SPEC="$floors" \
  MODELVIZ_CONSTRAINTS="$ROOT/.ci/floors.txt" bash "$ROOT/.ci/run-tests.sh" "$@" || failed=1

echo "modelviz: newest: Python ${supported[-1]} with the newest torch, torchvision and every other release"
newest="$dir/newest-py${supported[-1]}"
rm -rf "$newest"  # a new venv each time: what pip picks today
PYTHON="${supported[-1]}" MODELVIZ_VENV="$newest" MODELVIZ_TORCH_SPEC="torch torchvision" \
  bash "$ROOT/.ci/run-tests.sh" "$@" || failed=1
exit "$failed"
