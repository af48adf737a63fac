"""The marker that runs a test on CUDA: its name, whether the project owns that name already, and
the start-up check that a run selecting only such tests has CUDA to run them on.

Loaded with the entry point, so torch is imported only when CUDA must be asked about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

DEFAULT_MARKER = "gpu"
MARKER_KEY = pytest.StashKey[str | None]()  # the marker this run handles; None: none


def marker_line(name: str) -> str:
    """How the marker is registered (``pytest --markers``)."""
    return (
        f"{name}: runs on CUDA (pytest-modelviz); skipped with a reason where CUDA is unavailable, "
        f"and a run whose -m selects only {name} tests fails at start without CUDA"
    )


def choose_marker(configured: str | None, registered: Sequence[str]) -> tuple[str | None, str]:
    """The marker pytest-modelviz handles (None: none) and a warning to give ("" when none).

    A name the project set in ``modelviz_gpu_marker`` is ours. The default, ``gpu``, is ours unless
    something else registers a ``gpu`` marker already (the project's ini or conftest, another
    plugin): its meaning is then left as it is, and the warning says how to choose.
    """
    if configured is not None:
        return configured, ""
    theirs = _registered_elsewhere(DEFAULT_MARKER, registered)
    if theirs is None:
        return DEFAULT_MARKER, ""
    return None, (
        f"pytest-modelviz: a '{DEFAULT_MARKER}' marker is registered already ({theirs!r}), so "
        f"pytest-modelviz leaves its meaning alone: {DEFAULT_MARKER} tests are not moved to CUDA "
        "nor skipped without it, and -m is not checked. To give it pytest-modelviz's meaning, set "
        f"the ini option modelviz_gpu_marker = {DEFAULT_MARKER}; to use another marker for CUDA "
        "tests, set modelviz_gpu_marker = that name."
    )


def _registered_elsewhere(name: str, lines: Iterable[str]) -> str | None:
    own = marker_line(name)
    for line in lines:
        if line != own and line.split(":", 1)[0].split("(", 1)[0].strip() == name:
            return line.strip()
    return None


def needs_cuda(item: pytest.Item, marker: str | None) -> bool:
    return marker is not None and item.get_closest_marker(marker) is not None


def selection_problem(config: pytest.Config, items: Sequence[pytest.Item], marker: str | None) -> str | None:
    """Why this run must not go on, or None: ``-m`` selected tests and every one needs CUDA, which
    is not there. Skipping them all would report a broken GPU runner as green.

    Decided from the selected items, so any ``-m`` that also selects CPU tests runs them.
    """
    markexpr = config.getoption("markexpr", None)
    if not markexpr or config.getoption("collectonly", False) or not items:
        return None
    if not all(needs_cuda(item, marker) for item in items):
        return None
    from pytest_modelviz.devices import cuda_available

    if cuda_available():
        return None
    return (
        f"-m {markexpr!r} selects only tests marked {marker} ({len(items)}), but CUDA is not available "
        "on this machine (torch.cuda.is_available() is False). A GPU runner without a working GPU "
        "must not pass by skipping every test: fix the runner's CUDA setup, or select other tests."
    )
