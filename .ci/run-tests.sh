#!/usr/bin/env bash
# The plugin's own test suite: set up, then run tests/ on two processes. With --modelviz, what the
# suite's own tests keep (the report's and visdom UI's browser screenshots) lands in .modelviz/latest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ensure_venv
ensure_chromium
cd "$ROOT"
run_pytest tests -n 2 --modelviz "$@"
