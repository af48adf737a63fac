"""Training dynamics: the curves of a ``short_train`` run as a record, its text, and how two compare.

The record holds what a reviewer reads in a snapshot: the model, the seed, the steps, and one
curve per metric (``loss``, ``grad_norm``, ``lr`` at every step, ``eval/<name>`` at the steps
eval ran). Its text is versioned and plain::

    # pytest-modelviz training dynamics v1
    model: Net
    seed: 0
    steps: 30

    curve "loss"
      0 0.693147
      1 0.688211

Values carry ``SIGNIFICANT_DIGITS`` significant digits, written by Python's own float
formatting, and ``-0`` is written ``0``, so the bytes depend on the values alone (never on the
process, hash seed or platform). No path, id, device or version is stored. Standard library only.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError
from pytest_modelviz.snapshot.files import TRAINING_HEADER

if TYPE_CHECKING:
    from pytest_modelviz.params.stats import Tolerance
    from pytest_modelviz.train.result import TrainResult

SIGNIFICANT_DIGITS = 6
STEP_CURVES = ("loss", "grad_norm", "lr")  # recorded at every step
_SHOWN_PER_CURVE = 5  # steps listed per curve in a diff before "... and N more"


@dataclass(frozen=True)
class Curve:
    name: str  # "loss", "grad_norm", "lr" or "eval/<metric>"
    points: tuple[tuple[int, float], ...]  # (step, value), steps increasing


@dataclass(frozen=True)
class TrainingDynamics:
    model: str
    seed: int
    steps: int
    curves: tuple[Curve, ...]

    def curve(self, name: str) -> Curve | None:
        return next((c for c in self.curves if c.name == name), None)

    def to_text(self) -> str:
        lines = [TRAINING_HEADER, f"model: {json.dumps(self.model, ensure_ascii=False)}",
                 f"seed: {self.seed}", f"steps: {self.steps}"]
        for c in self.curves:
            lines += ["", f"curve {json.dumps(c.name, ensure_ascii=False)}"]
            lines += [f"  {step} {fmt(value)}" for step, value in c.points]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str = "snapshot") -> TrainingDynamics:
        return parse_dynamics(text, source)


def available_metrics(result: TrainResult) -> tuple[str, ...]:
    return STEP_CURVES + tuple(f"eval/{m}" for m in sorted(result.eval))


def dynamics_of(result: TrainResult, metrics: Sequence[str] | None = None) -> TrainingDynamics:
    """The curves of ``result`` named by ``metrics`` (default: every one it has), in that order."""
    available = available_metrics(result)
    chosen = available if metrics is None else tuple(metrics)
    if isinstance(metrics, str) or not chosen or len(set(chosen)) != len(chosen):
        raise ModelvizUsageError(
            f"metrics must be a non-empty list of distinct metric names, got {metrics!r}; "
            f"this run has {', '.join(available)}"
        )
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise ModelvizUsageError(
            f"{result.name}: no metric {unknown[0]!r} in this run; it has {', '.join(available)} "
            "(eval metrics come from eval_fn, as eval/<name>)"
        )
    per_step = {"loss": result.losses, "grad_norm": result.grad_norms, "lr": result.lrs}
    curves = []
    for name in chosen:
        if name in per_step:
            points = tuple((i, _clean(v)) for i, v in enumerate(per_step[name]))
        else:
            points = tuple((int(s), _clean(v)) for s, v in result.eval[name[len("eval/"):]])
        curves.append(Curve(name, points))
    return TrainingDynamics(model=result.name, seed=result.seed, steps=result.steps_run, curves=tuple(curves))


def fmt(value: float) -> str:
    return f"{_clean(value):.{SIGNIFICANT_DIGITS}g}"


def _clean(value: float) -> float:
    """Rounded to the stored digits; ``+ 0.0`` folds ``-0.0`` (the sign of zero differs by device)."""
    value = float(value)
    if not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") + 0.0


# ---------------------------------------------------------------- reading


def parse_dynamics(text: str, source: str = "snapshot") -> TrainingDynamics:
    """The record back from its text; ``SnapshotFormatError`` naming ``source``, the line and the fix."""
    lines = text.split("\n")

    def bad(lineno: int, why: str) -> SnapshotFormatError:
        shown = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        return SnapshotFormatError(
            f"{source}, line {lineno} ({shown!r}): {why}. Fix the line, or delete the file and run "
            "`pytest --snapshot-update` to write it from the run"
        )

    if not lines or lines[0] != TRAINING_HEADER:
        raise bad(1, f"expected the header {TRAINING_HEADER!r}")
    header: dict[str, str] = {}
    for lineno, key in enumerate(("model", "seed", "steps"), start=2):
        line = lines[lineno - 1] if lineno <= len(lines) else ""
        if not line.startswith(f"{key}: "):
            raise bad(lineno, f"expected '{key}: ...'")
        header[key] = line[len(key) + 2:]
    model = _json_string(header["model"], functools.partial(bad, 2))
    seed = _int(header["seed"], functools.partial(bad, 3))
    steps = _int(header["steps"], functools.partial(bad, 4))
    curves: list[Curve] = []
    name: str | None = None
    points: list[tuple[int, float]] = []
    for lineno, line in enumerate(lines[4:], start=5):
        if not line:
            continue
        if line.startswith("curve "):
            if name is not None:
                curves.append(Curve(name, tuple(points)))
            name, points = _json_string(line[len("curve "):], functools.partial(bad, lineno)), []
            if any(c.name == name for c in curves):
                raise bad(lineno, f"curve {name!r} appears twice")
            continue
        if name is None or not line.startswith("  "):
            raise bad(lineno, "expected 'curve \"<name>\"' or an indented '<step> <value>' line")
        parts = line.split()
        if len(parts) != 2:
            raise bad(lineno, "expected '<step> <value>'")
        step = _int(parts[0], functools.partial(bad, lineno))
        try:
            value = float(parts[1])
        except ValueError:
            raise bad(lineno, f"{parts[1]!r} is not a number") from None
        if points and step <= points[-1][0]:
            raise bad(lineno, f"step {step} does not follow step {points[-1][0]}")
        points.append((step, value))
    if name is not None:
        curves.append(Curve(name, tuple(points)))
    return TrainingDynamics(model=model, seed=seed, steps=steps, curves=tuple(curves))


def _json_string(raw: str, bad: Callable[[str], SnapshotFormatError]) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        raise bad("expected a quoted name") from None
    if not isinstance(value, str):
        raise bad("expected a quoted name")
    return value


def _int(raw: str, bad: Callable[[str], SnapshotFormatError]) -> int:
    try:
        return int(raw)
    except ValueError:
        raise bad(f"{raw!r} is not an integer") from None


# ---------------------------------------------------------------- comparing


def compare_dynamics(stored: TrainingDynamics, actual: TrainingDynamics, tolerance: Tolerance) -> list[str]:
    """One line per difference beyond tolerance (a few per curve, then a count); empty when they agree."""
    out: list[str] = []
    for key, old, new in (("model", stored.model, actual.model), ("seed", stored.seed, actual.seed)):
        if old != new:
            out.append(f"{key}: {old!r} -> {new!r}")
    if stored.steps != actual.steps:
        out.append(f"steps: {stored.steps} -> {actual.steps} (the curves are compared at the steps both have)")
    for curve in stored.curves:
        new_curve = actual.curve(curve.name)
        if new_curve is None:
            out.append(f"{curve.name}: in the snapshot, not in this run")
            continue
        rtol, atol = tolerance.for_tensor(curve.name)
        out.extend(_curve_lines(curve, new_curve, rtol, atol, stored.steps != actual.steps))
    out.extend(f"{c.name}: in this run, not in the snapshot" for c in actual.curves if stored.curve(c.name) is None)
    return out


def _curve_lines(old: Curve, new: Curve, rtol: float, atol: float, steps_changed: bool) -> Iterator[str]:
    before, after = dict(old.points), dict(new.points)
    if not steps_changed and list(before) != list(after):
        yield f"{old.name}: recorded at steps {_steps(before)} -> {_steps(after)}"
    outside = [(s, before[s], after[s]) for s in before if s in after and not _close(before[s], after[s], rtol, atol)]
    band = _band(rtol, atol)
    for step, a, b in outside[:_SHOWN_PER_CURVE]:
        yield f"{old.name} at step {step}: {fmt(a)} -> {fmt(b)}, outside {band}"
    if len(outside) > _SHOWN_PER_CURVE:
        yield f"{old.name}: ... and {len(outside) - _SHOWN_PER_CURVE} more steps outside {band}"


def _close(stored: float, actual: float, rtol: float, atol: float) -> bool:
    if math.isnan(stored) or math.isnan(actual):
        return math.isnan(stored) and math.isnan(actual)
    if math.isinf(stored) or math.isinf(actual):
        return stored == actual
    return abs(actual - stored) <= atol + rtol * abs(stored)


def _band(rtol: float, atol: float) -> str:
    """``10%``, ``1% + 1e-06``: the tolerance as a reader says it."""
    parts = [f"{rtol * 100:g}%"] if rtol else []
    if atol or not parts:
        parts.append(f"{atol:g}")
    return " + ".join(parts)


def _steps(points: Iterable[int]) -> str:
    steps = list(points)
    shown = ", ".join(map(str, steps[:8]))
    return f"[{shown}{', ...' if len(steps) > 8 else ''}] ({len(steps)})"
