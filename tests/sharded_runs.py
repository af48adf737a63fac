"""A small suite run as a sharded CI pipeline: three CPU shards (``-k`` groups) and a GPU job that
runs every test again under another job name, each in a pytest process of its own, as CI runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUITE = '''
import torch
from torch import nn


def test_arch_a(graph_snapshot):
    graph_snapshot(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.zeros(1, 4))


def test_arch_b(graph_snapshot):
    graph_snapshot(nn.Linear(4, 2), torch.zeros(1, 4))


def test_train(short_train):
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    result = short_train(nn.Linear(4, 1), [(x, x.sum(1, keepdim=True))], loss_fn=nn.MSELoss(),
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.1), steps=4)
    result.assert_finite()


def test_tb(tb_writer):
    tb_writer.add_scalar("x", 1.0, 0)


def test_fails():
    assert False, "boom"
'''
NODEIDS = tuple(f"test_suite.py::{name}" for name in ("test_arch_a", "test_arch_b", "test_train", "test_tb",
                                                      "test_fails"))
SHARDS = {"cpu-1": "arch", "cpu-2": "train or tb", "cpu-3": "fails"}  # job -> its -k group
GPU_JOB = "gpu"


def run_pytest(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GITHUB_", "MODELVIZ_", "PYTEST_XDIST"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=project,
                          capture_output=True, text=True, env=full_env, timeout=600, check=False)


def make_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "test_suite.py").write_text(SUITE, encoding="utf-8")
    done = run_pytest(project, "--snapshot-update")
    assert "1 failed, 4 passed" in done.stdout, done.stdout + done.stderr
    return project


def run_jobs(project: Path) -> dict[str, Path]:
    """Every job's ``.modelviz`` folder (what a CI job uploads), by job name."""
    out = {}
    for job, keyword in [*SHARDS.items(), (GPU_JOB, "")]:
        base = project / f"artifacts-{job}" / ".modelviz"
        args = ["--modelviz", "--modelviz-dir", str(base), "--modelviz-job", job]
        done = run_pytest(project, *args, *(["-k", keyword] if keyword else []))
        assert done.returncode in (0, 1), done.stdout + done.stderr
        out[job] = base
    return out
