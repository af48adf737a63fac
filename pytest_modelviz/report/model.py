"""The report's view model: plain, immutable records of a run, built by ``read`` and drawn by
``html``/``sections``. No I/O and no HTML here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pytest_modelviz.records import (
    ArchitectureRecord,
    CheckRecord,
    GraphRenderRecord,
    ParamsRecord,
    TrainRecord,
    VisdomRecord,
)

OUTCOME_ORDER = ("failed", "error", "interrupted", "xpassed", "passed", "xfailed", "skipped", "unknown")


@dataclass(frozen=True)
class Artifact:
    """A file of the run, by its path relative to the run folder (posix); ``None`` when missing."""

    label: str
    href: str | None


# Each view is a record as read (``records``) plus what the page needs from the folder: the
# record's paths checked and made relative to the run folder, checks attached to their run.


@dataclass(frozen=True)
class Architecture:
    record: ArchitectureRecord
    text: Artifact | None
    # Every output shape by layer name, read from the architecture text: the record's rows hold
    # only the first output, and a layer like LSTM returns several. Empty when the text is not there.
    outputs: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ParamsSnapshot:
    record: ParamsRecord
    plot: Artifact | None
    stats: Artifact | None


@dataclass(frozen=True)
class GraphRender:
    record: GraphRenderRecord
    files: dict[str, Artifact]  # by file key (``svg``, ``torchviz_dot``...), existing files only
    dot_texts: dict[str, str] = field(default_factory=dict)  # DOT source by file key, for showing as text


@dataclass(frozen=True)
class TrainRun:
    record: TrainRecord
    curves: Artifact | None
    checks: tuple[CheckRecord, ...] = ()


@dataclass(frozen=True)
class VisdomEnv:
    record: VisdomRecord
    json: Artifact | None
    log: Artifact | None


@dataclass(frozen=True)
class TestView:
    __test__ = False  # not a test class

    nodeid: str
    outcome: str
    duration: float
    dirname: str
    message: str
    architectures: tuple[Architecture, ...] = ()
    params: tuple[ParamsSnapshot, ...] = ()
    renders: tuple[GraphRender, ...] = ()
    trains: tuple[TrainRun, ...] = ()
    checks: tuple[CheckRecord, ...] = ()  # checks with no training run before them
    visdom: tuple[VisdomEnv, ...] = ()
    others: tuple[str, ...] = ()  # records of kinds this version does not know, as written
    tensorboard: str | None = None  # the test's TensorBoard run folder, relative to the run folder
    files: tuple[Artifact, ...] = ()
    problems: tuple[str, ...] = ()  # records, or parts of them, that could not be read
    job: str = ""  # the CI job it ran in (a merged run), "" when none was named

    @property
    def has_details(self) -> bool:
        """False for a test that left nothing to show but its outcome (it gets no card)."""
        return bool(self.message or self.problems or self.files or self.architectures or self.params
                    or self.renders or self.trains or self.checks or self.visdom or self.others)

    @property
    def snapshot_changes(self) -> int:
        return sum(a.record.changed for a in self.architectures) + sum(p.record.changed for p in self.params)


@dataclass(frozen=True)
class RunView:
    name: str  # the run folder's name
    started: float | None
    finished: float | None
    tests: tuple[TestView, ...]
    extras: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    interrupted: str = ""  # why the run stopped before every test ran
    not_run: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    not_written: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(t.outcome for t in self.tests)
        return {k: counts[k] for k in OUTCOME_ORDER if counts[k]}

    @property
    def duration(self) -> float | None:
        if self.started is not None and self.finished is not None:
            return max(0.0, self.finished - self.started)
        return sum(t.duration for t in self.tests) or None

    @property
    def devices(self) -> tuple[str, ...]:
        found = [r.record.device for t in self.tests for r in t.trains if r.record.device]
        found += _strings(self.extras.get("devices", self.extras.get("device")))
        return tuple(sorted(set(found)))

    @property
    def torch_versions(self) -> tuple[str, ...]:
        records: list[TrainRecord | ArchitectureRecord] = [r.record for t in self.tests for r in t.trains]
        records += [a.record for t in self.tests for a in t.architectures]
        found = [r.torch_version for r in records if r.torch_version]
        found += _strings(self.extras.get("torch_version"))
        return tuple(sorted(set(found)))

    @property
    def jobs(self) -> tuple[str, ...]:
        """The jobs of a merged run, in name order; empty for a single job's run."""
        return tuple(sorted({t.job for t in self.tests if t.job}))

    @property
    def changed_snapshots(self) -> int:
        return sum(t.snapshot_changes for t in self.tests)

    @property
    def unfinished(self) -> tuple[str, ...]:
        return tuple(t.nodeid for t in self.tests if t.outcome == "interrupted")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str) and v]
    return []
