"""The pytest entry point (``pytest11: modelviz``): options, markers, fixtures and report hooks.

Imported by every pytest run in a user's environment, so it imports only pytest, the standard
library and this package's light modules; each fixture imports its implementation in its body.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator

import pytest

from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.reporting import RunReporter, warn
from pytest_modelviz.session import SESSION_KEY, WORKER_RUN_DIR, ModelvizSession, get_session
from pytest_modelviz.settings import add_options, load_settings

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter

GPU_MARKER = "gpu: runs on CUDA; skipped with a reason where CUDA is unavailable, and `-m gpu` " \
    "without CUDA fails the session at start"
_ARTIFACTS_KEY = pytest.StashKey[ArtifactDir]()


# ---------------------------------------------------------------- configuration


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", GPU_MARKER)
    settings = load_settings(config)
    if _selects_only_gpu(config.getoption("markexpr", "") or ""):
        from pytest_modelviz.devices import cuda_available

        if not cuda_available():
            raise pytest.UsageError(
                "-m selects gpu tests but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False). A GPU runner without a working GPU must "
                "not pass by skipping every test: fix the runner's CUDA setup, or drop -m gpu."
            )
    if settings.device.startswith("cuda"):
        from pytest_modelviz.devices import check_cuda
        from pytest_modelviz.errors import DeviceUnavailableError

        try:
            check_cuda(settings.device)
        except DeviceUnavailableError as exc:
            raise pytest.UsageError(f"--modelviz-device: {exc}") from None
    session = ModelvizSession.create(config, settings)
    config.stash[SESSION_KEY] = session
    if session.run_dir is not None:
        config.pluginmanager.register(RunReporter(config, session), "modelviz-reporter")


def _selects_only_gpu(markexpr: str) -> bool:
    """True when ``-m`` picks tests marked gpu and not unmarked ones (``-m gpu``, ``-m "gpu and slow"``)."""
    if not markexpr.strip():
        return False
    from _pytest.mark.expression import Expression

    try:
        expr = Expression.compile(markexpr)
    except SyntaxError:  # pytest itself reports a bad -m expression, with its position
        return False
    return expr.evaluate(lambda name, **_: name == "gpu") and not expr.evaluate(lambda name, **_: False)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand every worker the one run folder."""
    session = get_session(node.config)
    if session.run_dir is not None:
        node.workerinput[WORKER_RUN_DIR] = str(session.run_dir)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        from pytest_modelviz.devices import cuda_available

        if not cuda_available():
            pytest.skip("gpu test: CUDA is not available (torch.cuda.is_available() is False)")


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def modelviz_artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ArtifactDir:
    """This test's artifact folder (under the run folder with --modelviz, else a temporary one)."""
    node = request.node
    if _ARTIFACTS_KEY not in node.stash:
        node.stash[_ARTIFACTS_KEY] = get_session(request.config).artifact_dir(node.nodeid, tmp_path_factory)
    return node.stash[_ARTIFACTS_KEY]


@pytest.fixture
def modelviz_device(request: pytest.FixtureRequest) -> str:
    """The device this test trains on: the gpu marker, --modelviz-device, or auto."""
    from pytest_modelviz.devices import resolve_device

    return resolve_device(
        None,
        setting=get_session(request.config).settings.device,
        gpu_marker=request.node.get_closest_marker("gpu") is not None,
    )


@pytest.fixture
def tb_writer(modelviz_artifacts: ArtifactDir) -> Generator[SummaryWriter, None, None]:
    """A tensorboardX ``SummaryWriter`` whose log dir is this test's TensorBoard run."""
    from pytest_modelviz.sinks.tensorboard import open_writer

    writer = open_writer(modelviz_artifacts)
    try:
        yield writer
    finally:
        writer.close()  # flushes: what the test wrote is kept even when it failed


@pytest.fixture
def visdom_client(request: pytest.FixtureRequest, modelviz_artifacts: ArtifactDir) -> Generator[Any, None, None]:
    """A ``visdom.Visdom`` client whose env is named after this test."""
    from pytest_modelviz.visdom.fixture import visdom_client_for_test

    yield from visdom_client_for_test(request, get_session(request.config), modelviz_artifacts)


@pytest.fixture
def graph_snapshot(request: pytest.FixtureRequest, snapshot: Any, modelviz_artifacts: ArtifactDir) -> Any:
    """Capture a model's architecture and assert it against the stored syrupy snapshot."""
    from pytest_modelviz.snapshot.assertion import GraphSnapshot

    return GraphSnapshot(
        request=request,
        snapshot=snapshot,
        artifacts=modelviz_artifacts,
        session=get_session(request.config),
    )


@pytest.fixture
def short_train(request: pytest.FixtureRequest, modelviz_artifacts: ArtifactDir, modelviz_device: str) -> Any:
    """``short_train(model, data, *, loss_fn, optimizer, steps, ...)`` bound to this test."""
    from pytest_modelviz.train.fixture import bind_short_train

    return bind_short_train(request, get_session(request.config), modelviz_artifacts, modelviz_device)


# ---------------------------------------------------------------- reporting


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mv = session.config.stash.get(SESSION_KEY, None)
    if mv is None:
        return
    for exc in mv.close():
        warn(session.config, f"modelviz: cleanup failed: {exc!r}")
