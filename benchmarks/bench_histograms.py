"""Histogram logging of resnet50's parameters: histograms reduced on the device
(``sinks/histograms.py``) + ``add_histogram_raw`` against tensorboardX's ``add_histogram`` (host
copy + numpy binning). Rounds run both in alternating order; prints each one's median time and
spread and the median (and spread) of the per-round speed-ups measured in this process, on the
wall clock and on the process's CPU clock (which other load on a shared machine disturbs less);
target >= 3x on the CPU. Both write through tensorboardX,
whose record checksums are pure Python unless the ``crc32c`` package is installed: that slows
``add_histogram`` (more buckets, one event per tensor) more than ours, so the script says which.

    .venv/bin/python benchmarks/bench_histograms.py [--rounds 7] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time

import torch
from tensorboardX import SummaryWriter
from torchvision.models import resnet50

from pytest_modelviz.sinks.histograms import device_histograms
from pytest_modelviz.sinks.tensorboard import TensorBoardSink


def ours(named: list[tuple[str, torch.Tensor]], sink: TensorBoardSink, step: int) -> None:
    for (name, _), hist in zip(named, device_histograms([p for _, p in named])):
        sink.histogram(step, f"params/{name}", hist)
    sink.close()  # writes the step's histograms (one event) and flushes


def theirs(named: list[tuple[str, torch.Tensor]], writer: SummaryWriter, step: int) -> None:
    for name, p in named:
        writer.add_histogram(f"params/{name}", p, global_step=step)
    writer.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # a shared machine: many threads measure the contention
    model = resnet50().to(args.device)
    named = [(n, p.detach()) for n, p in model.named_parameters()]
    total = sum(p.numel() for _, p in named)
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    cpu_times: dict[str, list[float]] = {"ours": [], "theirs": []}
    with tempfile.TemporaryDirectory() as tmp:
        sink = TensorBoardSink(SummaryWriter(logdir=f"{tmp}/ours"))
        writer = SummaryWriter(logdir=f"{tmp}/theirs")
        ours(named, sink, 0)  # warm up
        theirs(named, writer, 0)
        variants = [("ours", lambda step: ours(named, sink, step)), ("theirs", lambda step: theirs(named, writer, step))]
        for step in range(1, args.rounds + 1):
            for name, run in variants if step % 2 else variants[::-1]:
                start, cpu_start = time.perf_counter(), time.process_time()
                run(step)
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
        sink.writer.close()
        writer.close()
    crc = "native crc32c" if importlib.util.find_spec("crc32c") else "pure-Python crc32c"
    print(f"resnet50: {len(named)} tensors, {total / 1e6:.1f}M values, device {args.device}, {args.rounds} rounds, "
          f"{torch.get_num_threads()} thread(s), tensorboardX with {crc}")
    for clock, measured in (("wall clock", times), ("CPU clock", cpu_times)):
        print(clock)
        _report(measured)


def _report(times: dict[str, list[float]]) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: f"{min(v) * 1000:.0f}-{max(v) * 1000:.0f}" for k, v in times.items()}
    ratios = sorted(t / o for o, t in zip(times["ours"], times["theirs"]))
    print(f"  on-device histograms + add_histogram_raw: {med['ours'] * 1000:.0f} ms  (rounds {spread['ours']} ms)")
    print(f"  tensorboardX add_histogram:                {med['theirs'] * 1000:.0f} ms  (rounds {spread['theirs']} ms)")
    print(f"  speed-up: {statistics.median(ratios):.1f}x median of rounds ({ratios[0]:.1f}-{ratios[-1]:.1f}x), "
          f"{med['theirs'] / med['ours']:.1f}x of the medians  (target >= 3x)")

if __name__ == "__main__":
    main()
