"""Helpers shared by the plugin's tests (importable from any test folder: ``pythonpath = tests``)."""

from __future__ import annotations

from pathlib import Path

import pytest


def run_dir_of(pytester: pytest.Pytester, base: str = ".modelviz") -> Path:
    """The run folder the last ``--modelviz`` run in ``pytester``'s folder created."""
    latest = pytester.path / base / "latest"
    assert latest.is_symlink(), f"no {base}/latest pointer in {pytester.path}"
    return latest.resolve()
