"""The records a run leaves behind, and the one reader of them.

Tests append records (one JSON object per line) to ``modelviz.jsonl`` in their folder, and the
session writes ``outcomes.json``; the run report reads both back. This module owns that contract:
one frozen dataclass per record kind with its ``KIND``, a ``version``, ``to_json`` and a tolerant
``from_json``. Reading never raises on content: a file may be half-written (a killed worker), hand
edited, or written by another version. A field that cannot be read becomes its empty value and is
named in the record's ``problems``; a line that is not a record becomes an ``UnreadableRecord``.

Standard library only: imported by the artifact store, the session and the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

RECORDS_FILE = "modelviz.jsonl"
OUTCOMES_FILE = "outcomes.json"
PICTURES_FILE = "pictures.jsonl"  # the pictures a test queued, drawn at the run's end
RECORD_VERSION = 1
CHANGED_STATES = ("changed", "updated")  # snapshot states that mean "differs from the stored one"
OUTCOMES = ("passed", "failed", "skipped", "error", "xfailed", "xpassed", "interrupted")
_MAX_RAW = 2_000  # characters of an unreadable line kept for the report
_Row = TypeVar("_Row")


class _Reader:
    """Reads typed fields out of one JSON object, collecting what could not be read."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def bad(self, key: str, why: str) -> None:
        self.problems.append(f"{key}: {why}")

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        self.bad(key, f"expected text, got {_kind_of(value)}")
        return default

    def optional_text(self, key: str) -> str | None:
        return self.text(key) or None

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.bad(key, f"expected true or false, got {_kind_of(value)}")
        return None

    def count(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        number = as_count(value)
        if number is None:
            self.bad(key, f"expected a whole number, got {_short(value)}")
        return number

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        number = as_number(value)
        if number is None or not math.isfinite(number):
            self.bad(key, f"expected a finite number, got {_short(value)}")
            return None
        return number

    def series(self, key: str) -> tuple[float, ...]:
        """Numbers per step. NaN and infinities are kept: a diverged loss is what a reader looks for."""
        values = self.data.get(key)
        if values is None:
            return ()
        if not isinstance(values, list):
            self.bad(key, f"expected a list of numbers, got {_kind_of(values)}")
            return ()
        out = [as_number(v) for v in values]
        if any(v is None for v in out):
            self.bad(key, f"{sum(v is None for v in out)} value(s) are not numbers")
        return tuple(math.nan if v is None else v for v in out)

    def texts(self, key: str) -> tuple[str, ...]:
        values = self.data.get(key)
        if values is None:
            return ()
        if not isinstance(values, list):
            self.bad(key, f"expected a list of texts, got {_kind_of(values)}")
            return ()
        if not all(isinstance(v, str) for v in values):
            self.bad(key, "some entries are not text")
        return tuple(v for v in values if isinstance(v, str))

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(key, f"expected an object, got {_kind_of(value)}")
            return {}
        return value

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(key, f"expected a list, got {_kind_of(value)}")
            return []
        return value

    def rows(self, key: str, parse: Callable[[Mapping[str, Any], list[str], int], _Row]) -> tuple[_Row, ...]:
        """A list of objects, each read by ``parse(row, problems, index)``; an entry that is not an
        object is named and left out."""
        out = []
        for i, row in enumerate(self.items(key)):
            if isinstance(row, dict):
                out.append(parse(row, self.problems, i))
            else:
                self.bad(f"{key}[{i}]", f"expected an object, got {_kind_of(row)}")
        return tuple(out)

    def version(self) -> int:
        value = self.data.get("version", RECORD_VERSION)
        version = as_count(value)
        if version is None:
            self.bad("version", f"expected a whole number, got {_short(value)}")
            return RECORD_VERSION
        if version > RECORD_VERSION:
            self.problems.append(
                f"written by a newer pytest-modelviz (record version {version}); shown as far as known")
        return version


def as_number(value: Any) -> float | None:
    """A JSON number (or a number written as text, like ``"nan"``) as a float; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            return math.copysign(math.inf, value)
    if isinstance(value, float):
        return value
    if isinstance(value, str) and len(value) < 64:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_count(value: Any) -> int | None:
    """A finite whole number (``3`` or ``3.0``) as an int; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(type(value), "a number")


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else _kind_of(value)
    return text if len(text) <= 40 else text[:39] + "\u2026"


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


# ---------------------------------------------------------------- per-test records


@dataclass(frozen=True)
class LayerRow:
    """One row of an architecture's layer table."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int | None
    macs: int | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "output_shape": list(self.output_shape),
                "params": self.params, "macs": self.macs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], problems: list[str], index: int) -> LayerRow:
        r = _Reader(data)
        shape_raw = r.items("output_shape")
        shape = tuple(d for d in (as_count(x) for x in shape_raw) if d is not None)
        if len(shape) != len(shape_raw):
            r.bad("output_shape", "not a list of whole numbers")
        row = cls(r.text("name"), r.text("type"), shape, r.count("params"), r.count("macs"))
        problems += [f"rows[{index}].{p}" for p in r.problems]
        return row


@dataclass(frozen=True)
class ArchitectureRecord:
    """An architecture captured by ``graph_snapshot`` and how it compared with its snapshot."""

    KIND: ClassVar[str] = "architecture"
    name: str
    model: str = ""
    training: bool | None = None
    totals: dict[str, int] = field(default_factory=dict)  # params, trainable, frozen, buffers, macs
    rows: tuple[LayerRow, ...] = ()
    snapshot: str = ""  # matched | changed | created | updated
    diff: str = ""
    text: str | None = None  # architecture.txt, relative to the test folder
    torch_version: str = ""
    version: int = RECORD_VERSION
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def changed(self) -> bool:
        return self.snapshot in CHANGED_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.KIND, "version": self.version, "name": self.name, "model": self.model,
            "training": self.training, "totals": dict(self.totals),
            "rows": [r.to_json() for r in self.rows], "snapshot": self.snapshot, "diff": self.diff,
            "text": self.text, "torch_version": self.torch_version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArchitectureRecord:
        r = _Reader(data)
        totals = {}
        for key, value in r.mapping("totals").items():
            number = as_count(value)
            if number is None:
                r.bad(f"totals.{key}", f"expected a whole number, got {_short(value)}")
            else:
                totals[str(key)] = number
        return cls(
            name=r.text("name"), model=r.text("model"), training=r.flag("training"), totals=totals,
            rows=r.rows("rows", LayerRow.from_json), snapshot=r.text("snapshot"), diff=r.text("diff"),
            text=r.optional_text("text"),
            torch_version=r.text("torch_version"), version=r.version(), problems=tuple(r.problems),
        )


@dataclass(frozen=True)
class ParamsRecord:
    """A parameter-statistics snapshot and the parameters beyond tolerance."""

    KIND: ClassVar[str] = "params"
    name: str
    model: str = ""
    snapshot: str = ""
    mismatches: tuple[str, ...] = ()
    plot: str | None = None
    stats: str | None = None
    version: int = RECORD_VERSION
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def changed(self) -> bool:
        return self.snapshot in CHANGED_STATES

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.version, "name": self.name, "model": self.model,
                "snapshot": self.snapshot, "mismatches": list(self.mismatches), "plot": self.plot,
                "stats": self.stats}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParamsRecord:
        r = _Reader(data)
        return cls(
            name=r.text("name"), model=r.text("model"), snapshot=r.text("snapshot"),
            mismatches=r.texts("mismatches"), plot=r.optional_text("plot"), stats=r.optional_text("stats"),
            version=r.version(), problems=tuple(r.problems),
        )


@dataclass(frozen=True)
class GraphRenderRecord:
    """The pictures made of one architecture (file key like ``svg`` or ``torchviz_dot`` -> path)."""

    KIND: ClassVar[str] = "graph_render"
    name: str
    files: dict[str, str] = field(default_factory=dict)
    renderer: str | None = None
    note: str = ""
    errors: tuple[str, ...] = ()
    tensorboard_graph: bool = False
    version: int = RECORD_VERSION
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def notes(self) -> tuple[str, ...]:
        """The note's lines that are not also errors (writers put errors in both)."""
        return tuple(line for line in self.note.splitlines() if line.strip() and line not in self.errors)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.version, "name": self.name, "files": dict(self.files),
                "renderer": self.renderer, "note": self.note or None, "errors": list(self.errors),
                "tensorboard_graph": self.tensorboard_graph}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GraphRenderRecord:
        r = _Reader(data)
        files = {}
        for key, value in r.mapping("files").items():
            if isinstance(value, str) and value:
                files[str(key)] = value
            elif value is not None:
                r.bad(f"files.{key}", f"expected a path, got {_kind_of(value)}")
        return cls(
            name=r.text("name"), files=files, renderer=r.optional_text("renderer"), note=r.text("note"),
            errors=r.texts("errors"), tensorboard_graph=bool(r.flag("tensorboard_graph")),
            version=r.version(), problems=tuple(r.problems),
        )


