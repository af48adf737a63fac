"""``short_train`` against a hand-written loop, both run as pytest tests the way a user runs them.

    .venv/bin/python benchmarks/bench_train.py [--rounds 9] [--threads 1] [--workloads cnn28,cifar]

Workloads (random data made once, no download):

- ``cnn28``: a small CNN (two conv layers of 16 and 32 channels, two linear layers) on batches
  of 64 1x28x28 images, plain SGD, 60 steps;
- ``cifar``: a CIFAR-style CNN (three conv-BatchNorm-ReLU-maxpool blocks, 16/32/32 channels, two
  linear layers) on batches of 64 RGB 32x32 images, SGD with momentum, 30 steps.

The script writes a throw-away pytest project and runs it twice, in two pytest processes: once
plain (no ``--modelviz``: ``short_train`` logs nothing) and once with ``--modelviz`` and the
default settings (TensorBoard and, where visdom is installed, the offline visdom env; histograms
every ``modelviz_log_every`` = 10 steps; the curves picture and the run record). In each process
every round runs, for each workload, a test calling the hand-written loop (zero_grad, forward,
loss, backward, step, ``loss.item()``) and a test calling the ``short_train`` fixture on the same
model and batches, in alternating order. A test's time is its whole protocol (setup, call,
teardown and the plugin's report hooks), taken by a ``pytest_runtest_protocol`` wrapper; its
ratio is over the hand-written loop's test in the same round. The first round warms up (lazy
imports) and is printed apart. The machine may be shared: it prints the median ratio, its spread
and the ratio of the fastest runs ("best/best": other load only ever adds time), and the
median of each ``short_train`` run over the hand-written runs either side of it, which cancels
the slow drift of a shared machine's speed.

Before measuring, each process asks glibc to keep freed memory (see ``keep_freed_memory``), for
both loops alike: otherwise page faults that vary from run to run swamp a few percent.

Goals: logging off <= 1.03x, ``--modelviz`` <= 1.10x.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BATCH = 64
GOALS = {"off": 1.03, "modelviz": 1.10}
WORKLOADS = ("cnn28", "cifar")
STEPS = {"cnn28": 60, "cifar": 30}


# ---------------------------------------------------------------- what the tests train


def make_model(workload: str) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    if workload == "cnn28":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(3, 16), *block(16, 32), *block(32, 32),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def make_data(workload: str, batches: int = 4) -> list[tuple[Any, Any]]:
    import torch

    shape = (BATCH, 1, 28, 28) if workload == "cnn28" else (BATCH, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(*shape, generator=g), torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(batches)]


def optimizer(workload: str) -> Any:
    import torch

    if workload == "cnn28":
        return lambda params: torch.optim.SGD(params, lr=0.05)
    return lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9)


def plain_loop(model: Any, data: list[tuple[Any, Any]], steps: int, make_opt: Any) -> list[float]:
    from torch.nn import functional as F

    opt = make_opt([p for p in model.parameters() if p.requires_grad])
    losses = []
    for step in range(steps):
        x, y = data[step % len(data)]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of handing large blocks back to the OS.

    By default glibc unmaps or trims freed activation buffers (MBs each) depending on the heap's
    layout, and the next step faults them back in: tens of thousands of page faults per run,
    varying from run to run with no relation to the code measured. False where not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_mmap_threshold, 32 << 20))


# ---------------------------------------------------------------- the throw-away pytest project

CONFTEST = """
import json, os, sys, time
import pytest

sys.path.insert(0, {here!r})
import bench_train as bench

TIMES = os.environ["BENCH_TRAIN_TIMES"]


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["BENCH_TRAIN_THREADS"]) or torch.get_num_threads())
    bench.keep_freed_memory()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        return (yield)
    finally:
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        with open(TIMES, "a") as fh:
            fh.write(json.dumps({{**item.callspec.params, "wall": wall, "cpu": cpu}}) + "\\n")
"""

TESTS = """
import os
import pytest
from torch.nn import functional as F

import bench_train as bench

ROUNDS = int(os.environ["BENCH_TRAIN_ROUNDS"])
WORKLOADS = os.environ["BENCH_TRAIN_WORKLOADS"].split(",")
# Each round runs both variants of each workload, in alternating order.
CASES = [
    (w, r, v)
    for r in range(ROUNDS + 1)
    for w in WORKLOADS
    for v in (("plain", "short_train") if r % 2 else ("short_train", "plain"))
]
DATA = {{w: bench.make_data(w) for w in WORKLOADS}}


