#!/usr/bin/env bash
# Every Python the project claims (SUPPORTED_PYTHONS in env.sh: requires-python and the
# classifiers say the same): set up a venv per Python in .venvs/py3.X (kept between runs) and run
# the main job, the example project with --modelviz. With --suite, the plugin's own test suite too.
# Prints one line per Python with its result and time; exits 1 when any failed.
#   bash .ci/run-pythons.sh [--suite] [3.10 3.13 ...]
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
suite=0
if [ "${1:-}" = "--suite" ]; then
  suite=1
  shift
fi
pythons=("$@")
[ "${#pythons[@]}" -gt 0 ] || read -r -a pythons <<<"$SUPPORTED_PYTHONS"
dir="$(venvs_dir)"
summary=()
failed=0
for version in "${pythons[@]}"; do
  start=$SECONDS
  result=passed
  export PYTHON="$version" MODELVIZ_VENV="$dir/py$version"
  if [ "$suite" = 1 ]; then
    bash "$ROOT/.ci/run-tests.sh" || result=failed
  fi
  bash "$ROOT/.ci/run-example.sh" || result=failed
  [ "$result" = passed ] || failed=1
  versions="$("$MODELVIZ_VENV/bin/python" -c 'import sys; from importlib.metadata import version
print(sys.version.split()[0], *(f"{n} {version(n)}" for n in ("pip", "torch", "visdom", "numpy", "syrupy", "pytest")))' 2>/dev/null ||
    echo 'not installed')"
  line="Python $version ($versions): $result in $((SECONDS - start)) s"
  summary+=("$line")
  echo "modelviz: $line"
done
echo
printf 'modelviz: %s\n' "${summary[@]}"
exit "$failed"
