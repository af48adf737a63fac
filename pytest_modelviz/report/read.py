"""Read a run folder into the report's view model.

Everything here tolerates what a real run leaves behind: a test that failed half-way (records
missing), a line cut short by a killed worker, record kinds this version does not know, and
record paths that point outside the test's folder (ignored, so a hostile record cannot make the
report link to arbitrary files).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_modelviz.artifacts import RECORDS_FILE, TENSORBOARD_DIR, iter_files, read_record_lines
from pytest_modelviz.report.model import (
    Architecture,
    Artifact,
    Check,
    GraphRender,
    ParamsSnapshot,
    RunView,
    TestView,
    TrainRun,
    VisdomEnv,
)
from pytest_modelviz.session import OUTCOMES_FILE

MAX_INLINE_TEXT = 200_000
_SAFE_DIRNAME = re.compile(r"^[A-Za-z0-9._-]+$")


def load_run(run_dir: Path) -> RunView:
    """The view model of ``run_dir``; never raises on bad content, it reports it in ``problems``."""
    problems: list[str] = []
    data = _read_outcomes(run_dir, problems)
    tests: list[TestView] = []
    seen: set[str] = set()
    for entry in data.get("tests") or []:
        if not isinstance(entry, dict) or not entry.get("nodeid"):
            problems.append(f"{OUTCOMES_FILE}: ignored a test entry without a node id")
            continue
        dirname = str(entry.get("dirname") or "")
        if not _SAFE_DIRNAME.match(dirname) or dirname in (".", ".."):
            dirname = ""
        seen.add(dirname)
        tests.append(
            load_test(
                run_dir,
                nodeid=str(entry["nodeid"]),
                outcome=str(entry.get("outcome") or "unknown"),
                duration=_float(entry.get("duration")) or 0.0,
                dirname=dirname,
                message=str(entry.get("message") or ""),
            )
        )
    # Test folders with records but no outcome: the session ended before the test reported.
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir() and (p / RECORDS_FILE).is_file()):
        if folder.name not in seen:
            tests.append(load_test(run_dir, nodeid=folder.name, outcome="unknown", duration=0.0,
                                   dirname=folder.name, message="no outcome was recorded for this test"))
    return RunView(
        name=run_dir.resolve().name,
        started=_float(data.get("started")),
        finished=_float(data.get("finished")),
        snapshot_changes=int(_float(data.get("snapshot_changes")) or 0),
        tests=tuple(tests),
        extras=data.get("extras") if isinstance(data.get("extras"), dict) else {},
        problems=tuple(problems),
    )


def _read_outcomes(run_dir: Path, problems: list[str]) -> dict[str, Any]:
    path = run_dir / OUTCOMES_FILE
    if not path.is_file():
        problems.append(f"{OUTCOMES_FILE} is missing: the session did not finish; showing test folders only")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{OUTCOMES_FILE} could not be read ({exc}); showing test folders only")
        return {}
    return data if isinstance(data, dict) else {}


def load_test(run_dir: Path, *, nodeid: str, outcome: str, duration: float, dirname: str, message: str) -> TestView:
    if not dirname:
        return TestView(nodeid, outcome, duration, dirname, message)
    test_dir = run_dir / dirname
    records, bad = read_record_lines(test_dir / RECORDS_FILE)
    problems = [f"{bad} record line(s) could not be read"] if bad else []
    link = _Linker(run_dir, dirname)
    sections: dict[str, list[Any]] = {k: [] for k in ("architecture", "params", "graph_render", "train", "visdom")}
    loose_checks: list[Check] = []
    others: list[dict[str, Any]] = []
    for record in records:
        kind = record.get("kind")
        if kind == "check":
            check = Check(str(record.get("name", "")), bool(record.get("passed")), str(record.get("message", "")))
            runs = sections["train"]
            # A check names its training run; older records do not, and belong to the latest run.
            named = [i for i, run in enumerate(runs) if run.name == record.get("train")]
            at = named[-1] if named else (len(runs) - 1 if runs and "train" not in record else None)
            if at is None:
                loose_checks.append(check)
            else:
                runs[at] = _with_check(runs[at], check)
        elif kind in _BUILDERS:
            sections[kind].append(_BUILDERS[kind](record, link))
        else:
            others.append(record)
    tb = test_dir / TENSORBOARD_DIR
    return TestView(
        nodeid=nodeid,
        outcome=outcome,
        duration=duration,
        dirname=dirname,
        message=message,
        architectures=tuple(sections["architecture"]),
        params=tuple(sections["params"]),
        renders=tuple(sections["graph_render"]),
        trains=tuple(sections["train"]),
        checks=tuple(loose_checks),
        visdom=tuple(sections["visdom"]),
        others=tuple(others),
        tensorboard=f"{dirname}/{TENSORBOARD_DIR}" if tb.is_dir() else None,
        files=tuple(Artifact(p.relative_to(test_dir).as_posix(), p.relative_to(run_dir).as_posix())
                    for p in iter_files(test_dir)),
        problems=tuple(problems),
    )


class _Linker:
    """Turns a record's test-relative path into a run-relative one, or ``None`` if unsafe/missing."""

    def __init__(self, run_dir: Path, dirname: str) -> None:
        self.run_dir = run_dir
        self.test_dir = (run_dir / dirname).resolve()
        self.dirname = dirname

    def __call__(self, label: str, rel: Any) -> Artifact | None:
        if not isinstance(rel, str) or not rel:
            return None
        candidate = Path(rel)
        if candidate.is_absolute() or ".." in candidate.parts:
            return Artifact(label, None)
        target = (self.test_dir / candidate).resolve()
        if not target.is_relative_to(self.test_dir) or not target.is_file():
            return Artifact(label, None)
        return Artifact(label, f"{self.dirname}/{candidate.as_posix()}")

    def read_text(self, artifact: Artifact) -> str:
        assert artifact.href is not None
        text = (self.run_dir / artifact.href).read_text(encoding="utf-8", errors="replace")
        return text if len(text) <= MAX_INLINE_TEXT else text[:MAX_INLINE_TEXT] + "\n... (cut; see the file)"


