"""The wall time of merging the run folders of a sharded CI pipeline into one run folder and report.

    .venv/bin/python benchmarks/bench_merge.py [--shards 50] [--tests 100] [--rounds 3]

Builds ``--shards`` run folders of ``--tests`` tests each, as ``pytest --modelviz`` leaves them (each
test folder with its records, an architecture text, an SVG render, a curves PNG and a TensorBoard
event file), in a temporary folder, then times ``merge_runs`` of all of them, reading, copying,
writing ``outcomes.json`` and ``report.html``: the median and spread over rounds, and the time
of the report alone.

Goal: 50 shards of 100 tests merge in under 10 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from pytest_modelviz.artifacts import safe_dirname
from pytest_modelviz.merge import merge_runs
from pytest_modelviz.records import (
    ArchitectureRecord,
    CheckRecord,
    GraphRenderRecord,
    LayerRow,
    RunOutcomes,
    TestOutcome,
    TrainRecord,
    outcomes_text,
    to_line,
)
from pytest_modelviz.report.html import write_report

GOAL_S = 10.0
_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="80" height="20"><rect width="80" height="20"/></svg>'


def architecture_text() -> str:
    """A real architecture text (what the report parses for its layer table): an MLP of 8 layers."""
    import torch
    from torch import nn

    from pytest_modelviz import capture

    layers = [m for _ in range(4) for m in (nn.Linear(8, 8), nn.ReLU())]
    return capture(nn.Sequential(*layers), torch.zeros(1, 8)).to_text()


def make_shard(root: Path, shard: int, tests: int, arch_text: str) -> Path:
    run = root / f"shard-{shard}" / ".modelviz" / "run-20260101-000000-abc123"
    entries = []
    for i in range(tests):
        nodeid = f"tests/test_models_{shard}.py::test_model[{i}]"
        folder = run / safe_dirname(nodeid)
        (folder / "graph").mkdir(parents=True)
        (folder / "tensorboard").mkdir()
        (folder / "graph" / "architecture.txt").write_text(arch_text)
        (folder / "graph" / "model.svg").write_text(_SVG)
        (folder / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
        (folder / "tensorboard" / "events.out.tfevents.1").write_bytes(bytes(4000))
        rows = tuple(LayerRow(f"layer{j}", "Linear", (1, 8), 72, 64) for j in range(8))
        records = [
            ArchitectureRecord(name="model", model="MLP", totals={"params": 576, "macs": 512}, rows=rows,
                               snapshot="matched", text="graph/architecture.txt", torch_version="2.14.1"),
            GraphRenderRecord(name="model", files={"svg": "graph/model.svg"}),
            TrainRecord(name="model", model="MLP", device="cpu", steps=20, losses=tuple(1 / (s + 1) for s in range(20)),
                        curves="curves.png", tensorboard="tensorboard"),
            CheckRecord(name="loss decreases", passed=True, train="model"),
        ]
        (folder / "modelviz.jsonl").write_text("".join(to_line(r) + "\n" for r in records))
        entries.append(TestOutcome(nodeid, "passed", 0.5, folder.name))
    outcomes = RunOutcomes(tests=tuple(entries), started=1.0e9, finished=1.0e9 + 60, exit_status=0,
                           job=f"cpu-{shard}")
    (run / "outcomes.json").write_text(outcomes_text(outcomes))
    return run.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=50)
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        text = architecture_text()
        shards = [make_shard(root, s, args.tests, text) for s in range(args.shards)]
        print(f"built {args.shards} shards x {args.tests} tests in {time.perf_counter() - start:.1f} s")
        times = []
        for r in range(args.rounds):
            start = time.perf_counter()
            result = merge_runs(shards, root / f"merged-{r}")
            times.append(time.perf_counter() - start)
            assert result.tests == args.shards * args.tests and not result.warnings, result.warnings
            assert "could not be" not in (root / f"merged-{r}" / "report.html").read_text(), "unrealistic input"
        report = root / "merged-0" / "report.html"
        start = time.perf_counter()
        write_report(root / "merged-0")
        report_s = time.perf_counter() - start
        median = statistics.median(times)
        print(f"merge of {args.shards * args.tests} test results: median {median:.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}, {args.rounds} rounds); "
              f"report.html {report.stat().st_size / 1e6:.1f} MB; load average {os.getloadavg()[0]:.1f}")
        print(f"of which the report alone (read and drawn again from the merged folder): {report_s:.2f} s")
        print(f"goal: < {GOAL_S:.0f} s for 50 shards of 100 tests -> {'met' if median < GOAL_S else 'NOT met'}")


if __name__ == "__main__":
    main()
