"""Histogram logging of resnet50's parameters: histograms reduced on the device
(``sinks/histograms.py``) + ``add_histogram_raw`` against tensorboardX's ``add_histogram`` (host
copy + numpy binning). Prints the speed-up measured in this process (median of interleaved
rounds); target >= 3x on the CPU. Both write through tensorboardX,
whose record checksums are pure Python unless the ``crc32c`` package is installed: that slows
``add_histogram`` (more buckets, one event per tensor) more than ours, so the script says which.

    .venv/bin/python benchmarks/bench_histograms.py [--rounds 3] [--device cpu]
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # a shared machine: many threads measure the contention
    model = resnet50().to(args.device)
    named = [(n, p.detach()) for n, p in model.named_parameters()]
    total = sum(p.numel() for _, p in named)
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    with tempfile.TemporaryDirectory() as tmp:
        sink = TensorBoardSink(SummaryWriter(logdir=f"{tmp}/ours"))
        writer = SummaryWriter(logdir=f"{tmp}/theirs")
        ours(named, sink, 0)  # warm up
        for step in range(1, args.rounds + 1):
            start = time.perf_counter()
            ours(named, sink, step)
            times["ours"].append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs(named, writer, step)
            times["theirs"].append(time.perf_counter() - start)
        sink.writer.close()
        writer.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    crc = "native crc32c" if importlib.util.find_spec("crc32c") else "pure-Python crc32c"
    print(f"resnet50: {len(named)} tensors, {total / 1e6:.1f}M values, device {args.device}, {args.rounds} rounds, "
          f"{torch.get_num_threads()} thread(s), tensorboardX with {crc}")
    print(f"on-device histograms + add_histogram_raw: {med['ours'] * 1000:.0f} ms")
    print(f"tensorboardX add_histogram:                {med['theirs'] * 1000:.0f} ms")
    print(f"speed-up: {med['theirs'] / med['ours']:.1f}x  (target >= 3x)")


if __name__ == "__main__":
    main()
