"""Pictures drawn when the run ends, not in the test: what to draw is queued, drawn once, at
session end: by each xdist worker for the tests it ran, when it has no more tests, and by the
controller for whatever is still pending then (everything, without xdist).

Graphviz layouts and hiddenlayer's transforms (and its import) cost seconds, and a test's result
never depends on them. So a test writes what the picture is drawn from (a DOT file, the
architecture text, the statistics JSON) and queues a ``Picture`` in its folder's
``pictures.jsonl``; ``draw_pending`` draws every queued picture of the folders given (Graphviz
subprocesses in parallel, the Python-drawn ones meanwhile) and writes each picture's outcome back
into the same file, which the report reads: a picture that could not be drawn is named there with
the reason, and one never drawn (the session was killed) says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pytest_modelviz.artifacts import write_atomic
from pytest_modelviz.errors import RenderError, missing_extra
from pytest_modelviz.records import PICTURES_FILE

if TYPE_CHECKING:
    from pytest_modelviz.artifacts import ArtifactDir

MAX_WORKERS = 4  # Graphviz processes at once; each is single-threaded

Kind = Literal["graphviz", "hiddenlayer", "histograms"]
State = Literal["pending", "drawn", "failed"]
_KINDS = ("graphviz", "hiddenlayer", "histograms")
_STATES = ("pending", "drawn", "failed")


@dataclass(frozen=True)
class Picture:
    """One picture to draw: ``output`` from ``source`` (both relative to the test folder)."""

    kind: Kind
    subject: str  # what it is a picture of, for people: "graph 'convnet'"
    source: str
    output: str
    state: State = "pending"
    message: str = ""  # why it failed

    @property
    def label(self) -> str:
        return f"{self.output} ({self.subject})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Picture | None:
        """A picture read back, or None for a line that is not one (hand edited, another version)."""
        if not isinstance(data, dict):
            return None
        fields = {k: v for k in ("kind", "subject", "source", "output", "state", "message")
                  if isinstance(v := data.get(k), str)}
        if len(fields) < 6 or fields["kind"] not in _KINDS or fields["state"] not in _STATES:
            return None
        if not _inside(fields["source"]) or not _inside(fields["output"]):
            return None  # never draw from or write to a path outside the test folder
        return cls(**fields)  # type: ignore[arg-type]  # kind and state checked above


def _inside(rel: str) -> bool:
    path = Path(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts


# ---------------------------------------------------------------- in the test


def queue(artifacts: ArtifactDir, pictures: list[Picture]) -> bool:
    """Add ``pictures`` to the test's queue; False when it could not be written (a full disk:
    the session names the file, and the pictures are missing from the report)."""
    if not pictures:
        return True
    path = artifacts.path(PICTURES_FILE)
    lines = [json.dumps(p.to_json(), sort_keys=True) for p in [*read_pictures(artifacts.root), *pictures]]
    return artifacts.write(path, "\n".join(lines) + "\n") is not None


def read_pictures(test_dir: Path) -> list[Picture]:
    """The pictures of one test folder, in the order queued; unreadable lines are skipped."""
    try:
        text = (test_dir / PICTURES_FILE).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            picture = Picture.from_json(json.loads(line))
        except ValueError:
            picture = None
        if picture is not None:
            out.append(picture)
    return out


# ---------------------------------------------------------------- at the end of the run


@dataclass(frozen=True)
class Drawn:
    """What ``draw_pending`` found: the folders' pictures that could not be drawn (by it, or earlier
    by a worker), and the queue files it could not rewrite."""

    failed: tuple[tuple[Path, Picture], ...] = ()
    not_written: tuple[str, ...] = ()


def draw_pending(test_dirs: list[Path], *, workers: int | None = None) -> Drawn:
    """Draw every pending picture of ``test_dirs``.

    Each test folder's ``pictures.jsonl`` is rewritten with the outcomes (one that cannot be is
    named in ``not_written``: its pictures are on disk, their outcomes are not). Graphviz renders run as
    subprocesses on a thread pool; hiddenlayer and histogram pictures run in this thread meanwhile,
    and the Graphviz renders of the DOT files they make follow them. A Ctrl-C stops the drawing:
    what was not drawn stays ``pending`` and the report says so.
    """
    queues = {d: read_pictures(d) for d in test_dirs}
    todo = [(d, i) for d, pictures in queues.items() for i, p in enumerate(pictures) if p.state == "pending"]
    if not todo:  # all drawn already (by the xdist workers): the failures are still the run's
        return Drawn(_failed(queues))
    made_here = {(d, p.output) for d, i in todo if (p := queues[d][i]).kind != "graphviz"}
    renderer_or_error = _renderer()

    def draw(d: Path, i: int) -> None:
        picture = queues[d][i]
        try:
            _DRAW[picture.kind](d, picture, renderer_or_error)
        except ImportError as exc:
            queues[d][i] = replace(picture, state="failed",
                                   message=str(missing_extra(exc.name or picture.kind, "render", cause=exc)))
        except Exception as exc:  # noqa: BLE001 - named in the report, never lost; a picture never fails a test
            message = str(exc) if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
            queues[d][i] = replace(picture, state="failed", message=message)
        else:
            queues[d][i] = replace(picture, state="drawn", message="")

    graphviz = [(d, i) for d, i in todo if queues[d][i].kind == "graphviz"]
    first = [(d, i) for d, i in graphviz if (d, queues[d][i].source) not in made_here]
    here = [(d, i) for d, i in todo if queues[d][i].kind != "graphviz"]
    after = [(d, i) for d, i in graphviz if (d, queues[d][i].source) in made_here]
    pool = ThreadPoolExecutor(max_workers=workers or min(MAX_WORKERS, os.cpu_count() or 1),
                              thread_name_prefix="modelviz-picture")
    futures: list[Future[None]] = []
    try:
        futures += [pool.submit(draw, d, i) for d, i in first]
        for d, i in here:
            draw(d, i)
        for d, i in after:
            source_picture = next(p for p in queues[d] if p.output == queues[d][i].source)
            if source_picture.state == "failed":
                queues[d][i] = replace(queues[d][i], state="failed",
                                       message=f"its source {source_picture.output} could not be made")
            else:
                futures.append(pool.submit(draw, d, i))
        for future in futures:
            future.result()
    except KeyboardInterrupt:
        for future in futures:
            future.cancel()  # those already running finish; the rest stay pending
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    not_written = [problem for d, pictures in queues.items() if (problem := _rewrite(d, pictures))]
    return Drawn(_failed(queues), tuple(not_written))


def _failed(queues: dict[Path, list[Picture]]) -> tuple[tuple[Path, Picture], ...]:
    return tuple((d, p) for d, pictures in queues.items() for p in pictures if p.state == "failed")


def _rewrite(test_dir: Path, pictures: list[Picture]) -> str | None:
    """Write the outcomes back; what could not be written, for the session's warning."""
    if not pictures:
        return None
    lines = [json.dumps(p.to_json(), sort_keys=True) for p in pictures]
    try:
        write_atomic(test_dir / PICTURES_FILE, "\n".join(lines) + "\n")
    except OSError as exc:
        return f"{test_dir.name}/{PICTURES_FILE} ({exc.strerror or exc})"
    return None


