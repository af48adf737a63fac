"""The set-up scripts (.ci/env.sh) use the Python the user names, or stop and say why: never
another one, and never a venv made with another one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV_SH = ROOT / ".ci" / "env.sh"


def supported() -> list[str]:
    return bash("echo $SUPPORTED_PYTHONS").stdout.split()


def bash(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` after sourcing env.sh, with ``env`` added (and no PYTHON unless given)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MODELVIZ_VENV")}
    return subprocess.run(["bash", "-c", f'source "{ENV_SH}"; {script}'], capture_output=True, text=True,
                          timeout=120, env={**environ, **env}, check=False)


def resolvable(version: str) -> str | None:
    """The interpreter env.sh finds for ``PYTHON=version`` on this machine, or None."""
    found = bash("find_python", PYTHON=version)
    return found.stdout.strip() or None if found.returncode == 0 else None


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def test_a_python_that_does_not_run_is_refused_and_nothing_is_made(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run-example.sh")], capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**os.environ, "PYTHON": "python3.99", "MODELVIZ_VENV": str(venv)})
    assert done.returncode == 1
    assert "PYTHON=python3.99 does not run here" in done.stderr
    assert f"Supported: {' '.join(supported())}." in done.stderr
    assert not venv.exists(), "no venv is made with another Python instead"


@pytest.mark.parametrize("version", ["3.9", "3.8"])
def test_an_unsupported_python_is_refused_naming_the_supported_ones(version: str) -> None:
    if bash(f'python_version_of "$(via_pyenv {version} || echo python{version})"').stdout.strip() != version:
        pytest.skip(f"no Python {version} on this machine to refuse")
    done = bash("find_python", PYTHON=version)
    assert done.returncode == 1 and done.stdout == ""
    says = f"PYTHON={version} is Python {version}; pytest-modelviz supports Python {' '.join(supported())}."
    assert says in done.stderr


def test_a_version_name_is_found_through_pyenv_or_the_path() -> None:
    found = resolvable(this_python())
    assert found is not None
    version = subprocess.run([found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == this_python()


def test_a_venv_of_another_python_is_refused(tmp_path: Path) -> None:
    other = next((v for v in supported() if v != this_python() and resolvable(v)), None)
    if other is None:
        pytest.skip("no second supported Python on this machine")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    done = bash("ensure_venv", PYTHON=other, MODELVIZ_VENV=str(venv))
    assert done.returncode == 1
    assert f"{venv} has Python {this_python()} but PYTHON={other} is {other}" in done.stderr
    assert "MODELVIZ_VENV=" in done.stderr
    assert not (venv / ".modelviz-stamp").exists(), "nothing was installed into it"
