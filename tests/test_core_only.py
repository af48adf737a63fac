"""A core-only install (``pip install pytest-modelviz``, no extras), as a user has it: every fixture
and ``--modelviz`` works, or fails with one line naming the extra to install.

The environment is real: a fresh venv whose site-packages holds exactly the distributions that
pytest-modelviz's core requirements pull in (followed through ``Requires-Dist`` as pip resolves
them, without extras), linked from this venv so that no download is needed. The extras are not
there at all, so every import of one fails as it does for a user; nothing is patched or mocked.
"""

from __future__ import annotations

import os
import sysconfig
import venv
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

EXTRAS_MODULES = ("visdom", "tornado", "matplotlib", "hiddenlayer", "torchviz", "graphviz", "IPython")

PROBE = """
import torch
from torch import nn


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_architecture(graph_snapshot):
    graph_snapshot(model(), torch.zeros(1, 4))


def test_parameters(graph_snapshot):
    graph_snapshot.parameters(model())


def test_train(short_train):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x.sum(1) > 0).long()
    data = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    result = short_train(model(), data, loss_fn=nn.CrossEntropyLoss(),
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.5), steps=20)
    result.assert_finite()
    result.assert_loss_decreased()


def test_tensorboard(tb_writer):
    tb_writer.add_scalar("loss", 1.0, 0)


def test_device(modelviz_device, modelviz_artifacts):
    assert modelviz_device in ("cpu", "cuda")


def test_visdom(visdom_client):
    visdom_client.text("hello")
"""


def _core_distributions(root: str = "pytest-modelviz") -> list[metadata.Distribution]:
    """What ``pip install pytest-modelviz`` installs: the requirements without extras, followed
    through each requirement's own extras (``cuda-toolkit[cublas,...]``), markers evaluated here."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(canonicalize_name(root), "")]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        dist = found.setdefault(name, metadata.distribution(name))
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None and extra:
                continue  # taken with the distribution itself
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            todo += [(canonicalize_name(req.name), e) for e in ("", *sorted(req.extras))]
    return list(found.values())


def _build_core_venv(target: Path) -> Path:
    """A venv holding the core distributions only; its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(target)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(target), "platbase": str(target)}))
    core = _core_distributions()
    core_names = {canonicalize_name(d.metadata["Name"]) for d in core}
    owners: dict[str, set[str]] = {}  # top-level entry of site-packages -> who installed into it
    for dist in metadata.distributions():
        for file in dist.files or []:
            if file.parts and file.parts[0] != "..":
                owners.setdefault(file.parts[0], set()).add(canonicalize_name(dist.metadata["Name"]))
    for dist in core:
        for file in dist.files or []:
            if not file.parts or file.parts[0] == "..":  # scripts outside site-packages
                continue
            # A folder only core distributions install into is linked whole; a shared one file by file.
            rel = Path(file.parts[0]) if owners[file.parts[0]] <= core_names else Path(file)
            dst, src = site / rel, Path(str(dist.locate_file(rel)))
            if dst.is_symlink() or dst.exists() or not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    return target / "bin" / "python"


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = _build_core_venv(tmp_path_factory.mktemp("core-venv"))
    missing = [m for m in EXTRAS_MODULES if _importable(python, m)]
    assert missing == [], f"the core-only venv can import extras: {missing}"
    assert _importable(python, "torch") and _importable(python, "pytest_modelviz.plugin")
    return python


def _importable(python: Path, module: str) -> bool:
    import subprocess

    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", code], env=_clean_env()).returncode == 0


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST_", "VIRTUAL_ENV"))}


def _run(pytester: pytest.Pytester, python: Path, *args: str) -> pytest.RunResult:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_clean_env())
    try:
        return pytester.run(str(python), "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args, timeout=600)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _assert_one_line_for_visdom(result: pytest.RunResult) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert "ModuleNotFoundError" not in output and "Traceback" not in output, output
    result.stdout.fnmatch_lines([
        "*_ ERROR at setup of test_visdom _*",
        "the visdom_client fixture needs visdom, which is not installed: "
        "pip install 'pytest-modelviz[visdom]'",
    ])
    result.stdout.fnmatch_lines(["ERROR test_core_only_probe.py::test_visdom - Failed: the visdom_client*"])


def test_every_fixture_and_modelviz_without_extras(pytester: pytest.Pytester, core_python: Path) -> None:
    pytester.makepyfile(test_core_only_probe=PROBE)
    checks = _run(pytester, core_python, "--snapshot-update")  # writes the snapshots compared below
    checks.assert_outcomes(passed=5, errors=1)
    _assert_one_line_for_visdom(checks)

    result = _run(pytester, core_python, "--modelviz")
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(["*2 snapshots passed*"])
    _assert_one_line_for_visdom(result)
    run = (pytester.path / ".modelviz" / "latest").resolve()
    assert (run / "report.html").is_file()
    # What the report reads: each missing picture is a note naming the extra.
    notes = "\n".join(path.read_text(encoding="utf-8") for path in run.glob("*/modelviz.jsonl"))
    assert "hiddenlayer is not installed: pip install 'pytest-modelviz[render]'" in notes
    assert "torchviz is not installed: pip install 'pytest-modelviz[render]'" in notes
    assert '"curves": "train-Sequential/curves.svg"' in notes  # the curves need no plotting library
