"""The ``short_train`` fixture's body: ``short_train`` with this test's device and log interval,
and with ``--modelviz`` the test's TensorBoard and visdom sinks, the curves SVG and the run record."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.records import CheckRecord, HealthRow, TrainRecord
from pytest_modelviz.train.result import hide_for_failures

if TYPE_CHECKING:
    import pytest

    from pytest_modelviz.session import ModelvizSession
    from pytest_modelviz.sink import MetricSink
    from pytest_modelviz.train.options import ShortTrain, TrainOptions
    from pytest_modelviz.train.result import TrainResult


def bind_short_train(
    request: pytest.FixtureRequest, session: ModelvizSession, artifacts: ArtifactDir, device: str
) -> ShortTrain:
    from pytest_modelviz.train.loop import train
    from pytest_modelviz.train.options import build_options

    def bound(model: Any, data: Any, options: TrainOptions | None = None, **overrides: Any) -> TrainResult:
        __tracebackhide__ = hide_for_failures
        built = build_options(options, overrides)
        return train(model, data, _for_test(built, model, request, session, artifacts, device))

    return bound


def _for_test(options: TrainOptions, model: Any, request: pytest.FixtureRequest, session: ModelvizSession,
              artifacts: ArtifactDir, device: str) -> TrainOptions:
    """The caller's options with what this test adds: its device and log interval where the caller
    chose none, and with ``--modelviz`` its sinks, the check reporter and the run record."""
    label = options.name or getattr(model, "__name__", None) or type(model).__name__  # a factory: its name
    sinks = tuple(options.sinks)
    if artifacts.persist:
        sinks += tuple(_test_sinks(request, label, options.seed))
    user_end, user_check = options.on_end, options.on_check
    reporter = _check_reporter(artifacts, label)

    def keep(result: TrainResult) -> None:
        # Before any check, and also for a run that failed part way, so the report shows
        # every step that ran (up to a NaN, an error or a Ctrl-C) and every check's outcome.
        if artifacts.persist:
            _record(artifacts, result)
        if user_end is not None:
            user_end(result)

    def on_check(check: str, passed: bool, message: str) -> None:
        if reporter is not None:
            reporter(check, passed, message)
        if user_check is not None:
            user_check(check, passed, message)

    return dataclasses.replace(
        options,
        device=device if options.device is None else options.device,
        log_every=session.settings.log_every if options.log_every is None else options.log_every,
        sinks=sinks,
        name=label,
        on_end=keep,
        on_check=on_check if reporter is not None or user_check is not None else None,
    )


def _test_sinks(request: pytest.FixtureRequest, label: str, seed: int) -> list[MetricSink]:
    from pytest_modelviz.tensorboard.sink import TensorBoardSink

    # The test's own tb_writer, so what the test logs and what training logs share one run.
    tb_writer = request.getfixturevalue("tb_writer")
    out: list[MetricSink] = [TensorBoardSink(tb_writer, hparams={"model": label, "seed": seed})]
    if importlib.util.find_spec("visdom") is not None:  # visdom is an extra
        from pytest_modelviz.visdom.sink import FLUSH_SECS, VisdomSink

        # Buffered: a step costs no visdom event; the loop closes its sinks, which sends the rest.
        out.append(VisdomSink(request.getfixturevalue("visdom_client"), flush_secs=FLUSH_SECS))
    return out


def _check_reporter(artifacts: ArtifactDir, label: str) -> Callable[[str, bool, str], None] | None:
    if not artifacts.persist:
        return None

    def report(check: str, passed: bool, message: str) -> None:
        artifacts.record(CheckRecord(name=check, passed=passed, message=message, train=label))

    return report


def _record(artifacts: ArtifactDir, result: TrainResult) -> None:
    """The ``train`` record; its ``note`` says why training stopped early and why a picture is missing."""
    from pytest_modelviz.render.outcome import RenderOutcome

    pictures = RenderOutcome()
    curves = pictures.attempt("training curves", lambda: _write_curves(artifacts, result))
    notes = [] if result.error is None else [f"training stopped after {result.steps_run} step(s): {result.error}"]
    artifacts.record(TrainRecord(
        name=result.name,
        model=type(result.model).__name__,
        device=result.device,
        torch_version=result.torch_version,
        steps=result.steps_run,
        losses=tuple(result.losses),
        lrs=tuple(result.lrs),
        grad_norms=tuple(result.grad_norms),
        eval={k: tuple((s, v) for s, v in points) for k, points in result.eval.items()},
        curves=curves,
        error=result.error,
        note="\n".join([*notes, pictures.note or ""]).strip(),
        tensorboard=artifacts.relative(artifacts.tensorboard_dir),
        health=_health_rows(result),
    ))
    pictures.warn(f"the training run {result.name!r}")  # after recording: -W error must not lose it


def _health_rows(result: TrainResult) -> tuple[HealthRow, ...]:
    from pytest_modelviz.train.diagnosis import health_rows

    if result.health is None:
        return ()
    kinds = {name: type(m).__name__ for name, m in result.model.named_modules() if name}
    return tuple(health_rows(result.param_grad_norms, result.grad_norms, result.health, kinds))


def _write_curves(artifacts: ArtifactDir, result: TrainResult) -> str | None:
    from pytest_modelviz.train.curves import CURVES_FILE, curves_svg

    svg = curves_svg(result)
    written = artifacts.write(artifacts.unique_dir(f"train-{result.name}") / CURVES_FILE, svg)
    return None if written is None else artifacts.relative(written)
