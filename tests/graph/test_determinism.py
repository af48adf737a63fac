"""The snapshot body is byte-identical across processes and hash seeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import runpy, sys, torch, torchvision
sys.path.insert(0, {here!r})
from graph_models import ConvNet, DictModel, TiedLM
from pytest_modelviz import capture
torch.manual_seed(int(sys.argv[1]))  # different weights and inputs: the text must not care
texts = [
    capture(torchvision.models.resnet18(weights=None).eval(), torch.randn(1, 3, 32, 32)).to_text(),
    capture(DictModel(), {{"tokens": torch.randint(0, 50, (2, 5))}}, scale=2.0).to_text(),
    capture(TiedLM(), torch.randint(0, 20, (1, 4))).to_text(),
    capture(ConvNet(), torch.randn(1, 1, 28, 28)).to_text(),
]
zoo = runpy.run_path({zoo!r})["capture_zoo"]()  # plain-torch models of many op kinds, CPU and meta
texts += [text for by_mode in zoo.values() for text in by_mode.values()]
sys.stdout.write("\\n=====\\n".join(texts))
"""


def _start(seed: str, hashseed: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    here = Path(__file__).parent
    code = SCRIPT.format(here=str(here), zoo=str(here.parents[1] / "benchmarks" / "compare_capture_versions.py"))
    return subprocess.Popen(
        [sys.executable, "-c", code, seed], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _output(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return out


@pytest.mark.slow
def test_two_processes_with_different_hash_seeds_write_identical_bytes() -> None:
    procs = [_start("1", "1"), _start("2", "4242")]  # both at once: half the wait
    first, second = (_output(p) for p in procs)
    assert first == second
    assert first.count("# modelviz architecture v1") >= 4 + 3 * 10
    assert "0x" not in first and "cpu" not in first.lower()