def _renderer() -> Any:
    """The Graphviz renderer for the whole run, or the error that stands for one."""
    from pytest_modelviz.render import graphviz as gv

    try:
        found = gv.find_renderer()
    except RenderError as exc:
        return exc
    return found if found is not None else RenderError(gv.missing_renderer_note())


def _draw_graphviz(test_dir: Path, picture: Picture, renderer: Any) -> None:
    from pytest_modelviz.render import graphviz as gv

    if isinstance(renderer, Exception):
        raise renderer
    source, output = test_dir / picture.source, test_dir / picture.output
    fmt = output.suffix.lstrip(".")
    if fmt not in ("svg", "png") or source.with_suffix(output.suffix) != output:
        raise RenderError(f"cannot draw {picture.source} as {picture.output}")
    gv.render_file(renderer, source, fmt)  # type: ignore[arg-type]


def _draw_hiddenlayer(test_dir: Path, picture: Picture, renderer: Any) -> None:
    from pytest_modelviz.graph.text import from_text
    from pytest_modelviz.render.hiddenlayer_graph import to_dot

    graph = from_text((test_dir / picture.source).read_text(encoding="utf-8"))
    write_atomic(test_dir / picture.output, to_dot(graph))


def _draw_histograms(test_dir: Path, picture: Picture, renderer: Any) -> None:
    from pytest_modelviz.snapshot.params import plot_histograms_file

    plot_histograms_file(test_dir / picture.source, test_dir / picture.output)


_DRAW: dict[str, Callable[[Path, Picture, Any], None]] = {
    "graphviz": _draw_graphviz,
    "hiddenlayer": _draw_hiddenlayer,
    "histograms": _draw_histograms,
}
