"""Snapshot assertions: architectures (``graph_snapshot``) and parameter statistics, via syrupy.

The syrupy extensions are public, for ``snapshot(extension_class=...)``::

    from pytest_modelviz import ArchitectureExtension, ParamStatsExtension, capture, compute_stats

    def test_model(snapshot):
        assert capture(model, x) == snapshot(extension_class=ArchitectureExtension)
        assert compute_stats(model) == snapshot(extension_class=ParamStatsExtension)

Names resolve on first use, so importing this package (the collection guard does, on every run)
imports neither syrupy nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_modelviz.lazy import lazy_exports

# Also exported by ``pytest_modelviz`` itself, the one public home; kept here for existing imports.
_LAZY = {
    "ArchitectureExtension": "pytest_modelviz.snapshot.extension",
    "ParamStatsExtension": "pytest_modelviz.snapshot.params",
    "compute_stats": "pytest_modelviz.params.stats",
}

__all__ = ["ArchitectureExtension", "ParamStatsExtension", "compute_stats"]

__getattr__ = lazy_exports(__name__, _LAZY, globals())

if TYPE_CHECKING:  # pragma: no cover
    from pytest_modelviz.params.stats import compute_stats
    from pytest_modelviz.snapshot.extension import ArchitectureExtension
    from pytest_modelviz.snapshot.params import ParamStatsExtension
