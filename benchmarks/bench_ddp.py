"""A 2-rank ``short_train(world_size=2)`` against a hand-written 2-rank DDP loop.

    .venv/bin/python benchmarks/bench_ddp.py [--rounds 7] [--steps 30]

Workload (random data made once, no download): a small CNN (two conv layers of 16 and 32
channels, two linear layers) on 1x28x28 images, 512 samples split by a ``DistributedSampler``,
batches of 32 per rank, plain SGD, gloo on the CPU.

Both sides start their ranks the same way, so the ratio is what ``short_train`` adds, not how
processes start: ``torch.multiprocessing.start_processes`` with the forkserver (torch imported
once by the server), a ``TCPStore`` on 127.0.0.1 served by this process, one thread per core per
rank. The hand-written ranks build ``DistributedDataParallel`` and run zero_grad, forward, loss,
backward, step and ``loss.item()``; ``short_train`` adds its checks (the gradient check before each
step, per-step parameter and buffer fingerprints, batch digests), sends its result back and
rebuilds the model in this process. A round times one call of each, launch to result, in
alternating order; the first round warms up (the fork server, lazy imports) and is printed apart.
The machine may be shared: it prints the median ratio, its spread and the ratio of the fastest
runs ("best/best": other load only ever adds time), beside the load average.

Goal: <= 1.10x.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL = 1.10
SAMPLES, BATCH, WORLD = 512, 32, 2


def make_model() -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def make_data(rank: int, world_size: int) -> Any:
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(SAMPLES, 1, 28, 28, generator=g), torch.randint(0, 10, (SAMPLES,), generator=g))
    return DataLoader(ds, batch_size=BATCH, sampler=DistributedSampler(ds, world_size, rank, seed=0))


def hand_written_rank(rank: int, port: int, steps: int, queue: Any) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORLD))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    store = dist.TCPStore("127.0.0.1", port, WORLD, is_master=False)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    model = DistributedDataParallel(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = make_data(rank, WORLD)
    losses: list[float] = []
    while len(losses) < steps:
        for x, y in data:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    dist.barrier()
    dist.destroy_process_group()
    queue.put((rank, losses))


def run_hand_written(steps: int) -> float:
    import multiprocessing

    import torch.distributed as dist
    import torch.multiprocessing as tmp

    from pytest_modelviz.train.distributed import start_method, stop_processes

    start = time.perf_counter()
    store = dist.TCPStore("127.0.0.1", 0, None, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=120))
    method = start_method()
    queue = multiprocessing.get_context(method).Queue()
    ctx = tmp.start_processes(hand_written_rank, args=(store.port, steps, queue), nprocs=WORLD, join=False,
                              start_method=method)
    try:
        results = [queue.get(timeout=300) for _ in range(WORLD)]
        while not ctx.join(timeout=60):
            pass
    finally:
        stop_processes(ctx.processes)
    assert all(len(losses) == steps for _, losses in results)
    return time.perf_counter() - start


def run_short_train(steps: int) -> float:
    import torch

    from pytest_modelviz.train.loop import short_train

    start = time.perf_counter()
    result = short_train(make_model, make_data, loss_fn=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.SGD,
                         optimizer_kwargs={"lr": 0.05}, steps=steps, world_size=WORLD, device="cpu")
    assert result.steps_run == steps
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    hand: list[float] = []
    ours: list[float] = []
    for round_ in range(args.rounds + 1):
        pair = [("hand", run_hand_written), ("ours", run_short_train)]
        if round_ % 2:
            pair.reverse()
        times = {name: fn(args.steps) for name, fn in pair}
        if round_ == 0:
            print(f"warm-up: hand-written {times['hand']:.2f} s, short_train {times['ours']:.2f} s")
            continue
        hand.append(times["hand"])
        ours.append(times["ours"])
    ratios = [o / h for o, h in zip(ours, hand, strict=True)]
    spread = (max(ratios) - min(ratios)) / 2
    best = min(ours) / min(hand)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"2-rank DDP, {args.steps} steps, {args.rounds} rounds (load average {load:.2f})")
    print(f"  hand-written: median {statistics.median(hand):.3f} s   "
          f"short_train: median {statistics.median(ours):.3f} s")
    print(f"  ratio: median {statistics.median(ratios):.3f}x (+-{spread:.3f}), "
          f"best/best {best:.3f}x   goal <= {GOAL:.2f}x")


if __name__ == "__main__":
    main()