@dataclass(frozen=True)
class HealthRow:
    """One row of a training run's health table: a layer (or activation module) and what the
    default thresholds of the health checks say of it. None where a number does not apply."""

    layer: str
    kind: str = ""
    grad_norm: float | None = None  # median over the steps run
    update_ratio: float | None = None  # median over the sampled steps
    dead_fraction: float | None = None  # units dead (saturated) on every sample of the sampled steps
    problem: str = ""  # what the checks flag ("" when healthy)

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "kind": self.kind, "grad_norm": self.grad_norm,
                "update_ratio": self.update_ratio, "dead_fraction": self.dead_fraction, "problem": self.problem}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], problems: list[str], index: int) -> HealthRow:
        r = _Reader(data)
        row = cls(r.text("layer"), r.text("kind"), r.number("grad_norm"), r.number("update_ratio"),
                  r.number("dead_fraction"), r.text("problem"))
        problems += [f"health[{index}].{p}" for p in r.problems]
        return row


@dataclass(frozen=True)
class TrainRecord:
    """One ``short_train`` run: what it measured per step and where its pictures are."""

    KIND: ClassVar[str] = "train"
    name: str
    model: str = ""
    device: str = ""
    torch_version: str = ""
    steps: int | None = None
    losses: tuple[float, ...] = ()
    lrs: tuple[float, ...] = ()
    grad_norms: tuple[float, ...] = ()
    eval: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    curves: str | None = None
    error: str | None = None  # why training stopped before its last step (what it measured is kept)
    note: str = ""  # e.g. why there is no curves image
    tensorboard: str | None = None
    health: tuple[HealthRow, ...] = ()  # per-layer health table
    version: int = RECORD_VERSION
    problems: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "health": [row.to_json() for row in self.health],
            "kind": self.KIND, "version": self.version, "name": self.name, "model": self.model,
            "device": self.device, "torch_version": self.torch_version, "steps": self.steps,
            "losses": list(self.losses), "lrs": list(self.lrs), "grad_norms": list(self.grad_norms),
            "eval": {k: [list(p) for p in v] for k, v in self.eval.items()}, "curves": self.curves,
            "error": self.error, "note": self.note, "tensorboard": self.tensorboard,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainRecord:
        r = _Reader(data)
        evals: dict[str, tuple[tuple[float, float], ...]] = {}
        for metric, points in sorted(r.mapping("eval").items(), key=lambda kv: str(kv[0])):
            evals[str(metric)] = _points(points, f"eval.{metric}", r)
        steps = r.count("steps")
        if steps is not None and steps < 0:
            r.bad("steps", f"expected a count, got {steps}")
            steps = None
        return cls(
            name=r.text("name"), model=r.text("model"), device=r.text("device"),
            torch_version=r.text("torch_version"), steps=steps,
            losses=r.series("losses"), lrs=r.series("lrs"), grad_norms=r.series("grad_norms"), eval=evals,
            curves=r.optional_text("curves"), error=r.optional_text("error"), note=r.text("note"),
            tensorboard=r.optional_text("tensorboard"), health=r.rows("health", HealthRow.from_json),
            version=r.version(), problems=tuple(r.problems),
        )


