"""The ``short_train`` fixture's body: ``short_train`` with this test's device and log interval,
and with ``--modelviz`` the test's TensorBoard and visdom sinks, the curves PNG and the run record."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Callable

from pytest_modelviz.artifacts import ArtifactDir

if TYPE_CHECKING:
    import pytest

    from pytest_modelviz.session import ModelvizSession
    from pytest_modelviz.sink import MetricSink
    from pytest_modelviz.train.result import TrainResult

CURVES_FILE = "curves.png"


def bind_short_train(
    request: pytest.FixtureRequest, session: ModelvizSession, artifacts: ArtifactDir, device: str
) -> Callable[..., TrainResult]:
    from pytest_modelviz.train.loop import short_train

    fixture_device = device

    def bound(model: Any, data: Any, *, device: Any = None, log_every: int | None = None,
              sinks: list[MetricSink] | None = None, name: str | None = None,
              on_end: Callable[[TrainResult], None] | None = None, **kwargs: Any) -> TrainResult:
        label = name or type(model).__name__
        every = log_every or session.settings.log_every
        chosen = device if device is not None else fixture_device
        all_sinks = list(sinks or [])
        if artifacts.persist:
            all_sinks.extend(_test_sinks(request, label, kwargs.get("seed", 0)))

        def keep(result: TrainResult) -> None:
            # Before any check, and also for a run that failed part way, so the report shows
            # every step that ran (up to a NaN, an error or a Ctrl-C) and every check's outcome.
            result.reporter = _check_reporter(artifacts, label)
            if artifacts.persist:
                _record(artifacts, result)
            if on_end is not None:
                on_end(result)

        return short_train(model, data, device=chosen, log_every=every, sinks=all_sinks, name=label,
                           on_end=keep, **kwargs)

    return bound


def _test_sinks(request: pytest.FixtureRequest, label: str, seed: int) -> list[MetricSink]:
    from pytest_modelviz.tensorboard.sink import TensorBoardSink

    # The test's own tb_writer, so what the test logs and what training logs share one run.
    out: list[MetricSink] = [TensorBoardSink(request.getfixturevalue("tb_writer"), hparams={"model": label, "seed": seed})]
    if importlib.util.find_spec("visdom") is not None:  # visdom is an extra
        from pytest_modelviz.visdom.sink import FLUSH_SECS, VisdomSink

        # Buffered: a step costs no visdom event; the loop closes its sinks, which sends the rest.
        out.append(VisdomSink(request.getfixturevalue("visdom_client"), flush_secs=FLUSH_SECS))
    return out


def _check_reporter(artifacts: ArtifactDir, label: str) -> Callable[[str, bool, str], None] | None:
    if not artifacts.persist:
        return None

    def report(check: str, passed: bool, message: str) -> None:
        artifacts.record("check", name=check, passed=passed, message=message, train=label)

    return report


def _record(artifacts: ArtifactDir, result: TrainResult) -> None:
    """The ``train`` record; its ``note`` says why training stopped early and why a picture is missing."""
    from pytest_modelviz.render.outcome import RenderOutcome

    pictures = RenderOutcome()
    curves = pictures.attempt("training curves", lambda: _write_curves(artifacts, result))
    notes = [] if result.error is None else [f"training stopped after {result.steps_run} step(s): {result.error}"]
    if curves is not None:
        notes += _clamped_notes(result)
    artifacts.record(
        "train",
        name=result.name,
        model=type(result.model).__name__,
        device=result.device,
        torch_version=result.torch_version,
        steps=result.steps_run,
        losses=result.losses,
        lrs=result.lrs,
        grad_norms=result.grad_norms,
        eval={k: [[s, v] for s, v in points] for k, points in result.eval.items()},
        curves=curves,
        error=result.error,
        note="\n".join([*notes, pictures.note or ""]).strip(),
        tensorboard=artifacts.relative(artifacts.tensorboard_dir),
    )
    pictures.warn(f"the training run {result.name!r}")  # after recording: -W error must not lose it


def _write_curves(artifacts: ArtifactDir, result: TrainResult) -> str | None:
    from pytest_modelviz.train.curves import curves_png

    png = curves_png(result)
    written = artifacts.write(artifacts.unique_dir(f"train-{result.name}") / CURVES_FILE, png)
    return None if written is None else artifacts.relative(written)


def _clamped_notes(result: TrainResult) -> list[str]:
    from pytest_modelviz.train.curves import PLOT_LIMIT, clamped_series

    return [
        f"training curves: {name} has values beyond ±{PLOT_LIMIT:g}, drawn at ±{PLOT_LIMIT:g} (the record keeps them as they are)"
        for name in clamped_series(result)
    ]
