#!/usr/bin/env bash
# The build constraint holds on every pip the set-up allows: visdom's sdists (0.2.4 for Python <
# 3.12 builds only with setuptools<81; 0.3.0 for 3.12+) are built with the oldest and the newest
# pip of PIP_SPEC's range, with no cache, under the set-up's own PIP_CONSTRAINT/PIP_BUILD_CONSTRAINT.
# A control build without the build constraint says whether it is still needed.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/modelviz-pip-range.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export PIP_NO_CACHE_DIR=1
oldest="$(sed -nE 's/.*>=([0-9][0-9.]*).*/\1/p' <<<"$PIP_SPEC")"
[ -n "$oldest" ] || die "cannot read the oldest pip from PIP_SPEC=$PIP_SPEC"
failed=0

# build VENV PIP_REQUIREMENT VISDOM_REQUIREMENT: 0 when that pip builds the sdist into a wheel
build() {
  "$1/bin/python" -m pip install --quiet --upgrade "$2"
  "$1/bin/python" -m pip wheel --quiet --no-deps --no-binary visdom -w "$scratch/wheels" "$3" \
    >"$scratch/build.log" 2>&1 || { tail -n 5 "$scratch/build.log" >&2; return 1; }
  echo "modelviz: built $3 with $("$1/bin/python" -m pip --version | cut -d' ' -f1-2) on Python $(python_version_of "$1/bin/python")"
}

for pair in "3.11 visdom==0.2.4" "3.12 visdom==0.3.0"; do
  venv="$scratch/py${pair%% *}"
  python="$(PYTHON="${pair%% *}" find_python)" && "$python" -m venv "$venv" || { failed=1; continue; }
  for pip in "pip==$oldest" "$PIP_SPEC"; do
    build "$venv" "$pip" "${pair#* }" || { echo "modelviz: FAILED to build ${pair#* } with $pip" >&2; failed=1; }
  done
done
# The control: the newest pip without a build constraint (the newest setuptools in isolation).
if (unset PIP_BUILD_CONSTRAINT PIP_CONSTRAINT; build "$scratch/py3.11" "$PIP_SPEC" visdom==0.2.4) >/dev/null 2>&1; then
  echo "modelviz: note: visdom 0.2.4 now builds without the build constraint; .ci/constraints.txt may be dropped"
else
  echo "modelviz: control: without the build constraint visdom 0.2.4 does not build (the constraint is needed)"
fi
exit "$failed"
