"""The pytest entry point (``pytest11: modelviz``): options, markers, fixtures and report hooks.

Imported by every pytest run in a user's environment, so it imports only pytest, the standard
library and this package's light modules; each fixture imports its implementation in its body.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_modelviz import gpu, junit
from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.reporting import RunReporter, WorkerPictures, warn
from pytest_modelviz.session import SESSION_KEY, WORKER_RUN_DIR, ModelvizSession, get_session
from pytest_modelviz.settings import add_options, load_settings

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter
    from visdom import Visdom

    from pytest_modelviz.snapshot.assertion import GraphSnapshot
    from pytest_modelviz.train.options import ShortTrain

_ARTIFACTS_KEY = pytest.StashKey[ArtifactDir]()


# ---------------------------------------------------------------- configuration


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)  # after every conftest and plugin has registered its markers
def pytest_configure(config: pytest.Config) -> None:
    from pytest_modelviz.snapshot.guard import GUARD_NAME, SnapshotGuard

    config.pluginmanager.register(SnapshotGuard(config), GUARD_NAME)
    settings = load_settings(config)
    _configure_gpu_marker(config, settings.gpu_marker)
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
        if session.is_worker:
            config.pluginmanager.register(WorkerPictures(config, session), "modelviz-worker-pictures")
        path = junit.xml_path(config)
        from pytest_modelviz.ci_output import PLUGIN_NAME, CiOutput

        config.pluginmanager.register(CiOutput(config, session, junit=path is not None), PLUGIN_NAME)
        if path is not None and not session.is_worker:
            start = None if settings.junit_paths == "absolute" else config.invocation_params.dir
            attach = junit.JUnitAttachments(path, lambda message: warn(config, message), relative_to=start)
            config.pluginmanager.register(attach, "modelviz-junit")


def _configure_gpu_marker(config: pytest.Config, configured: str | None) -> None:
    marker, warning = gpu.choose_marker(configured, config.getini("markers"))
    config.stash[gpu.MARKER_KEY] = marker
    if marker is not None:
        config.addinivalue_line("markers", gpu.marker_line(marker))
    if warning and not hasattr(config, "workerinput"):  # said once, by the xdist controller
        config.issue_config_time_warning(pytest.PytestConfigWarning(warning), stacklevel=2)


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = gpu.selection_problem(config, items, config.stash[gpu.MARKER_KEY])
    if problem is None:
        return
    if hasattr(config, "workerinput"):
        # An xdist worker cannot end the session with a usage error; shouldfail travels to the
        # controller, which stops the run and prints it.
        session.shouldfail = problem
        return
    raise pytest.UsageError(problem)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand every worker the one run folder."""
    session = get_session(node.config)
    if session.run_dir is not None:
        node.workerinput[WORKER_RUN_DIR] = str(session.run_dir)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if gpu.needs_cuda(item, item.config.stash[gpu.MARKER_KEY]):
        from pytest_modelviz.devices import cuda_available

        if not cuda_available():
            pytest.skip(f"{item.config.stash[gpu.MARKER_KEY]} test: CUDA is not available "
                        "(torch.cuda.is_available() is False)")


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def modelviz_artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ArtifactDir:
    """This test's artifact folder (under the run folder with --modelviz, else a temporary one)."""
    node = request.node
    stash: pytest.Stash = node.stash
    if _ARTIFACTS_KEY not in stash:
        stash[_ARTIFACTS_KEY] = get_session(request.config).artifact_dir(node.nodeid, tmp_path_factory)
    return stash[_ARTIFACTS_KEY]


@pytest.fixture
def modelviz_device(request: pytest.FixtureRequest) -> str:
    """The device this test trains on: the gpu marker, --modelviz-device, or auto."""
    from pytest_modelviz.devices import resolve_device

    return resolve_device(
        None,
        setting=get_session(request.config).settings.device,
        gpu_marker=gpu.needs_cuda(request.node, request.config.stash[gpu.MARKER_KEY]),
    )


@pytest.fixture
def tb_writer(modelviz_artifacts: ArtifactDir) -> Generator[SummaryWriter, None, None]:
    """A tensorboardX ``SummaryWriter`` whose log dir is this test's TensorBoard run."""
    from pytest_modelviz.tensorboard.sink import open_writer

    writer = open_writer(modelviz_artifacts)
    try:
        yield writer
    finally:
        writer.close()  # flushes: what the test wrote is kept even when it failed


@pytest.fixture
def visdom_client(
    request: pytest.FixtureRequest, modelviz_artifacts: ArtifactDir
) -> Generator[Visdom, None, None]:
    """A ``visdom.Visdom`` client whose env is named after this test."""
    _require_extra("visdom", extra="visdom", needed_by="the visdom_client fixture")
    from pytest_modelviz.visdom.fixture import visdom_client_for_test

    yield from visdom_client_for_test(request, get_session(request.config), modelviz_artifacts)


@pytest.fixture
def graph_snapshot(
    request: pytest.FixtureRequest, snapshot: Any, modelviz_artifacts: ArtifactDir
) -> GraphSnapshot:
    """Capture a model's architecture and assert it against the stored syrupy snapshot."""
    from pytest_modelviz.snapshot.assertion import GraphSnapshot

    return GraphSnapshot(
        request=request,
        snapshot=snapshot,
        artifacts=modelviz_artifacts,
        session=get_session(request.config),
    )


@pytest.fixture
def short_train(
    request: pytest.FixtureRequest, modelviz_artifacts: ArtifactDir, modelviz_device: str
) -> ShortTrain:
    """``short_train(model, data, *, loss_fn, optimizer, steps, ...)`` bound to this test
    (type it as ``pytest_modelviz.ShortTrain``)."""
    from pytest_modelviz.train.fixture import bind_short_train

    return bind_short_train(request, get_session(request.config), modelviz_artifacts, modelviz_device)


def _require_extra(module: str, *, extra: str, needed_by: str) -> None:
    """Fail the test with one line naming the extra to install when ``module`` cannot be imported."""
    import importlib

    from pytest_modelviz.errors import missing_extra

    try:
        importlib.import_module(module)
    except ImportError as exc:
        error = missing_extra(module, extra, needed_by, cause=exc)
    else:
        return
    # Raised outside the except block, so the report shows this line alone, not the ImportError too.
    pytest.fail(str(error), pytrace=False)


# ---------------------------------------------------------------- reporting


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mv = session.config.stash.get(SESSION_KEY, None)
    if mv is None:
        return
    for exc in mv.close():
        warn(session.config, f"modelviz: cleanup failed: {exc!r}")
