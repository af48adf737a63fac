"""Shared helpers for the plugin's own tests."""

from __future__ import annotations

import importlib

import matplotlib

matplotlib.use("Agg")

# pytester's in-process runs drop modules first imported during the inner run; extension modules
# (torch, protobuf descriptors) cannot be imported twice, so load them once here, up front.
for _name in (
    "torch",
    "torchvision",
    "matplotlib.pyplot",
    "tensorboardX",
    "tensorboard.backend.event_processing.event_accumulator",
    "hiddenlayer",
    "visdom",
):
    importlib.import_module(_name)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _inner_runs_are_not_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``-n 2`` the outer worker's variables would make an inner pytester run (and syrupy's
    summary in it) think it is an xdist worker too."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)


@pytest.fixture(autouse=True)
def _inner_runs_are_not_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CI service the outer run's variables would make every inner run write annotations,
    a step summary and job names; the tests that want them set them."""
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_JOB", "MODELVIZ_JOB", "MODELVIZ_MATRIX"):
        monkeypatch.delenv(name, raising=False)
