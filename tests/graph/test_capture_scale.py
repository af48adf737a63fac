"""A 7B-parameter decoder built on the meta device is captured without allocating its weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so the peak resident size is this capture's alone.
SCRIPT = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from llama7b import meta_llama7b
from pytest_modelviz import capture

model, tokens = meta_llama7b()
graph = capture(model, tokens)
print(json.dumps({
    "params": graph.totals.params,
    "nodes": len(graph.nodes),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "meta": all(p.is_meta for p in model.parameters()),
}))
"""


@pytest.mark.slow
def test_llama_7b_shape_on_meta_is_captured_under_2_gb() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "benchmarks")], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["params"] == 6_738_415_616  # Llama-2-7B
    assert facts["meta"], "capture must not materialize the weights"
    assert facts["nodes"] > 1000
    assert facts["peak_mb"] < 2048, f"peak resident memory {facts['peak_mb']:.0f} MB"
