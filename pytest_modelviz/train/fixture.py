"""The ``short_train`` fixture's body: ``short_train`` with this test's device and log interval,
and with ``--modelviz`` the test's TensorBoard and visdom sinks, the curves PNG and the run record."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Callable

from pytest_modelviz.artifacts import ArtifactDir

if TYPE_CHECKING:
    import pytest

    from pytest_modelviz.session import ModelvizSession
    from pytest_modelviz.sinks.base import MetricSink
    from pytest_modelviz.train.result import TrainResult

CURVES_FILE = "curves.png"


def bind_short_train(
    request: pytest.FixtureRequest, session: ModelvizSession, artifacts: ArtifactDir, device: str
) -> Callable[..., TrainResult]:
    from pytest_modelviz.train.loop import short_train

    fixture_device = device

    def bound(model: Any, data: Any, *, device: Any = None, log_every: int | None = None,
              sinks: list[MetricSink] | None = None, name: str | None = None, **kwargs: Any) -> TrainResult:
        label = name or type(model).__name__
        every = log_every or session.settings.log_every
        chosen = device if device is not None else fixture_device
        all_sinks = list(sinks or [])
        if artifacts.persist:
            all_sinks.extend(_test_sinks(request, label, kwargs.get("seed", 0)))
        raise_on_nonfinite = kwargs.pop("raise_on_nonfinite", True)
        result = short_train(model, data, device=chosen, log_every=every, sinks=all_sinks, name=label,
                             raise_on_nonfinite=False, **kwargs)
        result.reporter = _check_reporter(artifacts, label)
        if artifacts.persist:
            _record(artifacts, result)  # before failing, so the report shows the steps up to the NaN
        if raise_on_nonfinite and result.nonfinite is not None:
            result.assert_finite()
        return result

    return bound


def _test_sinks(request: pytest.FixtureRequest, label: str, seed: int) -> list[MetricSink]:
    from pytest_modelviz.sinks.tensorboard import TensorBoardSink

    # The test's own tb_writer, so what the test logs and what training logs share one run.
    out: list[MetricSink] = [TensorBoardSink(request.getfixturevalue("tb_writer"), hparams={"model": label, "seed": seed})]
    if importlib.util.find_spec("visdom") is not None:  # visdom is an extra
        from pytest_modelviz.sinks.visdom import VisdomSink

        out.append(VisdomSink(request.getfixturevalue("visdom_client")))
    return out


def _check_reporter(artifacts: ArtifactDir, label: str) -> Callable[[str, bool, str], None] | None:
    if not artifacts.persist:
        return None

    def report(check: str, passed: bool, message: str) -> None:
        artifacts.record("check", name=check, passed=passed, message=message, train=label)

    return report


def _record(artifacts: ArtifactDir, result: TrainResult) -> None:
    curves, note = None, ""
    try:
        from pytest_modelviz.train.curves import write_curves_png

        folder = artifacts.unique_dir(f"train-{result.name}")
        curves = artifacts.relative(write_curves_png(result, folder / CURVES_FILE))
    except ImportError as exc:
        note = f"no curves image: {exc.name or exc} is not installed (pip install 'pytest-modelviz[render]')"
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
        note=note,
        tensorboard=artifacts.relative(artifacts.tensorboard_dir),
    )
