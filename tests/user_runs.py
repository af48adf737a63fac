"""Reading back what a user's ``--modelviz`` run left in its run folder (for pytester tests)."""

from __future__ import annotations

import json
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The top of a user's test module: a tiny model, its data and optimizer.
USER_PRELUDE = """
import torch
from torch import nn
from torch.nn import functional as F


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def sgd(params):
    return torch.optim.SGD(params, lr=0.5)
"""


def read_records(test_dir: Path) -> list[dict]:
    path = test_dir / "modelviz.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def folder_of(run_dir: Path, name: str) -> Path:
    """The folder of the test function ``name`` in ``run_dir``."""
    [folder] = [p for p in run_dir.iterdir() if p.is_dir() and f"--{name}-" in p.name]
    return folder


def train_record(test_folder: Path) -> dict:
    [train] = [r for r in read_records(test_folder) if r["kind"] == "train"]
    return train
