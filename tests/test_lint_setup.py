"""The lint step: CI runs ruff and mypy (.ci/run-lint.sh) before the tests, with tools the README's
set-up installs, and a change to those tools makes the set-up install again."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_TOOLS = ("ruff", "mypy")


def test_ci_runs_the_lint_step_before_the_tests() -> None:
    steps = [line.split()[2] for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.startswith("step bash ")]
    assert steps[:2] == [".ci/run-lint.sh", ".ci/run-tests.sh"]
    script = (ROOT / ".ci" / "run-lint.sh").read_text()
    assert "ensure_venv" in script and "ruff check" in script and "mypy" in script


def test_the_readme_names_the_lint_step() -> None:
    assert "bash .ci/run-lint.sh" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_test_extra_installs_the_lint_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    test_extra = project["optional-dependencies"]["test"]
    names = {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower() for spec in test_extra}
    assert set(LINT_TOOLS) <= names


@pytest.mark.parametrize("tool", LINT_TOOLS)
def test_the_lint_tools_run_in_the_test_environment(tool: str) -> None:
    done = subprocess.run([sys.executable, "-m", tool, "--version"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_changed_tool_list_changes_the_set_up_stamp(tmp_path: Path) -> None:
    """ensure_venv installs again whenever the stamp differs; the stamp covers pyproject.toml."""
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((ROOT / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")

    def stamp() -> str:
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MODELVIZ_CONSTRAINTS")}
        script = f'source "{tmp_path}/.ci/env.sh"; stamp_of'
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, check=True,
                              env={**environ, "MODELVIZ_VENV": sys.prefix})
        return done.stdout

    before = stamp()
    assert stamp() == before, "the stamp is stable while nothing changes"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace('"ruff>=', '"ruff>=0.0.1", "ruff>=', 1), encoding="utf-8")
    assert pyproject.read_text(encoding="utf-8") != text
    assert stamp() != before