def _points(points: Any, key: str, r: _Reader) -> tuple[tuple[float, float], ...]:
    """``[[step, value], ...]``; a point without a readable step is dropped, a bad value is NaN."""
    if not isinstance(points, list):
        r.bad(key, f"expected a list of [step, value] pairs, got {_kind_of(points)}")
        return ()
    out = []
    for pair in points:
        x = as_number(pair[0]) if isinstance(pair, list) and len(pair) == 2 else None
        if x is None or not math.isfinite(x):
            continue
        y = as_number(pair[1])
        out.append((x, math.nan if y is None else y))
    if len(out) != len(points):
        r.bad(key, f"{len(points) - len(out)} point(s) are not [step, value] pairs")
    return tuple(out)


@dataclass(frozen=True)
class CheckRecord:
    """One health check of a training run (``train`` names the run it belongs to)."""

    KIND: ClassVar[str] = "check"
    name: str
    passed: bool
    message: str = ""
    train: str | None = None
    version: int = RECORD_VERSION
    problems: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"kind": self.KIND, "version": self.version, "name": self.name,
                           "passed": self.passed, "message": self.message, "train": self.train})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckRecord:
        r = _Reader(data)
        passed = r.flag("passed")
        if passed is None:
            r.bad("passed", "missing; shown as failed")
        # A check without "train" predates the field and belongs to the latest run; "" names none.
        train = r.text("train") if "train" in data else None
        return cls(name=r.text("name"), passed=bool(passed), message=r.text("message"), train=train,
                   version=r.version(), problems=tuple(r.problems))


