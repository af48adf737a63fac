"""The report's view model: plain, immutable records of a run, built by ``read`` and drawn by
``html``/``sections``. No I/O and no HTML here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

OUTCOME_ORDER = ("failed", "error", "xpassed", "passed", "xfailed", "skipped", "unknown")


@dataclass(frozen=True)
class Artifact:
    """A file of the run, by its path relative to the run folder (posix); ``None`` when missing."""

    label: str
    href: str | None


@dataclass(frozen=True)
class Architecture:
    name: str
    model: str
    training: bool | None
    totals: dict[str, int]
    rows: tuple[dict[str, Any], ...]
    snapshot: str
    diff: str
    text: Artifact | None
    torch_version: str


@dataclass(frozen=True)
class ParamsSnapshot:
    name: str
    model: str
    snapshot: str
    mismatches: tuple[str, ...]
    plot: Artifact | None
    stats: Artifact | None


@dataclass(frozen=True)
class GraphRender:
    name: str
    files: dict[str, Artifact]
    renderer: str | None
    note: str
    tensorboard_graph: bool
    errors: tuple[str, ...] = ()  # renderers that failed, and why
    dot_texts: dict[str, str] = field(default_factory=dict)  # DOT source by file key, for showing as text


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    message: str


@dataclass(frozen=True)
class TrainRun:
    name: str
    model: str
    device: str
    torch_version: str
    steps: int | None
    losses: tuple[float, ...]
    lrs: tuple[float, ...]
    grad_norms: tuple[float, ...]
    eval: dict[str, tuple[tuple[float, float], ...]]
    curves: Artifact | None
    histograms: Artifact | None
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class VisdomEnv:
    env: str
    json: Artifact | None
    log: Artifact | None
    replay: str
    windows: int | None = None


@dataclass(frozen=True)
class TestView:
    nodeid: str
    outcome: str
    duration: float
    dirname: str
    message: str
    architectures: tuple[Architecture, ...] = ()
    params: tuple[ParamsSnapshot, ...] = ()
    renders: tuple[GraphRender, ...] = ()
    trains: tuple[TrainRun, ...] = ()
    checks: tuple[Check, ...] = ()  # checks with no training run before them
    visdom: tuple[VisdomEnv, ...] = ()
    others: tuple[dict[str, Any], ...] = ()  # record kinds this version does not know
    tensorboard: str | None = None  # the test's TensorBoard run folder, relative to the run folder
    files: tuple[Artifact, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def has_details(self) -> bool:
        """False for a test that left nothing to show but its outcome (it gets no card)."""
        return bool(self.message or self.problems or self.files or self.architectures or self.params
                    or self.renders or self.trains or self.checks or self.visdom or self.others)

    @property
    def snapshot_changed(self) -> bool:
        return any(a.snapshot in ("changed", "updated") for a in (*self.architectures, *self.params))


@dataclass(frozen=True)
class RunView:
    name: str  # the run folder's name
    started: float | None
    finished: float | None
    snapshot_changes: int
    tests: tuple[TestView, ...]
    extras: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

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
        found = [r.device for t in self.tests for r in t.trains if r.device]
        found += _strings(self.extras.get("devices", self.extras.get("device")))
        return tuple(sorted(set(found)))

    @property
    def torch_versions(self) -> tuple[str, ...]:
        found = [r.torch_version for t in self.tests for r in (*t.trains, *t.architectures) if r.torch_version]
        found += _strings(self.extras.get("torch_version"))
        return tuple(sorted(set(found)))

    @property
    def changed_snapshots(self) -> int:
        return max(self.snapshot_changes, sum(t.snapshot_changed for t in self.tests))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v]
    return []

