"""How long architecture capture takes, against one forward pass and against torchinfo/torchview.

    python benchmarks/bench_capture.py [--rounds 5] [--threads 1,2,0] [--models resnet50,vit_b_16,llama7b_meta]

For each model (batch 1, random weights, no download) and each torch thread count (0: torch's
default), every round times one plain forward pass (``torch.no_grad()``), ``capture``,
``torchinfo.summary`` and ``torchview.draw_graph`` (graph only, no rendering) back to back, in an
order rotated from round to round; a tool's ratio in a round is its time over that round's
forward pass. It prints the median ratio over rounds and its spread, on the wall clock and on
the process's CPU clock (which other load on a shared machine disturbs less), and the peak memory
of a capture, measured in a fresh subprocess (``ru_maxrss``) so earlier models do not count.

Goals: capture <= 1.2x one forward pass, and faster than ``torchinfo.summary``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODELS = ("resnet50", "vit_b_16", "llama7b_meta")
GOAL = 1.2


def build(name: str) -> tuple[Any, Any]:
    """The model (eval mode) and one example batch."""
    import torch
    import torchvision

    if name == "llama7b_meta":
        sys.path.insert(0, str(HERE))
        from llama7b import meta_llama7b

        return meta_llama7b()
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, torch.randn(1, 3, 224, 224)


def forward(model: Any, x: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(x)


def capture(model: Any, x: Any) -> Any:
    from pytest_modelviz import capture as capture_

    return capture_(model, x)


def torchinfo_summary(model: Any, x: Any) -> Any:
    import torchinfo

    return torchinfo.summary(model, input_data=x, verbose=0, device=x.device)


def torchview_graph(model: Any, x: Any) -> Any:
    import torchview

    return torchview.draw_graph(model, input_data=x, device=x.device, save_graph=False, depth=8)


TOOLS: dict[str, Callable[[Any, Any], Any]] = {
    "forward": forward, "capture": capture, "torchinfo.summary": torchinfo_summary,
    "torchview.draw_graph": torchview_graph,
}


def peak_memory_mb(name: str) -> dict[str, float]:
    """Run one capture in a fresh process; report its peak RSS before and after capturing."""
    code = (
        f"import json, resource, sys; sys.path.insert(0, {str(HERE)!r}); import bench_capture as b; "
        f"from pytest_modelviz import capture; m, x = b.build({name!r}); "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; capture(m, x); "
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "print(json.dumps({'before_mb': before / 1024, 'after_mb': after / 1024}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[Any, Any], Any], model: Any, x: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(model, x)
    return time.perf_counter() - wall, time.process_time() - cpu


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def bench(model: Any, x: Any, rounds: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    tools = dict(TOOLS)
    for label in list(tools):
        try:
            tools[label](model, x)  # warm-up: first calls pay for lazy initialisation
        except Exception as exc:  # noqa: BLE001 - a tool that cannot handle this model is reported
            print(f"  {label}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
            del tools[label]
    order = list(tools)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in order}
    for r in range(rounds):
        for label in order[r % len(order):] + order[:r % len(order)]:
            times[label].append(timed(tools[label], model, x))
    base = times["forward"]
    print(f"  {torch.get_num_threads()} thread(s): forward {1000 * statistics.median(w for w, _ in base):.1f} ms wall, "
          f"{1000 * statistics.median(c for _, c in base):.1f} ms CPU (median of {rounds})")
    for label in order[1:]:
        cells = []
        for clock in (0, 1):
            ratios = [t[clock] / b[clock] for t, b in zip(times[label], base, strict=True)]
            cells.append(f"{statistics.median(ratios):5.2f}x ({spread(ratios)})")
        goal = f"   goal <= {GOAL}x and < torchinfo" if label == "capture" else ""
        print(f"    {label:<22} wall {cells[0]}   CPU {cells[1]}{goal}")
    if "torchinfo.summary" in times and "capture" in times:
        ratios = [t[0] / c[0] for t, c in zip(times["torchinfo.summary"], times["capture"], strict=True)]
        print(f"    torchinfo / capture    wall {statistics.median(ratios):5.2f}x ({spread(ratios)})   goal > 1x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", default="1,2,0",
                        help="torch intra-op thread counts to measure (0: torch's default)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    args = parser.parse_args()
    import torch

    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, default {default_threads} thread(s), {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f}")
    for name in args.models.split(","):
        model, x = build(name.strip())
        graph = capture(model, x)
        print(f"\n{name}: {graph.totals.params:,} params, {len(graph.nodes)} nodes, device {x.device.type}")
        for threads in (int(t) for t in args.threads.split(",")):
            bench(model, x, args.rounds, threads or default_threads)
        if not args.no_memory:
            mem = peak_memory_mb(name.strip())
            print(f"  peak RSS: {mem['before_mb']:.0f} MB after building, {mem['after_mb']:.0f} MB after capture")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
