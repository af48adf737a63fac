"""``python -m pytest_modelviz merge RUN_DIR... -o OUT``: the command-line tools.

Imports only the standard library until a command runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_modelviz", description="pytest-modelviz tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    merge = commands.add_parser(
        "merge",
        help="merge the run folders of several CI jobs into one run folder and report",
        description="Merge the run folders of several CI jobs (shards of a suite, a CPU and a GPU job) into "
        "one run folder with one report.html and one outcomes.json; each test is shown once per job. "
        "OUT is replaced whole, and may be an earlier merge that is also an input.",
    )
    merge.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                       help="a run folder (.modelviz/run-...), a folder of runs (.modelviz: its newest run), "
                       "or an earlier merge")
    merge.add_argument("-o", "--output", required=True, type=Path, metavar="OUT", help="the merged run folder")
    merge.add_argument("-q", "--quiet", action="store_true", help="print warnings only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pytest_modelviz.errors import MergeError
    from pytest_modelviz.merge import merge_runs

    try:
        result = merge_runs(args.runs, args.output)
    except MergeError as exc:
        print(f"pytest-modelviz merge: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pytest-modelviz merge: error: could not write {exc.filename or args.output}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    for line in result.warnings:
        print(f"pytest-modelviz merge: warning: {line}", file=sys.stderr)
    if not args.quiet:
        for line in result.info:
            print(f"pytest-modelviz merge: {line}")
        jobs = ", ".join(result.jobs) or "none named"
        print(f"pytest-modelviz merge: {result.tests} test result(s) of {len(result.jobs)} job(s) ({jobs}) "
              f"in {result.out}")
        print(f"pytest-modelviz merge: report {result.report}")
        print(f"pytest-modelviz merge: open in TensorBoard: tensorboard --logdir {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
