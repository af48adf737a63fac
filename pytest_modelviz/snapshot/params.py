"""Parameter-statistics snapshots: ``graph_snapshot.parameters(model)`` stored through syrupy.

syrupy owns where the file lives, ``--snapshot-update``, and unused-snapshot bookkeeping; the
comparison is ours because it is tolerant. When the numbers agree within tolerance we hand syrupy
the stored text itself, so it counts the snapshot as matched and never rewrites it (no churn from
last-digit noise). When they differ we hand it the new text: syrupy writes it under
``--snapshot-update`` and records a failure otherwise, and we raise a message listing every
statistic out of tolerance.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from syrupy.exceptions import SnapshotDoesNotExist
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError
from pytest_modelviz.graph.stats import ParamStats, Tolerance, ToleranceSpec, compare_stats, compute_stats

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion
    from syrupy.location import PyTestLocation
    from syrupy.types import SnapshotIndex

    from pytest_modelviz.artifacts import ArtifactDir
    from pytest_modelviz.session import ModelvizSession

NAME_SUFFIX = ".params"
PLOT_LIMIT = 48  # small multiples drawn; a 7B model has hundreds of tensors and nobody reads them all
_LABELS_KEY = pytest.StashKey[dict[str, int]]()


class ParamStatsExtension(SingleFileSnapshotExtension):
    """One text file per snapshot: ``__snapshots__/<test module>/<test>[<name>].params.txt``.

    The ``.params`` part belongs to the snapshot *name*, not the file extension: any ``.txt``
    single-file extension sharing the folder then reads our files under the very names we assert
    them with, so neither reports the other's files as unused (and deletes them on update).
    """

    file_extension = "txt"
    _write_mode = WriteMode.TEXT

    @classmethod
    def get_snapshot_name(cls, *, test_location: PyTestLocation, index: SnapshotIndex = 0) -> str:
        base = super().get_snapshot_name(test_location=test_location, index=index)
        return base[: cls._max_stem_length() - len(NAME_SUFFIX)] + NAME_SUFFIX

    def is_snapshot_location(self, *, location: str) -> bool:
        return location.endswith(f"{NAME_SUFFIX}.{self.file_extension}")


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
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ModelvizUsageError(f"parameter snapshot name must be a non-empty string, got {name!r}")
    tolerance = Tolerance.resolve(rtol, atol, session.settings.param_rtol, session.settings.param_atol)
    actual = compute_stats(model, bins=bins, buffers=buffers)
    item = snapshot.test_location.item
    label = _unique_label(item, name.strip() if name else type(model).__name__)
    assertion = snapshot.use_extension(ParamStatsExtension)
    location = assertion.extension.get_location(test_location=assertion.test_location, index=label)
    shown = _display_path(location, item.config.rootpath)

    stored_text: str | None = None
    stored: ParamStats | None = None
    format_error: SnapshotFormatError | None = None
    try:
        stored_text = _recall(assertion, label, shown)
        if stored_text is not None:
            stored = ParamStats.from_text(stored_text, source=shown)
    except SnapshotFormatError as exc:
        format_error = exc
    missing = stored_text is None and format_error is None
    mismatches = compare_stats(stored, actual, tolerance) if stored is not None else []

    agrees = stored is not None and not mismatches
    # syrupy asserts exact text: give it the stored text when we judged the values equal.
    passed = assertion(name=label) == (stored_text if agrees else actual.to_text())
    if agrees:
        status = "matched"
    elif passed:
        status = "created" if missing else "updated"
    else:
        status = "changed"
        if missing:
            mismatches = [f"no stored snapshot at {shown}"]
    if format_error is not None:
        mismatches = [str(format_error)]

    if artifacts.persist:
        _write_artifacts(artifacts, label, actual, stored, tolerance, status, mismatches)
    if passed:
        return actual
    command = f"pytest --snapshot-update {shlex.quote(item.nodeid)}"
    if format_error is not None:
        raise SnapshotFormatError(f"{format_error}\nTo rewrite it from the model: {command}")
    if missing:
        raise AssertionError(
            f"parameter-statistics snapshot {label!r} of {actual.model} does not exist ({shown}).\n"
            f"Create it with: {command}"
        )
    raise AssertionError(_mismatch_message(label, actual.model, shown, mismatches, command))


def _unique_label(item: pytest.Item, base: str) -> str:
    """``base``, then ``base-2``, ``base-3``... when one test snapshots several models alike."""
    used = item.stash.setdefault(_LABELS_KEY, {})
    used[base] = used.get(base, 0) + 1
    return base if used[base] == 1 else f"{base}-{used[base]}"


def _recall(assertion: SnapshotAssertion, label: str, shown: str) -> str | None:
    """The stored text, or a write queued earlier in this session; None when there is none."""
    try:
        data = assertion.session.recall_snapshot(assertion.extension, assertion.test_location, label)
    except SnapshotDoesNotExist:
        return None
    except UnicodeDecodeError as exc:
        raise SnapshotFormatError(
            f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}); the file is corrupt, "
            "regenerate it with `pytest --snapshot-update`"
        ) from None
    return None if data is None else str(data)


def _display_path(location: str, root: Path) -> str:
    try:
        return Path(os.path.relpath(location, root)).as_posix()
    except ValueError:  # another drive on Windows
        return location


def _mismatch_message(label: str, model: str, shown: str, mismatches: list[str], command: str) -> str:
    limit = 60
    lines = [f"parameter statistics of {model} ({label!r}) differ from the snapshot {shown}:"]
    lines += [f"  {m}" for m in mismatches[:limit]]
    if len(mismatches) > limit:
        lines.append(f"  ... and {len(mismatches) - limit} more")
    lines.append(
        "If the change is intended, accept it with: "
        f"{command} (or loosen rtol/atol, or the ini keys modelviz_param_rtol/modelviz_param_atol)"
    )
    return "\n".join(lines)


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
    stats_path.write_text(json.dumps(_json_safe(data), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    plot = _plot_histograms(actual, stored, folder / "histograms.svg")
    artifacts.record(
        "params",
        name=label,
        model=actual.model,
        snapshot=status,
        mismatches=mismatches,
        plot=None if plot is None else artifacts.relative(plot),
        stats=artifacts.relative(stats_path),
    )


def _json_safe(value: Any) -> Any:
    """NaN and infinities as strings: the report reads this with JSON.parse, which rejects them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _plot_histograms(actual: ParamStats, stored: ParamStats | None, path: Path) -> Path | None:
    """Small multiples of each tensor's histogram, the stored one outlined; a reproducible SVG."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        import warnings

        warnings.warn(
            "pytest-modelviz: matplotlib is not installed, so parameter histograms are not drawn "
            "(pip install 'pytest-modelviz[render]')",
            stacklevel=2,
        )
        return None
    tensors = actual.tensors[:PLOT_LIMIT]
    cols = min(4, len(tensors))
    rows = math.ceil(len(tensors) / cols)
    comparable = stored is not None and stored.bins == actual.bins
    with matplotlib.rc_context({"svg.hashsalt": "pytest-modelviz", "font.size": 7}):
        fig = Figure(figsize=(3 * cols, 2.1 * rows + 0.4), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, t in zip(axes.flat, tensors):
            _draw_one(ax, t, stored.get(t.name) if comparable and stored is not None else None)
        for ax in list(axes.flat)[len(tensors):]:
            ax.set_axis_off()
        title = f"{actual.model}: parameter histograms over [min, max]"
        if comparable:
            title += "; bars: actual, outline: stored"
        if len(actual.tensors) > PLOT_LIMIT:
            title += f" (first {PLOT_LIMIT} of {len(actual.tensors)} tensors)"
        fig.suptitle(title)
        fig.savefig(path, format="svg", metadata={"Date": None})
    return path


def _draw_one(ax: Any, t: Any, stored: Any) -> None:
    bins = len(t.hist)
    centers = [i + 0.5 for i in range(bins)]
    ax.bar(centers, t.hist, width=1.0, color="#4c72b0", label="actual")
    if stored is not None and len(stored.hist) == bins:
        ax.step(range(bins + 1), [*stored.hist, stored.hist[-1]], where="post", color="#dd8452",
                linewidth=1.0, label="stored")  # fmt: skip
    name = t.name if len(t.name) <= 40 else "..." + t.name[-37:]
    ax.set_title(f"{name} [{', '.join(str(d) for d in t.shape)}]", fontsize=7)
    ax.set_xlim(0, bins)
    ax.set_xticks([0, bins], [f"{t.min:.3g}", f"{t.max:.3g}"])
    ax.tick_params(labelsize=6)
    ax.text(0.98, 0.95, f"mean {t.mean:.3g}\nstd {t.std:.3g}", transform=ax.transAxes,
            ha="right", va="top", fontsize=6)  # fmt: skip