@dataclass(frozen=True)
class VisdomRecord:
    """A visdom env kept for the report: its JSON, its event log and the command that replays it."""

    KIND: ClassVar[str] = "visdom"
    env: str
    json: str | None = None
    log: str | None = None
    replay: str = ""
    server: str | None = None
    windows: int | None = None
    version: int = RECORD_VERSION
    problems: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.version, "env": self.env, "json": self.json,
                "log": self.log, "replay": self.replay, "server": self.server, "windows": self.windows}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VisdomRecord:
        r = _Reader(data)
        windows = r.count("windows")
        return cls(env=r.text("env"), json=r.optional_text("json"), log=r.optional_text("log"),
                   replay=r.text("replay"), server=r.optional_text("server"),
                   windows=windows if windows is None or windows >= 0 else None,
                   version=r.version(), problems=tuple(r.problems))


@dataclass(frozen=True)
class UnknownRecord:
    """A record of a kind this version does not know (a newer writer, a user's own kind)."""

    kind: str
    raw: str  # the line as written, cut to a readable length

    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnreadableRecord:
    """A line that is not a record: cut short, not JSON, not an object, or without a kind."""

    reason: str
    raw: str

    problems: tuple[str, ...] = ()


Record = ArchitectureRecord | ParamsRecord | GraphRenderRecord | TrainRecord | CheckRecord | VisdomRecord
AnyRecord = Record | UnknownRecord | UnreadableRecord
KINDS: dict[str, type[Record]] = {
    cls.KIND: cls
    for cls in (ArchitectureRecord, ParamsRecord, GraphRenderRecord, TrainRecord, CheckRecord, VisdomRecord)
}


def parse_line(line: str) -> AnyRecord:
    """One line of ``modelviz.jsonl`` as a record; never raises."""
    raw = line if len(line) <= _MAX_RAW else line[:_MAX_RAW] + "\u2026"
    try:
        data = json.loads(line)
    except ValueError:
        return UnreadableRecord("not JSON (cut short when a process was stopped mid-write?)", raw)
    except RecursionError:
        return UnreadableRecord("nested too deeply to read", raw)
    return from_json(data, raw)


def from_json(data: Any, raw: str = "") -> AnyRecord:
    if not isinstance(data, dict):
        return UnreadableRecord(f"not a JSON object ({_kind_of(data)})", raw)
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        return UnreadableRecord(f"no kind (got {_short(kind)})", raw)
    cls = KINDS.get(kind)
    if cls is None:
        return UnknownRecord(kind, raw or _dump_short(data))
    try:
        return cls.from_json(data)
    except RecursionError:
        return UnreadableRecord(f"{kind} record nested too deeply to read", raw)


