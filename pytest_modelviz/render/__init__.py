"""Pictures of a captured architecture: DOT/SVG/PNG, hiddenlayer, torchviz, TensorBoard's Graphs tab.

``render_graph_artifacts`` is the one entry point (``graph_snapshot`` calls it with
``--modelviz``). In a test it writes what is cheap (the architecture DOT, the torchviz DOT, which
needs the model, and the TensorBoard graph) and queues the rest (hiddenlayer's DOT, every
Graphviz picture) for the end of the run (``pending``), so pictures cost the test nothing.
Each render is independent: one that fails is recorded in the ``graph_render`` record's
``errors`` and ``note`` and raised as a ``RenderWarning`` (at the end of the run: named in the
report and the terminal summary), and the others still run. Renders are for people; they never
make a test pass or fail.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_modelviz.artifacts import write_atomic
from pytest_modelviz.records import GraphRenderRecord
from pytest_modelviz.render import graphviz as gv
from pytest_modelviz.render.outcome import RenderOutcome
from pytest_modelviz.render.pending import Picture, queue

if TYPE_CHECKING:
    from pytest_modelviz.artifacts import ArtifactDir
    from pytest_modelviz.graph.model import ArchitectureGraph

ARCHITECTURE_TEXT = "architecture.txt"  # the capture as text; hiddenlayer's picture is drawn from it

# (file key, file name, formats to draw). torchviz graphs run to thousands of nodes on real
# models, so they get SVG only (zoomable, and one layout instead of two).
_DOT_FILES: tuple[tuple[str, str, tuple[gv.ImageFormat, ...]], ...] = (
    ("dot", "graph.dot", ("svg", "png")),
    ("hiddenlayer_dot", "hiddenlayer.dot", ("svg", "png")),
    ("torchviz_dot", "torchviz.dot", ("svg",)),
)


def render_graph_artifacts(
    graph: ArchitectureGraph,
    artifacts: ArtifactDir,
    *,
    folder: Path,
    name: str,
    model: Any = None,
    example_args: Sequence[Any] = (),
    example_kwargs: Mapping[str, Any] | None = None,
    later: bool | None = None,
) -> dict[str, Any]:
    """Write or queue every picture of ``graph`` into ``folder`` and record them as one ``graph_render``.

    ``model`` with ``example_args``/``example_kwargs`` is needed only for the torchviz autograd
    graph (it runs one forward; the model's modes, buffers and RNG state are put back). With
    ``later`` (the default for a kept run folder) hiddenlayer's DOT and the Graphviz pictures are
    queued for ``pending.draw_pending`` and the record names the files they will be. Returns the
    fields of the record written (paths relative to the test folder).
    """
    later = artifacts.persist if later is None else later
    folder.mkdir(parents=True, exist_ok=True)
    out = RenderOutcome()
    planned: list[Picture] = []
    subject = f"graph {name!r}"
    out.attempt("architecture DOT", lambda: _write_dot(out, "dot", folder, _architecture_dot(graph, name)))
    if later and importlib.util.find_spec("hiddenlayer") is not None:
        out.attempt("hiddenlayer",
                    lambda: planned.append(_plan_hiddenlayer(out, graph, folder, artifacts, subject)))
    else:  # drawn now: also how a missing hiddenlayer becomes its note
        out.attempt("hiddenlayer",
                    lambda: _write_dot(out, "hiddenlayer_dot", folder, _hiddenlayer_dot(graph)))
    if model is not None:
        out.attempt("torchviz", lambda: _write_dot(
            out, "torchviz_dot", folder, _torchviz_dot(model, example_args, example_kwargs)))
    failures = len(out.errors)
    renderer = out.attempt("Graphviz", gv.find_renderer)
    if renderer is not None and later:
        planned += _plan_draws(out, artifacts, subject)
    elif renderer is not None:
        _draw_all(out, renderer)
    elif len(out.errors) == failures:  # none found (a bad setting is already an error)
        out.notes.insert(0, gv.missing_renderer_note())
    tb_graph = out.attempt("TensorBoard graph", lambda: _write_tensorboard_graph(graph, artifacts))
    if planned and not queue(artifacts, planned):
        out.errors.append("pictures: the list of pictures to draw could not be written, so none are drawn")
        out.files = {k: v for k, v in out.files.items() if v.exists()}

    data: dict[str, Any] = {
        "name": name,
        "files": {key: artifacts.relative(path) for key, path in out.files.items()},
        "renderer": renderer.kind if renderer is not None else None,
        "note": out.note,
        "errors": out.errors,
        "tensorboard_graph": tb_graph is not None,
    }
    artifacts.record(GraphRenderRecord(
        name=name, files=data["files"], renderer=data["renderer"], note=data["note"],
        errors=tuple(out.errors), tensorboard_graph=data["tensorboard_graph"],
    ))
    out.warn(f"{name!r} ({graph.model_name})")  # after recording: -W error must not lose the record
    return data


def _plan_hiddenlayer(out: RenderOutcome, graph: ArchitectureGraph, folder: Path, artifacts: ArtifactDir,
                      subject: str) -> Picture:
    """Queue hiddenlayer's DOT, drawn from the architecture text (written here unless it is already)."""
    source = folder / ARCHITECTURE_TEXT
    if not source.is_file():
        write_atomic(source, graph.to_text())
    target = folder / _file_name("hiddenlayer_dot")
    out.files["hiddenlayer_dot"] = target
    return Picture("hiddenlayer", subject, artifacts.relative(source), artifacts.relative(target))


def _plan_draws(out: RenderOutcome, artifacts: ArtifactDir, subject: str) -> list[Picture]:
    """Queue each format of each DOT file written or queued; the record names them already."""
    planned = []
    for dot_key, _, formats in _DOT_FILES:
        dot_path = out.files.get(dot_key)
        if dot_path is None:
            continue
        prefix = dot_key.removesuffix("dot")
        for fmt in formats:
            target = dot_path.with_suffix(f".{fmt}")
            out.files[f"{prefix}{fmt}"] = target
            source, output = artifacts.relative(dot_path), artifacts.relative(target)
            planned.append(Picture("graphviz", subject, source, output))
    return planned


def _file_name(key: str) -> str:
    return next(f for k, f, _ in _DOT_FILES if k == key)


def _architecture_dot(graph: ArchitectureGraph, name: str) -> str:
    from pytest_modelviz.render.dot import to_dot

    return to_dot(graph, title=name)


def _hiddenlayer_dot(graph: ArchitectureGraph) -> str:
    from pytest_modelviz.render.hiddenlayer_graph import to_dot

    return to_dot(graph)


def _torchviz_dot(model: Any, args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> str:
    from pytest_modelviz.render.autograd import autograd_dot

    return autograd_dot(model, args, kwargs)


def _write_dot(out: RenderOutcome, key: str, folder: Path, text: str) -> None:
    path = folder / _file_name(key)
    out.files[key] = write_atomic(path, text)


def _draw_all(out: RenderOutcome, renderer: gv.Renderer) -> None:
    """Draw each DOT file written, each format on its own so one failure keeps the rest."""
    for dot_key, _, formats in _DOT_FILES:
        dot_path = out.files.get(dot_key)
        if dot_path is None:
            continue
        prefix = dot_key.removesuffix("dot")  # "" | "hiddenlayer_" | "torchviz_"
        for fmt in formats:
            drawn = out.attempt(f"{dot_path.name} -> {fmt}", functools.partial(gv.render_file, renderer, dot_path, fmt))
            if drawn is not None:
                out.files[f"{prefix}{fmt}"] = drawn


def _write_tensorboard_graph(graph: ArchitectureGraph, artifacts: ArtifactDir) -> Path:
    from pytest_modelviz.tensorboard.graph import to_graph_def, write_graph_event

    return write_graph_event(to_graph_def(graph), artifacts.tensorboard_dir)
