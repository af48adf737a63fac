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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError
from pytest_modelviz.params.stats import Tolerance, ToleranceSpec
from pytest_modelviz.snapshot.extension import TextSnapshotExtension, check_snapshot, display_path
from pytest_modelviz.snapshot.files import TRAINING_EXTENSION, StoredText
from pytest_modelviz.snapshot.labels import snapshot_label
from pytest_modelviz.train.dynamics import TrainingDynamics, compare_dynamics, dynamics_of, parse_dynamics

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion
    from syrupy.types import SerializableData, SerializedData

    from pytest_modelviz.session import ModelvizSession
    from pytest_modelviz.train.result import TrainResult

_SHOWN = 60  # lines of a diff before "... and N more"


class DynamicsText(str):
    """Serialized dynamics that carry the tolerance to compare them with."""

    tolerance: Tolerance | None

    def __new__(cls, text: str, tolerance: Tolerance | None = None) -> DynamicsText:
        self = super().__new__(cls, text)
        self.tolerance = tolerance
        return self


@dataclass(frozen=True)
class TolerantDynamics:
    dynamics: TrainingDynamics
    tolerance: Tolerance


class TrainingDynamicsExtension(TextSnapshotExtension):
    """One text file per snapshot: ``__snapshots__/<test module>/<test>[<name>].training``.

    Compares within ``rtol``/``atol`` (numbers, or dicts of metric-name glob pattern -> number);
    subclass to change them.
    """

    file_extension = TRAINING_EXTENSION
    rtol: ClassVar[ToleranceSpec] = 1e-2
    atol: ClassVar[ToleranceSpec] = 1e-6

    def serialize(self, data: SerializableData, **_: Any) -> SerializedData:
        if isinstance(data, TolerantDynamics):
            return DynamicsText(data.dynamics.to_text(), data.tolerance)
        if isinstance(data, TrainingDynamics):
            return DynamicsText(data.to_text())
        if isinstance(data, str):
            return data
        raise ModelvizUsageError(
            f"TrainingDynamicsExtension snapshots TrainingDynamics, got {type(data).__name__}: compare "
            "`pytest_modelviz.train.dynamics.dynamics_of(result)` with the snapshot"
        )

    def tolerance_for(self, serialized: Any) -> Tolerance:
        given = getattr(serialized, "tolerance", None)
        return given if given is not None else Tolerance.resolve(self.rtol, self.atol, 1e-2, 1e-6)

    def agree(self, new: Any, stored: Any) -> bool:
        try:
            return not compare_dynamics(_parse(stored), _parse(new), self.tolerance_for(new))
        except SnapshotFormatError:
            return False

    def diff_lines(self, serialized_data: SerializedData, snapshot_data: SerializedData) -> Iterator[str]:
        if not isinstance(snapshot_data, StoredText) and not snapshot_data:
            yield "Run `pytest --snapshot-update` to create it."
            return
        try:
            stored = _parse(self.text_of(snapshot_data))
            actual = _parse(self.text_of(serialized_data))
        except SnapshotFormatError as exc:
            yield str(exc)
            return
        shown = (
            display_path(snapshot_data.location, Path.cwd()) if isinstance(snapshot_data, StoredText) else "snapshot"
        )
        mismatches = compare_dynamics(stored, actual, self.tolerance_for(serialized_data))
        yield from _mismatch_lines(Path(shown).stem, actual.model, shown, mismatches)
        yield "If the change is intended, accept it with `pytest --snapshot-update` (or loosen rtol/atol)."


def _parse(text: str) -> TrainingDynamics:
    source = text.location if isinstance(text, StoredText) else "snapshot"
    if isinstance(text, StoredText) and text.problem:
        raise SnapshotFormatError(f"{source}: {text.problem}")
    return parse_dynamics(text, source=source)


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
        snapshot.use_extension(TrainingDynamicsExtension), label, TolerantDynamics(actual, tolerance)
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
        if outcome.stored.problem:
            raise SnapshotFormatError(f"{shown}: {outcome.stored.problem}")
        stored = parse_dynamics(outcome.stored, source=shown)
    except SnapshotFormatError as exc:
        raise SnapshotFormatError(f"{exc}\nTo rewrite it from the run: {command}") from None
    raise AssertionError(
        "\n".join(_mismatch_lines(label, actual.model, shown, compare_dynamics(stored, actual, tolerance)))
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


def _mismatch_lines(label: str, model: str, shown: str, mismatches: list[str]) -> list[str]:
    lines = [f"training of {model} ({label!r}) differs from the snapshot {shown}:"]
    lines += [f"  {m}" for m in mismatches[:_SHOWN]]
    if len(mismatches) > _SHOWN:
        lines.append(f"  ... and {len(mismatches) - _SHOWN} more")
    return lines
