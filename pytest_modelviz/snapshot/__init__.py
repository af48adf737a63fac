"""Snapshot assertions: architectures (``graph_snapshot``) and parameter statistics, via syrupy.

The syrupy extensions are public, for ``snapshot(extension_class=...)``::

    from pytest_modelviz import capture
    from pytest_modelviz.snapshot import ArchitectureExtension, ParamStatsExtension, compute_stats

    def test_model(snapshot):
        assert capture(model, x) == snapshot(extension_class=ArchitectureExtension)
        assert compute_stats(model) == snapshot(extension_class=ParamStatsExtension)

Names resolve on first use, so importing this package (the collection guard does, on every run)
imports neither syrupy nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "ArchitectureExtension": "pytest_modelviz.snapshot.extension",
    "ParamStatsExtension": "pytest_modelviz.snapshot.params",
    "compute_stats": "pytest_modelviz.params.stats",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from pytest_modelviz.params.stats import compute_stats
    from pytest_modelviz.snapshot.extension import ArchitectureExtension
    from pytest_modelviz.snapshot.params import ParamStatsExtension


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pytest_modelviz.snapshot' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
