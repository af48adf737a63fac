#!/usr/bin/env bash
# The main job: set up, run example_project's tests with --modelviz, print where the report is.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_venv
cd "$ROOT/example_project"
run_pytest --modelviz "$@"
echo
echo "modelviz: report:    $ROOT/example_project/.modelviz/latest/report.html"
echo "modelviz: artifacts: $ROOT/example_project/.modelviz/latest/"
