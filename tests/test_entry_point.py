"""The entry point is loaded by every pytest run in a user's environment: it must stay cheap."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

HEAVY = ("torch", "tensorboardX", "visdom", "matplotlib", "torchvision", "numpy", "hiddenlayer", "graphviz")


def test_entry_point_is_registered() -> None:
    eps = entry_points(group="pytest11")
    assert any(ep.name == "modelviz" and ep.value == "pytest_modelviz.plugin" for ep in eps)


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, pytest_modelviz.plugin, pytest_modelviz\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the entry point imported {out.stdout.strip()}"


def test_pytest_run_without_fixtures_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import sys
        def test_nothing_heavy():
            loaded = [m for m in {HEAVY!r} if m in sys.modules]
            assert loaded == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:html")
    result.assert_outcomes(passed=1)


def test_lazy_public_names_resolve() -> None:
    code = "import pytest_modelviz as m; print(m.capture.__module__, m.short_train.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pytest_modelviz.graph.capture" in out.stdout
    assert "pytest_modelviz.train.loop" in out.stdout


def test_no_private_pytest_api() -> None:
    """pytest's ``_pytest`` package changes without notice; the plugin uses public API only."""
    import re
    from pathlib import Path

    import pytest_modelviz

    package = Path(pytest_modelviz.__file__).parent
    private = re.compile(r"_pytest\.|\b(import|from)\s+_pytest\b")
    offenders = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*"))
        if path.is_file() and path.suffix in (".py", ".md", ".js", ".css")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []
