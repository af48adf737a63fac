"""The wall time of a whole test suite with ``--modelviz`` against the same suite without it.

    .venv/bin/python benchmarks/bench_suite.py [--rounds 3] [--project example_project] [--workers 2]

The suite (``example_project`` by default) is copied to a temporary folder, so nothing in the
repository is written, and run with ``python -m pytest`` as a user runs it, each pytest process
(and each xdist worker) on one torch thread (``OMP_NUM_THREADS=1``):

- ``plain``: no ``--modelviz`` (every check runs, nothing is kept);
- ``modelviz``: ``--modelviz`` into a fresh run folder (TensorBoard, visdom, renders, the report);
- the same two with ``-n WORKERS`` (pytest-xdist).

Each round runs the four in an order rotated from round to round; a ratio in a round is the
``--modelviz`` run's wall time over the plain run's with the same workers. The machine may be
shared: it prints the median ratio over rounds, its spread, and the ratio of the fastest runs.
It also prints the same ratio of CPU time (user + system of pytest and every process it waited
for: xdist workers, Graphviz renders), which other load on a shared machine barely moves.

Goal: ``--modelviz`` <= 1.2x the plain run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOAL = 1.2


def run(project: Path, modelviz: bool, workers: int, run_dir: Path, extra: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one pytest run (CPU: its process tree, as far as it was waited for)."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    if workers:
        args += ["-n", str(workers)]
    if modelviz:
        args += ["--modelviz", "--modelviz-dir", str(run_dir)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(args[3:])}) in {project}:\n"
                         f"{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--project", type=Path, default=HERE.parent / "example_project")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers of the -n variants (0: skip them)")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments, e.g. to load another build "
                        "of the plugin: '-p no:modelviz -p otherbuild.plugin'")
    args = parser.parse_args()
    variants = [("plain", False, 0), ("modelviz", True, 0)]
    if args.workers:
        variants += [
            (f"plain -n {args.workers}", False, args.workers),
            (f"modelviz -n {args.workers}", True, args.workers),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        ignore = shutil.ignore_patterns(".modelviz", "__pycache__", ".pytest_cache")
        shutil.copytree(args.project, project, ignore=ignore)
        print(f"{args.project.name}: {args.rounds} rounds, one torch thread per process; "
              f"load average {os.getloadavg()[0]:.1f} at start")
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        extra = shlex.split(args.pytest_args)
        run(project, False, 0, Path(tmp) / "warm-up", extra)  # imports and data files into the OS cache
        for r in range(args.rounds):
            for name, modelviz, workers in variants[r % len(variants):] + variants[:r % len(variants)]:
                wall, used = run(project, modelviz, workers, Path(tmp) / f"runs-{r}", extra)
                times[name].append(wall)
                cpu[name].append(used)
    for name, _, _ in variants:
        print(f"  {name:<14} {statistics.median(times[name]):6.1f} s median "
              f"({min(times[name]):.1f}-{max(times[name]):.1f} s), cpu {statistics.median(cpu[name]):.1f} s")
    for workers in ([0, args.workers] if args.workers else [0]):
        suffix = f" -n {workers}" if workers else ""
        for what, values in (("wall", times), ("cpu ", cpu)):
            plain, ours = values[f"plain{suffix}"], values[f"modelviz{suffix}"]
            ratios = sorted(o / p for o, p in zip(ours, plain, strict=True))
            print(f"  {what} --modelviz{suffix} / plain{suffix}: {statistics.median(ratios):.2f}x median of rounds "
                  f"({ratios[0]:.2f}-{ratios[-1]:.2f}x), best/best {min(ours) / min(plain):.2f}x  (goal <= {GOAL}x)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