def _dump_short(data: Any) -> str:
    try:
        text = json.dumps(data, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(type(data))
    return text if len(text) <= _MAX_RAW else text[:_MAX_RAW] + "\u2026"


class ToJson(Protocol):
    """What a record line is written from: each ``Record`` class."""

    def to_json(self) -> dict[str, Any]: ...


def to_line(record: ToJson | Mapping[str, Any]) -> str:
    """One line for ``modelviz.jsonl``. NaN and infinities are written as JSON's ``NaN``/``Infinity``,
    which this reader (and Python's ``json``) reads back; anything else unknown becomes its text."""
    data = record.to_json() if hasattr(record, "to_json") else dict(record)
    return json.dumps(data, sort_keys=True, default=str)


def read_json_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects in a ``modelviz.jsonl`` as written, and how many lines were not objects."""
    objects, bad = [], 0
    for line in _lines(path):
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(data, dict):
            objects.append(data)
        else:
            bad += 1
    return objects, bad


def read_record_file(path: Path) -> tuple[AnyRecord, ...]:
    """Every line of a ``modelviz.jsonl`` as a record, in order; a missing file has none."""
    try:
        lines = _lines(path)
    except OSError as exc:
        return (UnreadableRecord(f"the file could not be read ({exc.strerror or exc})", ""),)
    return tuple(parse_line(line) for line in lines)


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [line for line in text.splitlines() if line.strip()]


def snapshot_changes(records: tuple[AnyRecord, ...] | list[AnyRecord]) -> int:
    """How many snapshots in ``records`` differ from the stored ones (failed, or rewritten)."""
    return sum(1 for r in records if isinstance(r, (ArchitectureRecord, ParamsRecord)) and r.changed)


# ---------------------------------------------------------------- the run's outcomes


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # not a test class, whatever pytest's collection rules say

    nodeid: str
    outcome: str  # one of OUTCOMES, or "unknown" when read back from a bad file
    duration: float
    dirname: str  # the test's artifact folder, relative to the run folder
    message: str = ""  # short failure, skip or interruption reason
    job: str = ""  # the CI job the test ran in ("" when the run did not name one)

    def to_json(self) -> dict[str, Any]:
        data = {"nodeid": self.nodeid, "outcome": self.outcome, "duration": self.duration,
                "dirname": self.dirname, "message": self.message}
        return {**data, "job": self.job} if self.job else data


@dataclass(frozen=True)
class RunOutcomes:
    """``outcomes.json``: how each test ended and how the session ended."""

    tests: tuple[TestOutcome, ...] = ()
    started: float | None = None
    finished: float | None = None
    exit_status: int | None = None
    interrupted: str = ""  # why the run stopped before every test ran ("" when it did not)
    not_run: tuple[str, ...] = ()  # node ids collected but never started
    notes: tuple[str, ...] = ()  # what the run folder's housekeeping did (a stale pointer moved...)
    not_written: tuple[str, ...] = ()  # files of the run that could not be written
    snapshot_changes: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    job: str = ""  # the CI job of this run (``--modelviz-job``); "" in a merged run, whose tests each name theirs
    version: int = RECORD_VERSION
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def jobs(self) -> tuple[str, ...]:
        """The jobs the tests ran in, by name (empty when none was named)."""
        return tuple(sorted({t.job for t in self.tests if t.job}))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "job": self.job, "started": self.started, "finished": self.finished,
            "exit_status": self.exit_status, "interrupted": self.interrupted, "not_run": list(self.not_run),
            "notes": list(self.notes), "not_written": list(self.not_written),
            "snapshot_changes": self.snapshot_changes, "extras": self.extras,
            "tests": [t.to_json() for t in self.tests],
        }

    @classmethod
    def from_json(cls, data: Any) -> RunOutcomes:
        if not isinstance(data, dict):
            return cls(problems=(f"{OUTCOMES_FILE} is not a JSON object",))
        r = _Reader(data)
        tests = []
        for i, entry in enumerate(r.items("tests")):
            test = _test_outcome(entry)
            if test is None:
                r.bad(f"tests[{i}]", "not a test entry with a node id; ignored")
            else:
                tests.append(test)
        interrupted = data.get("interrupted")
        changes = r.count("snapshot_changes")
        return cls(
            tests=tuple(tests), started=r.number("started"), finished=r.number("finished"),
            exit_status=r.count("exit_status"),
            interrupted=(interrupted if isinstance(interrupted, str)
                         else "interrupted" if interrupted is True else ""),
            not_run=r.texts("not_run"), notes=r.texts("notes"), not_written=r.texts("not_written"),
            snapshot_changes=max(0, changes or 0), extras=dict(r.mapping("extras")), job=r.text("job"),
            version=r.version(), problems=tuple(r.problems),
        )


def _test_outcome(entry: Any) -> TestOutcome | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("nodeid"), str) or not entry["nodeid"]:
        return None
    r = _Reader(entry)
    outcome = r.text("outcome")
    duration = r.number("duration")
    return TestOutcome(
        nodeid=entry["nodeid"],
        outcome=outcome if outcome in OUTCOMES else "unknown",
        duration=duration if duration is not None and duration >= 0 else 0.0,
        dirname=r.text("dirname"),
        message=r.text("message"),
        job=r.text("job"),
    )


def outcomes_text(outcomes: RunOutcomes) -> str:
    """The text of ``outcomes.json`` (what a run writes at its end, and a merge of runs)."""
    return json.dumps(outcomes.to_json(), indent=1, sort_keys=True, default=str)


def read_outcomes(path: Path) -> RunOutcomes | None:
    """``outcomes.json`` read back; ``None`` when there is none (the session did not finish)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return RunOutcomes(problems=(f"{OUTCOMES_FILE} could not be read ({exc.strerror or exc})",))
    try:
        data = json.loads(text)
    except ValueError as exc:
        return RunOutcomes(problems=(f"{OUTCOMES_FILE} could not be read ({exc})",))
    except RecursionError:
        return RunOutcomes(problems=(f"{OUTCOMES_FILE} is nested too deeply to read",))
    return RunOutcomes.from_json(data)
