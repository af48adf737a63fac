"""short_train's overhead against a hand-written loop doing the same steps on the same model.

Prints ratios (short_train time / plain loop time) measured in this process, runs interleaved,
medians of several rounds. Targets: logging off <= 1.03x; TensorBoard logging every 10 steps <= 1.10x.

    .venv/bin/python benchmarks/bench_train.py [--rounds 5] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch import nn
from torch.nn import functional as F

from pytest_modelviz import short_train
from tensorboardX import SummaryWriter

from pytest_modelviz.sinks.tensorboard import TensorBoardSink


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


def make_data(batches: int = 4, size: int = 128) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 512, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(batches)]


def sgd(params):  # noqa: ANN001, ANN201
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def plain_loop(model: nn.Module, data: list, steps: int) -> list[float]:
    torch.manual_seed(0)
    opt = sgd(model.parameters())
    losses = []
    for step in range(steps):
        x, y = data[step % len(data)]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def modelviz_loop(model: nn.Module, data: list, steps: int, writer: SummaryWriter | None) -> list[float]:
    sinks = [] if writer is None else [TensorBoardSink(writer)]
    result = short_train(model, data, loss_fn=F.cross_entropy, optimizer=sgd, steps=steps, device="cpu",
                         log_every=10, sinks=sinks)
    return result.losses


def timed(fn, *args) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def timed_with_writer(logdir: str, model: nn.Module, data: list, steps: int) -> float:
    """Opening and closing the writer is the fixture's job, not the loop's: left out of the time."""
    writer = SummaryWriter(logdir=logdir)
    try:
        return timed(modelviz_loop, model, data, steps, writer)
    finally:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # a shared machine: many threads measure the contention
    data = make_data()
    assert plain_loop(make_model(), data, 3) == modelviz_loop(make_model(), data, 3, None)  # same work
    plain_loop(make_model(), data, 3)  # warm up allocators and lazy imports
    times: dict[str, list[float]] = {"plain": [], "off": [], "every10": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            times["plain"].append(timed(plain_loop, make_model(), data, args.steps))
            times["off"].append(timed(modelviz_loop, make_model(), data, args.steps, None))
            times["every10"].append(timed_with_writer(f"{tmp}/run{r}", make_model(), data, args.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    print(f"step time (plain loop): {1000 * med['plain'] / args.steps:.1f} ms, {args.steps} steps, {args.rounds} rounds")
    for key, label, target in (("off", "logging off", 1.03), ("every10", "TensorBoard every 10", 1.10)):
        print(f"short_train, {label:<21} {med[key] / med['plain']:.3f}x median, "
              f"{best[key] / best['plain']:.3f}x best  (target <= {target:.2f}x)")


if __name__ == "__main__":
    main()
