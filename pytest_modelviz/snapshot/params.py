"""Parameter-statistics snapshots: ``graph_snapshot.parameters(model)`` stored through syrupy.

``ParamStatsExtension`` is a syrupy extension whose ``matches`` is tolerant: statistics within
tolerance of the stored ones match, so syrupy neither fails nor rewrites the file (no churn from
last-digit noise, even under ``--snapshot-update``); beyond it syrupy fails the assertion, or
writes the new text under ``--snapshot-update``. ``diff_lines`` lists every statistic out of
tolerance. Used directly::

    assert compute_stats(model) == snapshot(extension_class=ParamStatsExtension)

with the tolerance of the class (subclass it to change ``rtol``/``atol``), or through
``assert_param_snapshot``, which takes per-call tolerances and the ini defaults.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pytest_modelviz.errors import SnapshotFormatError
from pytest_modelviz.params.stats import ParamStats, Tolerance, ToleranceSpec, compare_stats, compute_stats
from pytest_modelviz.records import ParamsRecord
from pytest_modelviz.render.outcome import RenderOutcome
from pytest_modelviz.snapshot.extension import check_snapshot, display_path
from pytest_modelviz.snapshot.files import PARAMS_EXTENSION
from pytest_modelviz.snapshot.labels import snapshot_label
from pytest_modelviz.snapshot.tolerant import Tolerant, TolerantExtension, mismatch_lines, read_text

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion

    from pytest_modelviz.artifacts import ArtifactDir
    from pytest_modelviz.session import ModelvizSession

PLOT_LIMIT = 48  # small multiples drawn; a 7B model has hundreds of tensors and nobody reads them all


class ParamStatsExtension(TolerantExtension[ParamStats]):
    """One text file per snapshot: ``__snapshots__/<test module>/<test>[<name>].params``.

    Compares within ``rtol``/``atol`` (numbers, or dicts of glob pattern -> number, as for
    ``graph_snapshot.parameters``); subclass to change them.
    """

    file_extension = PARAMS_EXTENSION
    rtol: ClassVar[ToleranceSpec] = 1e-4
    atol: ClassVar[ToleranceSpec] = 1e-6
    defaults = (1e-4, 1e-6)
    value_type = ParamStats
    what = ("parameter statistics of", "differ")
    hint = "compare `pytest_modelviz.snapshot.compute_stats(model)` with the snapshot"

    def compare(self, stored: ParamStats, actual: ParamStats, tolerance: Tolerance) -> list[str]:
        return compare_stats(stored, actual, tolerance)


def assert_param_snapshot(
    snapshot: SnapshotAssertion,
    artifacts: ArtifactDir,
    session: ModelvizSession,
    model: Any,
    *,
    name: str | None = None,
    rtol: ToleranceSpec = None,
    atol: ToleranceSpec = None,
    bins: int = 16,
    buffers: bool = False,
) -> ParamStats:
    """Compute the statistics of ``model``'s parameters and assert them against the stored snapshot.

    ``rtol``/``atol`` default to the ini keys ``modelviz_param_rtol``/``modelviz_param_atol``; a
    dict like ``{"fc.*": 1e-2}`` overrides them for the tensors its glob patterns match.
    """
    __tracebackhide__ = True  # the failure is the message, not this function's locals
    tolerance = Tolerance.resolve(rtol, atol, session.settings.param_rtol, session.settings.param_atol)
    actual = compute_stats(model, bins=bins, buffers=buffers)
    item = snapshot.test_location.item
    label = snapshot_label(item, snapshot, "parameter snapshot", name, actual.model)
    result = check_snapshot(snapshot.use_extension(ParamStatsExtension), label, Tolerant(actual, tolerance))
    shown = display_path(result.location, item.config.rootpath)

    stored: ParamStats | None = None
    mismatches: list[str] = []
    format_error: SnapshotFormatError | None = None
    if result.stored is not None:
        try:
            stored = read_text(result.stored, shown, ParamStats)
        except SnapshotFormatError as exc:
            stored, format_error = None, exc
            mismatches = [str(exc)]
        else:
            mismatches = compare_stats(stored, actual, tolerance)
    elif result.status == "changed":
        mismatches = [f"no stored snapshot at {shown}"]

    if artifacts.persist:
        _write_artifacts(artifacts, label, actual, stored, tolerance, result.status, mismatches)
    if result.status != "changed":
        return actual
    command = f"pytest --snapshot-update {shlex.quote(item.nodeid)}"
    if format_error is not None:
        raise SnapshotFormatError(f"{format_error}\nTo rewrite it from the model: {command}")
    if result.stored is None:
        raise AssertionError(
            f"parameter-statistics snapshot {label!r} of {actual.model} does not exist ({shown}).\n"
            f"Create it with: {command}"
        )
    raise AssertionError(
        "\n".join(mismatch_lines(f"parameter statistics of {actual.model}", "differ", label, shown, mismatches))
        + "\nIf the change is intended, accept it with: "
        f"{command} (or loosen rtol/atol, or the ini keys modelviz_param_rtol/modelviz_param_atol)"
    )


# ---------------------------------------------------------------- artifacts (--modelviz)


def _write_artifacts(
    artifacts: ArtifactDir,
    label: str,
    actual: ParamStats,
    stored: ParamStats | None,
    tolerance: Tolerance,
    status: str,
    mismatches: list[str],
) -> None:
    folder = artifacts.unique_dir(f"params-{label}")
    stats_path = folder / "stats.json"
    data = {
        "name": label,
        "snapshot": status,
        "tolerance": {
            "rtol": tolerance.rtol,
            "atol": tolerance.atol,
            "rtol_overrides": [list(p) for p in tolerance.rtol_overrides],
            "atol_overrides": [list(p) for p in tolerance.atol_overrides],
        },
        "mismatches": mismatches,
        "actual": actual.to_dict(),
        "stored": None if stored is None else stored.to_dict(),
    }
    written = artifacts.write(stats_path, json.dumps(_json_safe(data), indent=1, sort_keys=True) + "\n")
    pictures = RenderOutcome()
    plot = None
    if written is not None:
        plot = pictures.attempt("parameter histograms", lambda: _queue_histograms(
            artifacts, stats_path, folder / "histograms.svg", f"parameter histograms {label!r}"))
    artifacts.record(ParamsRecord(
        name=label,
        model=actual.model,
        snapshot=status,
        mismatches=tuple(mismatches),
        plot=None if plot is None else artifacts.relative(plot),
        stats=artifacts.relative(stats_path),
    ))
    pictures.warn(f"{label!r} ({actual.model})")  # after recording: -W error must not lose the record


def _json_safe(value: Any) -> Any:
    """NaN and infinities as strings: the report reads this with JSON.parse, which rejects them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _queue_histograms(artifacts: ArtifactDir, stats_path: Path, path: Path, subject: str) -> Path | None:
    """Queue the histogram picture, drawn from the statistics JSON when the run ends, with the
    other pictures; None when the queue could not be written."""
    from pytest_modelviz.render.pending import Picture, queue

    picture = Picture("histograms", subject, artifacts.relative(stats_path), artifacts.relative(path))
    return path if queue(artifacts, [picture]) else None


