"""Histogram logging of resnet50's parameters: histograms reduced on the device
(``sinks/histograms.py``) + ``add_histogram_raw`` against tensorboardX's ``add_histogram`` (host
copy + numpy binning), at several torch thread counts and, optionally, under extra load.

    .venv/bin/python benchmarks/bench_histograms.py [--rounds 7] [--threads 1,2,0] [--load 0] [--device cpu]

For each thread count (0: torch's default) rounds run both in alternating order; it prints each
one's median time and spread and the median (and spread) of the per-round speed-ups measured in
this process, on the wall clock and on the process's CPU clock. ``--load N`` starts N busy
processes for the whole measurement (and stops them after), to show what a loaded CI machine
does to each. Both write through tensorboardX, whose record checksums are pure Python unless the
``crc32c`` package is installed; the script says which. Each round logs through a writer of its
own and closes it inside the timing, so each variant is timed until its events are on disk, and
numpy's BLAS runs on one thread (see ``OPENBLAS_NUM_THREADS`` below). It also prints how fast numpy sorts
here: ``add_histogram`` bins by sorting, so its time, and the speed-up, vary with the CPU.

Goal: >= 5x faster than ``add_histogram`` at every thread count and load.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

# numpy's OpenBLAS threads spin for a while after each BLAS call (add_histogram's sum of
# squares): on a small machine they take a core from whatever runs next, so the histograms
# timed after add_histogram were billed its spinning (on the CPU clock, up to twice their own
# time) and add_histogram itself ran slower. One BLAS thread, before numpy is first imported,
# makes both variants run alone. Set OPENBLAS_NUM_THREADS to measure otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
from tensorboardX import SummaryWriter  # noqa: E402
from torchvision.models import resnet50  # noqa: E402

from pytest_modelviz.params.histograms import device_histograms  # noqa: E402
from pytest_modelviz.tensorboard.sink import TensorBoardSink  # noqa: E402

GOAL = 5.0


def ours(named: list[tuple[str, torch.Tensor]], writer: SummaryWriter, step: int) -> None:
    sink = TensorBoardSink(writer)
    for (name, _), hist in zip(named, device_histograms([p for _, p in named]), strict=True):
        sink.histogram(step, f"params/{name}", hist)
    sink.close()  # hands the step's histograms (one event) to the writer
    writer.close()  # every event written: its thread has drained its queue


def theirs(named: list[tuple[str, torch.Tensor]], writer: SummaryWriter, step: int) -> None:
    for name, p in named:
        writer.add_histogram(f"params/{name}", p, global_step=step)
    writer.close()


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[None]:
    """``n`` processes spinning on a CPU each, stopped on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def measure(
    named: list[tuple[str, torch.Tensor]], tmp: str, rounds: int, threads: int
) -> dict[str, dict[str, list[float]]]:
    """Each round logs one step through a writer of its own, opened before the clocks start and
    closed before they stop: tensorboardX's ``flush()`` does not wait for its writer thread, which
    would otherwise still be writing one variant's events while the other is timed (on the CPU
    clock, most of ``add_histogram``'s last events were billed to the histograms timed after it)."""
    torch.set_num_threads(threads)
    variants = {"ours": ours, "theirs": theirs}
    for name, run in variants.items():  # warm up
        run(named, SummaryWriter(logdir=f"{tmp}/{name}-{threads}-0"), 0)
    clocks: dict[str, dict[str, list[float]]] = {"wall": {"ours": [], "theirs": []}, "CPU": {"ours": [], "theirs": []}}
    for step in range(1, rounds + 1):
        for name in list(variants) if step % 2 else list(variants)[::-1]:
            writer = SummaryWriter(logdir=f"{tmp}/{name}-{threads}-{step}")
            start, cpu_start = time.perf_counter(), time.process_time()
            variants[name](named, writer, step)
            clocks["wall"][name].append(time.perf_counter() - start)
            clocks["CPU"][name].append(time.process_time() - cpu_start)
    return clocks


def report(clocks: dict[str, dict[str, list[float]]]) -> None:
    for clock, times in clocks.items():
        med = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: f"{min(v) * 1000:.0f}-{max(v) * 1000:.0f}" for k, v in times.items()}
        ratios = sorted(t / o for o, t in zip(times["ours"], times["theirs"], strict=True))
        print(f"    {clock:<4} ours {med['ours'] * 1000:6.0f} ms ({spread['ours']}), add_histogram "
              f"{med['theirs'] * 1000:6.0f} ms ({spread['theirs']}): speed-up {statistics.median(ratios):.1f}x median "
              f"of rounds ({ratios[0]:.1f}-{ratios[-1]:.1f}x)  (goal >= {GOAL:g}x)")


def numpy_sort_speed() -> str:
    """How fast numpy sorts here: ``add_histogram`` bins by sorting, and numpy's sort is several
    times faster on CPUs where its vectorized kernels run, so the speed-up depends on the machine."""
    import numpy as np

    values = np.random.default_rng(0).random(1 << 16)
    times = []
    for _ in range(21):
        start = time.perf_counter()
        np.sort(values)
        times.append(time.perf_counter() - start)
    return f"numpy {np.__version__} sorts 64K float64 in {statistics.median(times) * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", default="1,2,0", help="torch CPU thread counts (0: torch's default)")
    parser.add_argument("--load", type=int, default=0, help="busy processes to run during the measurement")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    model = resnet50().to(args.device)
    named = [(n, p.detach()) for n, p in model.named_parameters()]
    total = sum(p.numel() for _, p in named)
    crc = "native crc32c" if importlib.util.find_spec("crc32c") else "pure-Python crc32c"
    print(f"resnet50: {len(named)} tensors, {total / 1e6:.1f}M values, device {args.device}, {args.rounds} rounds, "
          f"tensorboardX with {crc}; {args.load} extra busy process(es); load average {os.getloadavg()[0]:.1f}")
    print(f"  {numpy_sort_speed()} (add_histogram's baseline); "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    with tempfile.TemporaryDirectory() as tmp, busy_processes(args.load):
        for threads in (int(t) or default_threads for t in args.threads.split(",")):
            print(f"  {threads} thread(s)")
            report(measure(named, tmp, args.rounds, threads))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