@pytest.mark.parametrize("workload,round,variant", CASES)
def test_train(request, workload, round, variant):
    model, steps = bench.make_model(workload), bench.STEPS[workload]
    if variant == "plain":
        losses = bench.plain_loop(model, DATA[workload], steps, bench.optimizer(workload))
    else:
        result = request.getfixturevalue("short_train")(
            model, DATA[workload], loss_fn=F.cross_entropy, optimizer=bench.optimizer(workload), steps=steps,
        )
        losses = result.losses
    assert len(losses) == steps
"""


def run_pytest(project: Path, modelviz: bool, rounds: int, threads: int, workloads: list[str],
               extra: list[str]) -> list[dict[str, Any]]:
    times = project / f"times-{'modelviz' if modelviz else 'off'}.jsonl"
    env = dict(os.environ, BENCH_TRAIN_TIMES=str(times), BENCH_TRAIN_ROUNDS=str(rounds),
               BENCH_TRAIN_THREADS=str(threads), BENCH_TRAIN_WORKLOADS=",".join(workloads))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "test_bench.py"]
    if modelviz:
        args += ["--modelviz", "--modelviz-dir", str(project / ".modelviz")]
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(args[3:])}):\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in times.read_text().splitlines()]


def spread(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return f"min {min(values):.2f}, q1 {q1:.2f}, q3 {q3:.2f}, max {max(values):.2f}"


def report(mode: str, rows: list[dict[str, Any]], workloads: list[str]) -> None:
    label = "--modelviz" if mode == "modelviz" else "no --modelviz"
    for workload in workloads:
        mine = [r for r in rows if r["workload"] == workload]
        by_round: dict[int, dict[str, dict[str, float]]] = {}
        for r in mine:
            by_round.setdefault(r["round"], {})[r["variant"]] = r
        warm = by_round.pop(0)
        steps = STEPS[workload]
        print(f"  {workload} ({steps} steps), {label}: first (warm-up) round {warm['short_train']['wall']:.2f} s "
              f"vs {warm['plain']['wall']:.2f} s")
        for clock in ("wall", "cpu"):
            plain = [v["plain"][clock] for v in by_round.values()]
            ours = [v["short_train"][clock] for v in by_round.values()]
            ratios = [o / p for o, p in zip(ours, plain, strict=True)]
            extra = statistics.median((o - p) / steps * 1000 for o, p in zip(ours, plain, strict=True))
            print(f"    {clock:<4} {statistics.median(ratios):.2f}x median (goal <= {GOALS[mode]:.2f}x); "
                  f"{spread(ratios)}; best/best {min(ours) / min(plain):.2f}x; "
                  f"hand-written {1000 * statistics.median(plain) / steps:.1f} ms/step, {extra:+.2f} ms/step")
        bracketed = bracketed_ratios([r for r in mine if r["round"]])  # without the warm-up round
        print(f"    cpu  {statistics.median(bracketed):.2f}x median over the hand-written runs either side "
              f"(goal <= {GOALS[mode]:.2f}x); {spread(bracketed)}")


def bracketed_ratios(rows: list[dict[str, Any]]) -> list[float]:
    """Each ``short_train`` run's CPU time over the geometric mean of the hand-written runs just
    before and just after it (in the order they ran): this machine's speed drifts by 10-20% over
    seconds, and bracketing cancels a drift that is linear over the three runs."""
    out = []
    for i, row in enumerate(rows):
        if row["variant"] != "short_train":
            continue
        before = next((r["cpu"] for r in reversed(rows[:i]) if r["variant"] == "plain"), None)
        after = next((r["cpu"] for r in rows[i + 1:] if r["variant"] == "plain"), None)
        sides = [t for t in (before, after) if t is not None]
        out.append(row["cpu"] / statistics.geometric_mean(sides))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds per pytest process (plus one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in the tests (0: torch's default)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--modes", default="off,modelviz",
                        help="comma-separated: off (no --modelviz), modelviz (default: both)")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments, e.g. to load another build "
                        "of the plugin: '-p no:modelviz -p otherbuild.plugin'")
    args = parser.parse_args()
    workloads = [w.strip() for w in args.workloads.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    if set(modes) - set(GOALS):
        raise SystemExit(f"unknown modes {sorted(set(modes) - set(GOALS))}; choose from {', '.join(GOALS)}")
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "conftest.py").write_text(textwrap.dedent(CONFTEST.format(here=str(HERE))))
        (project / "test_bench.py").write_text(textwrap.dedent(TESTS.format()))
        print(f"torch {torch.__version__}, {args.threads or 'default'} thread(s), {args.rounds} rounds per process; "
              f"load average {os.getloadavg()[0]:.1f} at start")
        extra = shlex.split(args.pytest_args)
        for mode in modes:
            rows = run_pytest(project, mode == "modelviz", args.rounds, args.threads, workloads, extra)
            report(mode, rows, workloads)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
