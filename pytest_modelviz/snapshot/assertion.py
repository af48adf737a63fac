"""``graph_snapshot``: capture a model, assert its architecture against a syrupy snapshot.

The comparison always runs; ``--modelviz`` only adds artifacts (the architecture text, a record
for the run report, renders). A mismatch raises ``AssertionError`` whose message starts with the
semantic diff, so it is the first thing pytest prints.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import SnapshotFormatError
from pytest_modelviz.graph.model import ArchitectureGraph
from pytest_modelviz.records import ArchitectureRecord, GraphRenderRecord, LayerRow

if TYPE_CHECKING:
    import pytest
    from syrupy.assertion import SnapshotAssertion

    from pytest_modelviz.artifacts import ArtifactDir
    from pytest_modelviz.session import ModelvizSession
    from pytest_modelviz.snapshot.extension import Comparison, Status


class GraphSnapshot:
    """The object the ``graph_snapshot`` fixture returns; call it with a model and example inputs."""

    def __init__(
        self,
        *,
        request: pytest.FixtureRequest,
        snapshot: SnapshotAssertion,
        artifacts: ArtifactDir,
        session: ModelvizSession,
    ) -> None:
        self._request = request
        self._snapshot = snapshot
        self._artifacts = artifacts
        self._session = session
        self._assertion: SnapshotAssertion | None = None

    def __call__(
        self,
        model: Any,
        *example_args: Any,
        name: str | None = None,
        detail: str = "full",
        **example_kwargs: Any,
    ) -> ArchitectureGraph:
        """Capture ``model(*example_args, **example_kwargs)`` and assert it matches the snapshot.

        ``name`` labels the snapshot (default: the model's class name, ``-2``, ``-3``... when a
        test snapshots several models of one class); the same ``name`` twice in one test is a
        ``ModelvizUsageError``. ``detail="modules"`` snapshots the layers without the functional
        ops between them (see ``pytest_modelviz.graph.detail``). Returns the captured graph.
        """
        __tracebackhide__ = True
        from pytest_modelviz.graph.capture import capture
        from pytest_modelviz.graph.detail import check_detail, with_detail
        from pytest_modelviz.snapshot.labels import snapshot_label
        from pytest_modelviz.unwrap import unwrap_model

        model = unwrap_model(model)  # the renders too draw the model, not its torch.compile wrapper
        check_detail(detail)  # before the forward: a typo fails at once
        graph = with_detail(capture(model, *example_args, **example_kwargs), detail)
        label = snapshot_label(self._request.node, self._snapshot, "graph_snapshot", name, graph.model_name)
        text = graph.to_text()
        result = self._compare(label, graph)
        failure: BaseException | None = None
        diff_text = ""
        if result.stored is None and result.status == "changed":
            failure = AssertionError(self._missing_message(result))
            diff_text = str(failure)
        elif result.stored is not None and (result.stored.problem or result.stored != text):
            try:
                diff_text = self._diff_message(result, text)
            except SnapshotFormatError as unreadable:
                # Under --snapshot-update the unreadable file is simply replaced.
                diff_text = str(unreadable)
                if result.status == "changed":
                    failure = unreadable.with_traceback(None)  # the file is at fault, not our frames
            if failure is None and result.status == "changed":
                failure = AssertionError(f"{diff_text}\n\n{self._update_hint()}")
        if self._artifacts.persist:
            self._persist(graph, label, result.status, diff_text, model, example_args, example_kwargs)
        if failure is not None:
            raise failure
        return graph

    def parameters(
        self,
        model: Any,
        *,
        name: str | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        bins: int = 16,
        **options: Any,
    ) -> Any:
        """Assert the model's per-parameter statistics against a snapshot, within tolerances.

        ``options`` go to ``assert_param_snapshot`` as they are (e.g. ``buffers=True``).
        """
        __tracebackhide__ = True
        from pytest_modelviz.snapshot.params import assert_param_snapshot

        return assert_param_snapshot(
            self._snapshot, self._artifacts, self._session, model, name=name, rtol=rtol, atol=atol, bins=bins, **options
        )

    def training(
        self,
        result: Any,
        *,
        name: str | None = None,
        rtol: float | Mapping[str, float] | None = None,
        atol: float | Mapping[str, float] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> Any:
        """Assert the curves of a ``short_train`` result (loss, gradient norm, learning rate, eval
        metrics) against a snapshot, within tolerances; see ``pytest_modelviz/docs/training_snapshots.md``."""
        __tracebackhide__ = True
        from pytest_modelviz.snapshot.training import assert_training_snapshot

        return assert_training_snapshot(
            self._snapshot, self._session, result, name=name, rtol=rtol, atol=atol, metrics=metrics
        )

    # ------------------------------------------------------------ comparing

    def _compare(self, label: str, graph: ArchitectureGraph) -> Comparison:
        from pytest_modelviz.snapshot.extension import ArchitectureExtension, check_snapshot

        if self._assertion is None:
            self._assertion = self._snapshot.use_extension(ArchitectureExtension)
        return check_snapshot(self._assertion, label, graph)

    def _update_hint(self) -> str:
        nodeid = shlex.quote(self._request.node.nodeid)
        return f"Run `pytest --snapshot-update {nodeid}` to accept the new architecture."

    def _missing_message(self, result: Comparison) -> str:
        return (
            f"Snapshot '{result.snapshot_name}' does not exist! ({self._shown(result.location)})\n"
            f"Run `pytest --snapshot-update {shlex.quote(self._request.node.nodeid)}` to create it."
        )

    def _shown(self, location: str) -> str:
        """Where a snapshot file is, as parameter snapshots say it too: relative to the rootdir."""
        from pytest_modelviz.snapshot.extension import display_path

        return display_path(location, self._request.config.rootpath)

    def _diff_message(self, result: Comparison, text: str) -> str:
        from pytest_modelviz.snapshot.extension import architecture_diff

        assert result.stored is not None
        verb = "changed" if result.status == "changed" else "updated"
        full = self._session.settings.full_diff
        return "\n".join(architecture_diff(result.stored, text, name=result.snapshot_name, full=full, verb=verb))

    # ------------------------------------------------------------ artifacts

    def _persist(
        self,
        graph: ArchitectureGraph,
        label: str,
        status: Status,
        diff_text: str,
        model: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        import torch

        artifacts = self._artifacts
        folder = artifacts.unique_dir(f"graph-{label}")
        text_path = folder / "architecture.txt"
        artifacts.write(text_path, graph.to_text())
        artifacts.record(ArchitectureRecord(
            name=label,
            model=graph.model_name,
            training=graph.training,
            totals=asdict(graph.totals),
            rows=tuple(
                LayerRow(
                    name=n.name,
                    type=n.short_type,
                    output_shape=tuple(n.outputs[0].shape) if n.outputs else (),
                    params=n.num_params,
                    macs=n.macs,
                )
                for n in graph.nodes
                if n.kind not in ("input", "output")
            ),
            snapshot=status,
            diff=diff_text,
            text=artifacts.relative(text_path),
            torch_version=torch.__version__,
        ))
        self._render(graph, folder, label, model, args, kwargs)

    def _render(
        self,
        graph: ArchitectureGraph,
        folder: Path,
        label: str,
        model: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Render pictures of the graph; a failure is recorded and warned, never raised.

        The snapshot result is what the test is about: a missing Graphviz or a renderer bug
        must not turn a matching snapshot into an error, nor hide a mismatch.
        """
        import warnings

        from pytest_modelviz.errors import RenderWarning
        from pytest_modelviz.render import render_graph_artifacts

        try:
            render_graph_artifacts(
                graph, self._artifacts, folder=folder, name=label, model=model, example_args=args, example_kwargs=kwargs
            )
        except Exception as exc:  # noqa: BLE001 - recorded for the report and warned below
            note = f"rendering failed: {type(exc).__name__}: {exc}"
            self._artifacts.record(GraphRenderRecord(name=label, note=note))
            warnings.warn(RenderWarning(f"graph {label!r} {note}"), stacklevel=3)

