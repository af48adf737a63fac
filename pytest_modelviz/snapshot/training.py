"""Training-dynamics snapshots: ``graph_snapshot.training(result)`` stored through syrupy.

``TrainingDynamicsExtension`` compares within tolerance, as ``ParamStatsExtension`` does: curves
within ``rtol``/``atol`` of the stored ones match, so syrupy neither fails nor rewrites the file
(even under ``--snapshot-update``); beyond them syrupy fails the assertion, or writes the new text
under ``--snapshot-update``. Used directly::

    from pytest_modelviz import TrainingDynamicsExtension, training_dynamics

    assert training_dynamics(result) == snapshot.use_extension(TrainingDynamicsExtension)

with the tolerance of the class, or through ``assert_training_snapshot``, which takes per-call
tolerances (per metric too) and the ini defaults.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError
from pytest_modelviz.params.stats import Tolerance, ToleranceSpec
from pytest_modelviz.snapshot.extension import check_snapshot, display_path
from pytest_modelviz.snapshot.files import TRAINING_EXTENSION
from pytest_modelviz.snapshot.labels import snapshot_label
from pytest_modelviz.snapshot.tolerant import Tolerant, TolerantExtension, mismatch_lines, read_text
from pytest_modelviz.train.dynamics import TrainingDynamics, compare_dynamics, dynamics_of

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion

    from pytest_modelviz.session import ModelvizSession
    from pytest_modelviz.train.result import TrainResult


class TrainingDynamicsExtension(TolerantExtension[TrainingDynamics]):
    """One text file per snapshot: ``__snapshots__/<test module>/<test>[<name>].training``.

    Compares within ``rtol``/``atol`` (numbers, or dicts of metric-name glob pattern -> number);
    subclass to change them.
    """

    file_extension = TRAINING_EXTENSION
    rtol: ClassVar[ToleranceSpec] = 1e-2
    atol: ClassVar[ToleranceSpec] = 1e-6
    defaults = (1e-2, 1e-6)
    value_type = TrainingDynamics
    what = ("training of", "differs")
    hint = "compare `pytest_modelviz.train.dynamics.dynamics_of(result)` with the snapshot"

    def compare(self, stored: TrainingDynamics, actual: TrainingDynamics, tolerance: Tolerance) -> list[str]:
        return compare_dynamics(stored, actual, tolerance)


def assert_training_snapshot(
    snapshot: SnapshotAssertion,
    session: ModelvizSession,
    result: TrainResult,
    *,
    name: str | None = None,
    rtol: ToleranceSpec = None,
    atol: ToleranceSpec = None,
    metrics: Sequence[str] | None = None,
) -> TrainingDynamics:
    """Assert the curves of ``result`` (a ``short_train`` result) against the stored snapshot.

    ``rtol``/``atol`` default to the ini keys ``modelviz_train_rtol``/``modelviz_train_atol``; a
    dict like ``{"loss": 0.05, "eval/*": 0.1}`` overrides them for the metrics its glob patterns
    match. ``metrics`` picks the curves (default: ``loss``, ``grad_norm``, ``lr`` and every
    ``eval/<name>`` the run has).
    """
    __tracebackhide__ = True  # the failure is the message, not this function's locals
    from pytest_modelviz.train.result import TrainResult

    if not isinstance(result, TrainResult):
        raise ModelvizUsageError(
            f"graph_snapshot.training takes the result of short_train, got {type(result).__name__}"
        )
    _check_complete(result)
    tolerance = Tolerance.resolve(rtol, atol, session.settings.train_rtol, session.settings.train_atol)
    actual = dynamics_of(result, metrics)
    item = snapshot.test_location.item
    label = snapshot_label(item, snapshot, "training snapshot", name, actual.model)
    outcome = check_snapshot(
        snapshot.use_extension(TrainingDynamicsExtension), label, Tolerant(actual, tolerance)
    )
    if outcome.status != "changed":
        return actual
    shown = display_path(outcome.location, item.config.rootpath)
    command = f"pytest --snapshot-update {shlex.quote(item.nodeid)}"
    if outcome.stored is None:
        raise AssertionError(
            f"training snapshot {label!r} of {actual.model} does not exist ({shown}).\nCreate it with: {command}"
        )
    try:
        stored = read_text(outcome.stored, shown, TrainingDynamics)
    except SnapshotFormatError as exc:
        raise SnapshotFormatError(f"{exc}\nTo rewrite it from the run: {command}") from None
    raise AssertionError(
        "\n".join(mismatch_lines(f"training of {actual.model}", "differs", label, shown,
                                 compare_dynamics(stored, actual, tolerance)))
        + f"\nIf the change is intended, accept it with: {command} "
        "(or loosen rtol/atol, or the ini keys modelviz_train_rtol/modelviz_train_atol)"
    )


def _check_complete(result: TrainResult) -> None:
    """A run that failed or stopped early has curves of another length than the test asked for."""
    if result.error is not None:
        raise ModelvizUsageError(
            f"{result.name}: training failed part way ({result.error}); a partial run cannot be a training "
            "snapshot. Snapshot the result short_train returns."
        )
    if result.nonfinite is not None:
        raise AssertionError(
            f"{result.name}: cannot snapshot the training: it ran {result.steps_run} of {result.steps} steps "
            f"and went non-finite at {result.nonfinite.message}"
        )
    if result.steps_run != result.steps:
        raise AssertionError(
            f"{result.name}: cannot snapshot the training: it ran {result.steps_run} of {result.steps} steps"
        )


