"""Read a run folder into the report's view model.

The records are read by ``records`` (one reader, tolerant of anything a real run or a hostile
hand leaves behind); this module adds what the page needs from the folder: which files exist,
links relative to the run folder, and each check attached to its training run. Record paths that
point outside the test's folder are not linked, so a hostile record cannot make the report link to
arbitrary files.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from pytest_modelviz.artifacts import TENSORBOARD_DIR, TestFolder, walk_run
from pytest_modelviz.records import (
    OUTCOMES_FILE,
    PICTURES_FILE,
    AnyRecord,
    ArchitectureRecord,
    CheckRecord,
    GraphRenderRecord,
    ParamsRecord,
    RunOutcomes,
    TestOutcome,
    TrainRecord,
    UnknownRecord,
    UnreadableRecord,
    VisdomRecord,
    read_outcomes,
)
from pytest_modelviz.render.pending import read_pictures
from pytest_modelviz.report.model import (
    Architecture,
    Artifact,
    GraphRender,
    ParamsSnapshot,
    RunView,
    TestView,
    TrainRun,
    VisdomEnv,
)

MAX_INLINE_TEXT = 200_000
_FIRST_OUTPUTS = "the layer table shows first outputs only"
_NOT_DRAWN = "the run ended before its pictures were drawn"
_SAFE_DIRNAME = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_REASONS = 3


def load_run(
    run_dir: Path, *, outcomes: RunOutcomes | None = None, folders: tuple[TestFolder, ...] | None = None
) -> RunView:
    """The view model of ``run_dir``; never raises on bad content, it reports it in ``problems``.

    ``outcomes`` and ``folders`` are what the session already has at its end (so the folder is
    walked once); without them they are read from the folder.
    """
    problems: list[str] = []
    if outcomes is None:
        outcomes = read_outcomes(run_dir / OUTCOMES_FILE)
        if outcomes is None:
            problems.append(f"{OUTCOMES_FILE} is missing: the session did not finish; showing test folders only")
            outcomes = RunOutcomes()
    problems += [f"{OUTCOMES_FILE}: {p}" for p in outcomes.problems]
    if folders is None:
        try:
            folders = walk_run(run_dir)
        except OSError as exc:
            problems.append(f"the run folder could not be read ({exc.strerror or exc})")
            folders = ()
    by_name = {f.name: f for f in folders}
    tests: list[TestView] = []
    seen: set[str] = set()
    for entry in outcomes.tests:
        dirname = entry.dirname if _SAFE_DIRNAME.match(entry.dirname) and entry.dirname not in (".", "..") else ""
        seen.add(dirname)
        tests.append(load_test(run_dir, replace(entry, dirname=dirname), by_name.get(dirname) if dirname else None))
    # Test folders with records but no outcome: the session ended before the test reported.
    for folder in folders:
        if folder.has_records and folder.name not in seen:
            entry = TestOutcome(folder.name, "unknown", 0.0, folder.name, "no outcome was recorded for this test")
            tests.append(load_test(run_dir, entry, folder))
    return RunView(
        name=run_dir.resolve().name,
        started=outcomes.started,
        finished=outcomes.finished,
        tests=tuple(tests),
        extras=outcomes.extras,
        problems=tuple(problems),
        interrupted=outcomes.interrupted,
        not_run=outcomes.not_run,
        notes=outcomes.notes,
        not_written=outcomes.not_written,
    )


def load_test(run_dir: Path, entry: TestOutcome, folder: TestFolder | None) -> TestView:
    if folder is None:
        return TestView(entry.nodeid, entry.outcome, entry.duration, entry.dirname, entry.message, job=entry.job)
    link = _Linker(run_dir, folder.name)
    architectures: list[Architecture] = []
    params: list[ParamsSnapshot] = []
    renders: list[GraphRender] = []
    trains: list[TrainRun] = []
    visdom: list[VisdomEnv] = []
    loose_checks: list[CheckRecord] = []
    others: list[str] = []
    unreadable: list[UnreadableRecord] = []
    problems: list[str] = []
    for record in folder.records:
        problems += _record_problems(record)
        if isinstance(record, CheckRecord):
            _attach_check(trains, loose_checks, record)
        elif isinstance(record, ArchitectureRecord):
            text = link("architecture text", record.text)
            architectures.append(Architecture(record, text, _layer_outputs(link, text, problems)))
        elif isinstance(record, ParamsRecord):
            params.append(ParamsSnapshot(record, link("parameter histograms", record.plot),
                                         link("statistics JSON", record.stats)))
        elif isinstance(record, GraphRenderRecord):
            renders.append(_graph_render(record, link, problems))
        elif isinstance(record, TrainRecord):
            trains.append(TrainRun(record, link("training curves", record.curves)))
        elif isinstance(record, VisdomRecord):
            visdom.append(VisdomEnv(record, link("env JSON", record.json), link("event log", record.log)))
        elif isinstance(record, UnknownRecord):
            others.append(record.raw)
        else:
            unreadable.append(record)
    problems += _picture_problems(run_dir / folder.name)
    if unreadable:
        reasons = sorted({r.reason for r in unreadable})
        shown = "; ".join(reasons[:_MAX_REASONS]) + ("; ..." if len(reasons) > _MAX_REASONS else "")
        problems.insert(0, f"{len(unreadable)} record line(s) could not be read ({shown})")
    tb = run_dir / folder.name / TENSORBOARD_DIR
    base = run_dir / folder.name
    return TestView(
        nodeid=entry.nodeid,
        outcome=entry.outcome,
        duration=entry.duration,
        dirname=folder.name,
        message=entry.message,
        architectures=tuple(architectures),
        params=tuple(params),
        renders=tuple(renders),
        trains=tuple(trains),
        checks=tuple(loose_checks),
        visdom=tuple(visdom),
        others=tuple(others),
        tensorboard=f"{folder.name}/{TENSORBOARD_DIR}" if tb.is_dir() else None,
        files=tuple(Artifact(p.relative_to(base).as_posix(), p.relative_to(run_dir).as_posix())
                    for p in folder.files),
        problems=tuple(problems),
        job=entry.job,
    )


def _layer_outputs(link: _Linker, text: Artifact | None,
                   problems: list[str]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Each layer's output shapes, from the architecture text (the one full record of the capture)."""
    from pytest_modelviz.errors import SnapshotFormatError
    from pytest_modelviz.graph.text import from_text

    if text is None or text.href is None:
        return {}
    try:
        graph = from_text(link.read_text(text, limit=None))
    except OSError as exc:
        problems.append(f"{text.href} could not be read ({exc.strerror or exc}): {_FIRST_OUTPUTS}")
        return {}
    except SnapshotFormatError as exc:
        problems.append(f"{text.href} could not be parsed ({exc}): {_FIRST_OUTPUTS}")
        return {}
    return {n.name: tuple(o.shape for o in n.outputs) for n in graph.nodes}


