"""How long architecture capture takes, against one forward pass and against torchinfo/torchview.

    python benchmarks/bench_capture.py [--repeats 5] [--threads 1] [--models resnet50,vit_b_16,llama7b_meta]

For each model (batch 1, random weights, no download) it prints the median of a few repeats of:
one plain forward pass, ``capture``, ``torchinfo.summary`` and ``torchview.draw_graph`` (graph
only, no rendering), each as a ratio to the forward pass measured in the same process; and the
peak memory of a capture, measured in a fresh subprocess (``ru_maxrss``) so earlier models do not
count. Target: capture <= 1.5x one forward pass on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
MODELS = ("resnet50", "vit_b_16", "llama7b_meta")


def build(name: str) -> tuple[Any, Any]:
    """The model (eval mode) and one example batch."""
    import torch
    import torchvision

    if name == "llama7b_meta":
        sys.path.insert(0, str(HERE))
        from llama7b import meta_llama7b

        return meta_llama7b()
    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, torch.randn(1, 3, 224, 224)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward(model: Any, x: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(x)


def torchinfo_summary(model: Any, x: Any) -> Any:
    import torchinfo

    return torchinfo.summary(model, input_data=x, verbose=0, device=x.device)


def torchview_graph(model: Any, x: Any) -> Any:
    import torchview

    return torchview.draw_graph(model, input_data=x, device=x.device, save_graph=False, depth=8)


def peak_memory_mb(name: str) -> dict[str, float]:
    """Run one capture in a fresh process; report its peak RSS before and after capturing."""
    code = (
        "import json, resource, sys; sys.path.insert(0, {here!r}); import bench_capture as b; "
        "from pytest_modelviz import capture; m, x = b.build({name!r}); "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; capture(m, x); "
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "print(json.dumps({{'before_mb': before / 1024, 'after_mb': after / 1024}}))"
    ).format(here=str(HERE), name=name)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(name: str, repeats: int) -> None:
    from pytest_modelviz import capture

    model, x = build(name)
    forward(model, x)  # warm-up: first calls pay for lazy initialisation
    capture(model, x)
    # Forward and capture alternate, so a busy machine slows both alike.
    pairs = [(median_seconds(lambda: forward(model, x), 1), median_seconds(lambda: capture(model, x), 1)) for _ in range(repeats)]
    base = statistics.median(f for f, _ in pairs)
    rows = [("forward", base), ("capture", statistics.median(c for _, c in pairs))]
    for label, fn in (("torchinfo.summary", torchinfo_summary), ("torchview.draw_graph", torchview_graph)):
        try:
            fn(model, x)
        except Exception as exc:  # noqa: BLE001 - a tool that cannot handle this model is reported
            rows.append((f"{label} (skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:80]})", float("nan")))
            continue
        rows.append((label, median_seconds(lambda: fn(model, x), repeats)))
    graph = capture(model, x)
    print(f"\n{name}: {graph.totals.params:,} params, {len(graph.nodes)} nodes, device {x.device.type}")
    for label, seconds in rows:
        print(f"  {label:<24} {seconds * 1000:10.1f} ms   {seconds / base:6.2f}x forward")
    mem = peak_memory_mb(name)
    print(f"  peak RSS: {mem['before_mb']:.0f} MB after building, {mem['after_mb']:.0f} MB after capture")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: steadiest on a shared machine)"
    )
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for name in args.models.split(","):
        bench(name.strip(), args.repeats)


if __name__ == "__main__":
    main()
