"""pytest-modelviz: test what PyTorch models are and how they train, and see it.

This package is imported by every pytest run through the ``pytest11`` entry point
(``pytest_modelviz.plugin``), so nothing heavy is imported here: the public names are
resolved lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "capture": "pytest_modelviz.graph.capture",
    "ArchitectureGraph": "pytest_modelviz.graph.model",
    "short_train": "pytest_modelviz.train.loop",
    "TrainResult": "pytest_modelviz.train.result",
    "ModelvizError": "pytest_modelviz.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from pytest_modelviz.errors import ModelvizError
    from pytest_modelviz.graph.capture import capture
    from pytest_modelviz.graph.model import ArchitectureGraph
    from pytest_modelviz.train.loop import short_train
    from pytest_modelviz.train.result import TrainResult


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pytest_modelviz' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
