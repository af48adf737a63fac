"""pytest-modelviz: test what PyTorch models are and how they train, and see it.

Everything a user imports is here, in ``pytest_modelviz.__all__``; other modules are internal
and may move. This package is imported by every pytest run through the ``pytest11`` entry point
(``pytest_modelviz.plugin``), so nothing heavy is imported here: the public names are resolved
lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_modelviz.lazy import lazy_exports

__version__ = "0.1.0"

# name -> "module" that defines it, or "module:attribute"; resolved on first access (PEP 562).
_PUBLIC = {
    # architectures and their snapshots
    "capture": "pytest_modelviz.graph.capture",
    "ArchitectureGraph": "pytest_modelviz.graph.model",
    "GraphSnapshot": "pytest_modelviz.snapshot.assertion",  # the graph_snapshot fixture's type
    "ArchitectureExtension": "pytest_modelviz.snapshot.extension",
    "ParamStatsExtension": "pytest_modelviz.snapshot.params",
    "TrainingDynamicsExtension": "pytest_modelviz.snapshot.training",
    "training_dynamics": "pytest_modelviz.train.dynamics:dynamics_of",
    "compute_stats": "pytest_modelviz.params.stats",
    # pictures of an architecture, and the run report
    "architecture_dot": "pytest_modelviz.render.dot:to_dot",
    "hiddenlayer_dot": "pytest_modelviz.render.hiddenlayer_graph:to_dot",
    "autograd_dot": "pytest_modelviz.render.autograd",
    "find_renderer": "pytest_modelviz.render.graphviz",
    "to_graph_def": "pytest_modelviz.tensorboard.graph",
    "write_graph_event": "pytest_modelviz.tensorboard.graph",
    "write_report": "pytest_modelviz.report.html",
    # training
    "short_train": "pytest_modelviz.train.loop",
    "ShortTrain": "pytest_modelviz.train.options",  # the short_train fixture's type
    "TrainOptions": "pytest_modelviz.train.options",
    "TrainResult": "pytest_modelviz.train.result",
    "LossReached": "pytest_modelviz.train.result",  # what assert_loss_below returns
    "HealthLog": "pytest_modelviz.train.diagnosis",  # TrainResult.health
    "DistributedResult": "pytest_modelviz.train.ddp_checks",  # short_train(world_size=N)
    # where metrics go
    "MetricSink": "pytest_modelviz.sink",
    "Histogram": "pytest_modelviz.sink",
    "TensorBoardSink": "pytest_modelviz.tensorboard.sink",
    "VisdomSink": "pytest_modelviz.visdom.sink",
    # errors and warnings
    "ModelvizError": "pytest_modelviz.errors",
    "ModelvizUsageError": "pytest_modelviz.errors",
    "CaptureError": "pytest_modelviz.errors",
    "SnapshotFormatError": "pytest_modelviz.errors",
    "SnapshotStoreError": "pytest_modelviz.errors",
    "TrainingError": "pytest_modelviz.errors",
    "DistributedError": "pytest_modelviz.errors",
    "DistributedTimeoutError": "pytest_modelviz.errors",
    "DeviceUnavailableError": "pytest_modelviz.errors",
    "SinkError": "pytest_modelviz.errors",
    "RenderError": "pytest_modelviz.errors",
    "MissingExtraError": "pytest_modelviz.errors",
    "RenderWarning": "pytest_modelviz.errors",
    "SnapshotRenamedWarning": "pytest_modelviz.errors",
    "VisdomFallbackWarning": "pytest_modelviz.visdom.client",
}

# Written out (not built from _PUBLIC) so type checkers and linters see what is exported.
__all__ = [
    "__version__",
    "capture",
    "ArchitectureGraph",
    "GraphSnapshot",
    "ArchitectureExtension",
    "ParamStatsExtension",
    "TrainingDynamicsExtension",
    "training_dynamics",
    "compute_stats",
    "architecture_dot",
    "hiddenlayer_dot",
    "autograd_dot",
    "find_renderer",
    "to_graph_def",
    "write_graph_event",
    "write_report",
    "short_train",
    "ShortTrain",
    "TrainOptions",
    "TrainResult",
    "LossReached",
    "HealthLog",
    "DistributedResult",
    "MetricSink",
    "Histogram",
    "TensorBoardSink",
    "VisdomSink",
    "ModelvizError",
    "ModelvizUsageError",
    "CaptureError",
    "SnapshotFormatError",
    "SnapshotStoreError",
    "TrainingError",
    "DistributedError",
    "DistributedTimeoutError",
    "DeviceUnavailableError",
    "SinkError",
    "RenderError",
    "MissingExtraError",
    "RenderWarning",
    "SnapshotRenamedWarning",
    "VisdomFallbackWarning",
]

__getattr__ = lazy_exports(__name__, _PUBLIC, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from pytest_modelviz.errors import (
        CaptureError,
        DeviceUnavailableError,
        DistributedError,
        DistributedTimeoutError,
        MissingExtraError,
        ModelvizError,
        ModelvizUsageError,
        RenderError,
        RenderWarning,
        SinkError,
        SnapshotFormatError,
        SnapshotRenamedWarning,
        SnapshotStoreError,
        TrainingError,
    )
    from pytest_modelviz.graph.capture import capture
    from pytest_modelviz.graph.model import ArchitectureGraph
    from pytest_modelviz.params.stats import compute_stats
    from pytest_modelviz.render.autograd import autograd_dot
    from pytest_modelviz.render.dot import to_dot as architecture_dot
    from pytest_modelviz.render.graphviz import find_renderer
    from pytest_modelviz.render.hiddenlayer_graph import to_dot as hiddenlayer_dot
    from pytest_modelviz.report.html import write_report
    from pytest_modelviz.sink import Histogram, MetricSink
    from pytest_modelviz.snapshot.assertion import GraphSnapshot
    from pytest_modelviz.snapshot.extension import ArchitectureExtension
    from pytest_modelviz.snapshot.params import ParamStatsExtension
    from pytest_modelviz.snapshot.training import TrainingDynamicsExtension
    from pytest_modelviz.tensorboard.graph import to_graph_def, write_graph_event
    from pytest_modelviz.tensorboard.sink import TensorBoardSink
    from pytest_modelviz.train.ddp_checks import DistributedResult
    from pytest_modelviz.train.diagnosis import HealthLog
    from pytest_modelviz.train.dynamics import dynamics_of as training_dynamics
    from pytest_modelviz.train.loop import short_train
    from pytest_modelviz.train.options import ShortTrain, TrainOptions
    from pytest_modelviz.train.result import LossReached, TrainResult
    from pytest_modelviz.visdom.client import VisdomFallbackWarning
    from pytest_modelviz.visdom.sink import VisdomSink
