"""Helpers shared by the plugin's tests (importable from any test folder: ``pythonpath = tests``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest


def run_dir_of(pytester: pytest.Pytester, base: str = ".modelviz") -> Path:
    """The run folder the last ``--modelviz`` run in ``pytester``'s folder created."""
    latest = pytester.path / base / "latest"
    assert latest.is_symlink(), f"no {base}/latest pointer in {pytester.path}"
    return latest.resolve()


def decode_png(data: bytes) -> np.ndarray:
    """A PNG's pixels as an ``H x W x 3`` uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "PNG"
        return np.asarray(picture.convert("RGB"))