def _picture_problems(test_dir: Path) -> list[str]:
    """Pictures queued for the end of the run that are not there, and why."""
    try:
        pictures = read_pictures(test_dir)
    except OSError as exc:
        return [f"{PICTURES_FILE} could not be read ({exc.strerror or exc}): pictures may be missing"]
    out = []
    for p in pictures:
        if p.state == "failed":
            out.append(f"picture {p.output} ({p.subject}) could not be drawn: {p.message}")
        elif p.state == "pending":
            out.append(f"picture {p.output} ({p.subject}) was not drawn: {_NOT_DRAWN}")
    return out


def _record_problems(record: AnyRecord) -> list[str]:
    if not record.problems or isinstance(record, (UnknownRecord, UnreadableRecord)):
        return []
    label = getattr(record, "name", "") or getattr(record, "env", "")
    what = f"{getattr(record, 'KIND', 'record')} record" + (f" {label!r}" if label else "")
    return [f"{what}: unreadable, shown without it: {'; '.join(record.problems)}"]


def _attach_check(trains: list[TrainRun], loose: list[CheckRecord], check: CheckRecord) -> None:
    """A check belongs to the training run it names; a check that names none (older records)
    belongs to the latest run; a check whose run is not there is shown on its own."""
    named = [i for i, run in enumerate(trains) if run.record.name == check.train]
    at = named[-1] if named else (len(trains) - 1 if trains and check.train is None else None)
    if at is None:
        loose.append(check)
    else:
        run = trains[at]
        trains[at] = TrainRun(run.record, run.curves, (*run.checks, check))


def _graph_render(record: GraphRenderRecord, link: _Linker, problems: list[str]) -> GraphRender:
    linked = {k: link(k, v) for k, v in sorted(record.files.items())}
    kept = {k: v for k, v in linked.items() if v is not None}
    texts = {}
    for key, artifact in kept.items():
        if key.endswith("dot") and artifact.href:
            try:
                texts[key] = link.read_text(artifact)
            except OSError as exc:
                problems.append(f"{artifact.href} could not be read ({exc.strerror or exc})")
    return GraphRender(record, kept, texts)


class _Linker:
    """Turns a record's test-relative path into a run-relative one, or ``None`` if unsafe/missing."""

    def __init__(self, run_dir: Path, dirname: str) -> None:
        self.run_dir = run_dir
        self.test_dir = (run_dir / dirname).resolve()
        self.dirname = dirname

    def __call__(self, label: str, rel: str | None) -> Artifact | None:
        if not rel:
            return None
        candidate = Path(rel)
        if candidate.is_absolute() or ".." in candidate.parts:
            return Artifact(label, None)
        try:
            target = (self.test_dir / candidate).resolve()
            exists = target.is_relative_to(self.test_dir) and target.is_file()
        except (OSError, ValueError):  # a path the OS refuses (NUL byte, too long)
            exists = False
        if not exists:
            return Artifact(label, None)
        return Artifact(label, f"{self.dirname}/{candidate.as_posix()}")

    def read_text(self, artifact: Artifact, limit: int | None = MAX_INLINE_TEXT) -> str:
        """The file's text, cut after ``limit`` characters (None: whole)."""
        assert artifact.href is not None
        with open(self.run_dir / artifact.href, encoding="utf-8", errors="replace") as fh:
            if limit is None:
                return fh.read()
            text = fh.read(limit + 1)
        return text if len(text) <= limit else text[:limit] + "\n... (cut; see the file)"
