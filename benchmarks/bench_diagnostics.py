"""What ``short_train``'s per-layer health measurements cost: ``health=True`` (the default) against
``health=False`` on the same model, batches and steps.

    .venv/bin/python benchmarks/bench_diagnostics.py [--rounds 9] [--threads 1] [--workloads cnn28,cifar,transformer]

Workloads: ``cnn28`` and ``cifar`` are ``bench_train.py``'s (60 and 30 steps); ``transformer`` is a
two-layer ``nn.TransformerEncoder`` (d_model 64, 4 heads, ReLU modules as activations) on batches
of 32 sequences of 32 tokens, AdamW, 30 steps. Sampled measurements every 10 steps (the default
``log_every``), no sinks: the difference is the health measurements alone.

Both variants run in this process, alternating in order round after round; the first round
warms up and is not counted. It prints the median of the per-round ratios, their spread and the
ratio of the fastest runs, on the wall clock and the process's CPU clock. On a loaded machine
those ratios spread by tens of percent either way, so it also prints the share of a run's time
spent inside the measurements themselves (the activation hooks, the sampled norms, the device
checks, the final copy), timed with ``perf_counter`` around each of them on the CPU, where every op
runs synchronously: load stretches both sides of that ratio alike. Goal: <= 1.05x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train as bench  # noqa: E402

GOAL = 1.05
WORKLOADS = ("cnn28", "cifar", "transformer")
STEPS = {**bench.STEPS, "transformer": 30}


def make_model(workload: str) -> Any:
    import torch
    from torch import nn

    if workload != "transformer":
        return bench.make_model(workload)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 64)
            layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, activation=nn.ReLU(), batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(64, 100)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(self.embed(x))).flatten(0, 1)

    torch.manual_seed(0)
    return Encoder()


def make_data(workload: str) -> list[tuple[Any, Any]]:
    import torch

    if workload != "transformer":
        return bench.make_data(workload)
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(4):
        x = torch.randint(0, 100, (32, 32), generator=g)
        out.append((x, torch.roll(x, 1, dims=1).flatten()))
    return out


def optimizer(workload: str) -> Any:
    import torch

    if workload == "transformer":
        return lambda params: torch.optim.AdamW(params, lr=1e-3)
    return bench.optimizer(workload)


def run_once(workload: str, data: list[tuple[Any, Any]], health: bool) -> tuple[float, float]:
    from torch.nn import functional as F

    from pytest_modelviz import short_train

    model = make_model(workload)
    wall, cpu = time.perf_counter(), time.process_time()
    result = short_train(model, data, loss_fn=F.cross_entropy, optimizer=optimizer(workload),
                         steps=STEPS[workload], device="cpu", health=health)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert (result.health is not None) == health and result.steps_run == STEPS[workload]
    return wall, cpu


def attributed(workload: str, data: list[tuple[Any, Any]]) -> float:
    """The share of one ``health=True`` run's wall time spent inside the health measurements."""
    import functools

    from pytest_modelviz.train import health

    spent = [0.0]
    patched = [(health._Activation, "hook"), (health.HealthMonitor, "before_update"),
               (health.HealthMonitor, "after_update"), (health.HealthMonitor, "log"),
               (health.HealthMonitor, "_place_static"), (health._TensorWatch, "seen"),
               (health._TensorWatch, "_leave"), (health._TensorWatch, "_inputs")]
    originals = [(owner, name, getattr(owner, name)) for owner, name in patched]

    def timed(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    for owner, name, fn in originals:
        setattr(owner, name, timed(fn))
    try:
        wall, _ = run_once(workload, data, True)
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    return spent[0] / (wall - spent[0])


def spread(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return f"min {min(values):.3f}, q1 {q1:.3f}, q3 {q3:.3f}, max {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (plus one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    workloads = [w.strip() for w in args.workloads.split(",")]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    bench.keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for workload in workloads:
        data = make_data(workload)
        times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        shares = []
        for r in range(args.rounds + 1):
            for health in ((True, False) if r % 2 else (False, True)):
                measured = run_once(workload, data, health)
                if r:
                    times[health].append(measured)
            if r:
                shares.append(attributed(workload, data))
        print(f"  {workload} ({STEPS[workload]} steps): health=True against health=False")
        for i, clock in enumerate(("wall", "cpu")):
            on = [t[i] for t in times[True]]
            off = [t[i] for t in times[False]]
            ratios = [a / b for a, b in zip(on, off, strict=True)]
            print(f"    {clock:<4} {statistics.median(ratios):.3f}x median (goal <= {GOAL:.2f}x); {spread(ratios)}; "
                  f"best/best {min(on) / min(off):.3f}x; without {1000 * statistics.median(off) / STEPS[workload]:.1f} "
                  f"ms/step")
        print(f"    time inside the measurements: {1 + statistics.median(shares):.3f}x median "
              f"(goal <= {GOAL:.2f}x); {spread([1 + x for x in shares])}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