def plot_histograms_file(stats_path: Path, path: Path) -> Path:
    """The histogram picture of a ``stats.json`` written by ``_write_artifacts``."""
    data = json.loads(stats_path.read_text(encoding="utf-8"))
    stored = data.get("stored")
    return _plot_histograms(ParamStats.from_dict(data["actual"]),
                            None if stored is None else ParamStats.from_dict(stored), path)


def _plot_histograms(actual: ParamStats, stored: ParamStats | None, path: Path) -> Path:
    """Small multiples of each tensor's histogram, the stored one outlined; a reproducible SVG."""
    from pytest_modelviz.artifacts import write_atomic
    from pytest_modelviz.report.charts import Histogram, histogram_document

    comparable = stored is not None and stored.bins == actual.bins
    panels = []
    for t in actual.tensors[:PLOT_LIMIT]:
        old = stored.get(t.name) if comparable and stored is not None else None
        name = t.name if len(t.name) <= 30 else "..." + t.name[-27:]
        panels.append(Histogram(
            title=f"{name} [{', '.join(str(d) for d in t.shape)}]", counts=tuple(t.hist), lo=t.min, hi=t.max,
            notes=(f"mean {t.mean:.3g}", f"std {t.std:.3g}"),
            outline=None if old is None else tuple(old.hist),  # drawn only when its bins match
        ))
    title = f"{actual.model}: parameter histograms over [min, max]"
    if comparable:
        title += "; bars: actual, outline: stored"
    if len(actual.tensors) > PLOT_LIMIT:
        title += f" (first {PLOT_LIMIT} of {len(actual.tensors)} tensors)"
    write_atomic(path, histogram_document(panels, title=title))
    return path
