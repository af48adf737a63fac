"""Build a run folder by hand, as the fixtures and the session would leave it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from pytest_modelviz.artifacts import RECORDS_FILE, safe_dirname

HOSTILE = "<script>alert(1)</script>"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#eef"/>'
    '<text x="4" y="24">&lt;script&gt;alert(2)&lt;/script&gt;</text><script>alert(3)</script></svg>'
)

PASSED_ID = "tests/test_models.py::test_convnet_trains"
FAILED_ID = f"tests/test_models.py::test_arch[{HOSTILE}]"
SKIPPED_ID = "tests/test_models.py::test_on_gpu"


def write_records(test_dir: Path, *records: dict[str, Any], tail: str = "") -> None:
    test_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records]
    (test_dir / RECORDS_FILE).write_text("\n".join(lines) + "\n" + tail, encoding="utf-8")


def make_run(root: Path, *, with_outcomes: bool = True) -> Path:
    run = root / "run-20250101-000000-abcdef"
    passed, failed, skipped = (run / safe_dirname(n) for n in (PASSED_ID, FAILED_ID, SKIPPED_ID))

    (passed / "graph").mkdir(parents=True)
    (passed / "graph" / "model.svg").write_text(SVG, encoding="utf-8")
    (passed / "graph" / "model.dot").write_text("digraph { conv1 -> relu }", encoding="utf-8")
    (passed / "graph" / "torchviz.dot").write_text('digraph { "AddmmBackward0" -> "loss" }', encoding="utf-8")
    (passed / "curves.png").write_bytes(PNG)
    (passed / "params.png").write_bytes(PNG)
    (passed / "tensorboard").mkdir()
    (passed / "tensorboard" / "events.out.tfevents.1").write_bytes(b"\0" * 8)
    (passed / "visdom").mkdir()
    (passed / "visdom" / "env.json").write_text("{}", encoding="utf-8")
    (passed / "visdom" / "events.jsonl").write_text("", encoding="utf-8")
    write_records(
        passed,
        {
            "kind": "architecture", "name": "convnet", "model": "ConvNet", "training": True,
            "totals": {"params": 206922, "trainable": 206922, "frozen": 0, "buffers": 0, "macs": 1234567},
            "rows": [
                {"name": "conv1", "type": "Conv2d", "output_shape": [1, 16, 28, 28], "params": 160, "macs": 112896},
                {"name": "fc.0", "type": "Linear", "output_shape": [1, 128], "params": 200832, "macs": 200704},
            ],
            "snapshot": "matched", "diff": "", "text": "graph/model.txt", "torch_version": "2.14.1",
        },
        {
            "kind": "graph_render", "name": "convnet", "renderer": "graphviz-pure", "note": "",
            "tensorboard_graph": True,
            "files": {"svg": "graph/model.svg", "dot": "graph/model.dot", "torchviz_dot": "graph/torchviz.dot"},
        },
        {
            "kind": "train", "name": "convnet", "model": "ConvNet", "device": "cpu", "torch_version": "2.14.1",
            "steps": 6, "losses": [2.3, 2.1, 1.7, 1.2, 0.9, 0.7], "lrs": [0.1] * 6,
            "grad_norms": [3.0, 2.5, 2.0, 1.8, 1.5, 1.1],
            "eval": {"accuracy": [[3, 0.4], [6, 0.7]]}, "curves": "curves.png",
        },
        {"kind": "check", "name": "loss decreases", "passed": True, "message": "2.3 -> 0.7"},
        {"kind": "check", "name": "all parameters get gradients", "passed": True, "message": "10/10"},
        {
            "kind": "params", "name": "init", "model": "ConvNet", "snapshot": "matched", "mismatches": [],
            "plot": "params.png", "stats": "params.json",
        },
        {
            "kind": "visdom", "env": "test_convnet_trains", "json": "visdom/env.json",
            "log": "visdom/events.jsonl", "replay": "python -m visdom.replay visdom/events.jsonl",
        },
    )

    write_records(
        failed,
        {
            "kind": "architecture", "name": HOSTILE, "model": f"Net{HOSTILE}", "training": False,
            "totals": {"params": 10, "trainable": 10, "frozen": 0, "buffers": 0, "macs": 10},
            "rows": [{"name": f"layer{HOSTILE}", "type": HOSTILE, "output_shape": [1, 10], "params": 10, "macs": 10}],
            "snapshot": "changed",
            "diff": f"~ conv2: Conv2d(16, 32) -> Conv2d(16, 64)\n- out 32\n+ out 64 {HOSTILE}",
            "text": "../../../etc/passwd", "torch_version": "2.14.1",
        },
        {"kind": "train", "name": "diverges", "model": "Net", "device": "cpu", "steps": 4,
         "losses": [1.0, 5.0, float("nan"), float("inf")], "eval": {HOSTILE: [[2, 0.5]]}},
        {"kind": "check", "name": "loss is finite", "passed": False, "message": f"NaN at step 3 in {HOSTILE}"},
        {"kind": "future_kind", "payload": HOSTILE},
        tail='{"kind": "train", "losses": [1.0, 2',  # a worker killed mid-write
    )

    if with_outcomes:
        outcomes = {
            "started": 1735689600.0, "finished": 1735689612.5, "snapshot_changes": 1,
            "extras": {},
            "tests": [
                {"nodeid": PASSED_ID, "outcome": "passed", "duration": 3.2, "dirname": passed.name, "message": ""},
                {"nodeid": FAILED_ID, "outcome": "failed", "duration": 1.1, "dirname": failed.name,
                 "message": f"AssertionError: architecture changed {HOSTILE}"},
                {"nodeid": SKIPPED_ID, "outcome": "skipped", "duration": 0.0, "dirname": skipped.name,
                 "message": "gpu test: CUDA is not available"},
            ],
        }
        (run / "outcomes.json").write_text(json.dumps(outcomes), encoding="utf-8")
    return run