def _architecture(r: dict[str, Any], link: _Linker) -> Architecture:
    totals = r.get("totals") if isinstance(r.get("totals"), dict) else {}
    rows = tuple(row for row in r.get("rows") or [] if isinstance(row, dict))
    return Architecture(
        name=str(r.get("name", "")),
        model=str(r.get("model", "")),
        training=r.get("training") if isinstance(r.get("training"), bool) else None,
        totals={str(k): int(_float(v) or 0) for k, v in totals.items()},
        rows=rows,
        snapshot=str(r.get("snapshot", "")),
        diff=str(r.get("diff") or ""),
        text=link("architecture text", r.get("text")),
        torch_version=str(r.get("torch_version") or ""),
    )


def _params(r: dict[str, Any], link: _Linker) -> ParamsSnapshot:
    return ParamsSnapshot(
        name=str(r.get("name", "")),
        model=str(r.get("model", "")),
        snapshot=str(r.get("snapshot", "")),
        mismatches=tuple(str(m) for m in r.get("mismatches") or []),
        plot=link("parameter histograms", r.get("plot")),
        stats=link("statistics JSON", r.get("stats")),
    )


def _graph_render(r: dict[str, Any], link: _Linker) -> GraphRender:
    files = r.get("files") if isinstance(r.get("files"), dict) else {}
    linked = {str(k): link(str(k), v) for k, v in sorted(files.items())}
    kept = {k: v for k, v in linked.items() if v is not None}
    return GraphRender(
        name=str(r.get("name", "")),
        files=kept,
        renderer=str(r["renderer"]) if r.get("renderer") else None,
        note=str(r.get("note") or ""),
        tensorboard_graph=bool(r.get("tensorboard_graph")),
        errors=tuple(str(x) for x in r.get("errors") or []) if isinstance(r.get("errors"), list) else (),
        dot_texts={k: link.read_text(v) for k, v in kept.items() if k.endswith("dot") and v.href},
    )


def _train(r: dict[str, Any], link: _Linker) -> TrainRun:
    evals = r.get("eval") if isinstance(r.get("eval"), dict) else {}
    steps = _float(r.get("steps"))
    return TrainRun(
        name=str(r.get("name", "")),
        model=str(r.get("model", "")),
        device=str(r.get("device") or ""),
        torch_version=str(r.get("torch_version") or ""),
        steps=int(steps) if steps is not None and math.isfinite(steps) else None,
        losses=_numbers(r.get("losses")),
        lrs=_numbers(r.get("lrs")),
        grad_norms=_numbers(r.get("grad_norms")),
        eval={str(k): _pairs(v) for k, v in sorted(evals.items())},
        curves=link("training curves", r.get("curves")),
        histograms=link("parameter histograms", r.get("histograms")),
    )


def _visdom(r: dict[str, Any], link: _Linker) -> VisdomEnv:
    return VisdomEnv(
        env=str(r.get("env", "")),
        json=link("env JSON", r.get("json")),
        log=link("event log", r.get("log")),
        replay=str(r.get("replay") or ""),
        windows=int(w) if (w := _float(r.get("windows"))) is not None and math.isfinite(w) else None,
    )


_BUILDERS = {
    "architecture": _architecture,
    "params": _params,
    "graph_render": _graph_render,
    "train": _train,
    "visdom": _visdom,
}


def _with_check(run: TrainRun, check: Check) -> TrainRun:
    return replace(run, checks=(*run.checks, check))


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _numbers(values: Any) -> tuple[float, ...]:
    # NaN and inf are kept: a diverged loss is exactly what the report must show.
    if not isinstance(values, list):
        return ()
    out = []
    for v in values:
        f = _float(v)
        out.append(math.nan if f is None else f)
    return tuple(out)


def _pairs(values: Any) -> tuple[tuple[float, float], ...]:
    out = []
    for pair in values if isinstance(values, list) else []:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            x, y = _float(pair[0]), _float(pair[1])
            if x is not None:
                out.append((x, math.nan if y is None else y))
    return tuple(out)
