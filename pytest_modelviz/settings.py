"""Command-line options and ini keys, resolved once into a plain ``Settings`` record."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pytest

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
VISDOM_MODES = ("offline", "server")
JUNIT_PATHS = ("relative", "absolute")
_JOB_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Settings:
    enabled: bool  # --modelviz: persist, render, attach, report
    base_dir: Path  # --modelviz-dir, absolute
    device: str  # auto | cpu | cuda | cuda:N
    visdom: str  # offline | server | http(s)://host:port
    log_every: int  # training histograms/images every N steps
    param_rtol: float
    param_atol: float
    full_diff: bool  # show the whole raw snapshot diff, not a capped one
    keep_runs: int = 5  # run folders kept in base_dir (the newest); 0 keeps every run
    gpu_marker: str | None = None  # modelviz_gpu_marker as the project set it; None: not set
    train_rtol: float = 1e-2  # tolerances of training-dynamics snapshots
    train_atol: float = 1e-6
    job: str = ""  # the CI job this run is (--modelviz-job); tags its tests when runs are merged
    junit_paths: str = "relative"  # JUnit attachment paths: relative to the working directory, or absolute


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("modelviz", "pytest-modelviz: architecture snapshots and training checks")
    group.addoption(
        "--modelviz",
        action="store_true",
        default=None,
        help="Persist, render and attach model artifacts; write the run report (ini: modelviz).",
    )
    group.addoption(
        "--modelviz-dir",
        default=None,
        metavar="DIR",
        help="Folder for runs; each run gets a sub-folder and DIR/latest points at it "
        "(default: .modelviz; ini: modelviz_dir).",
    )
    group.addoption(
        "--modelviz-device",
        default=None,
        metavar="DEVICE",
        help="Device for short_train: auto, cpu, cuda or cuda:N (default: auto; ini: modelviz_device).",
    )
    group.addoption(
        "--modelviz-visdom",
        default=None,
        metavar="MODE",
        help="visdom_client mode: offline (replayable log, default), server (start a loopback "
        "server for the session) or a URL of a running server (ini: modelviz_visdom).",
    )
    group.addoption(
        "--modelviz-full-diff",
        action="store_true",
        default=None,
        help="Show the whole raw text diff of a changed architecture snapshot, not a capped one.",
    )
    group.addoption(
        "--modelviz-job",
        default=None,
        metavar="NAME",
        help="Name of this CI job (e.g. cpu-1, gpu), shown beside each test when run folders are merged "
        "(default: $MODELVIZ_JOB, else $GITHUB_JOB plus the values of $MODELVIZ_MATRIX; ini: modelviz_job).",
    )
    group.addoption(
        "--modelviz-junit-paths",
        default=None,
        choices=JUNIT_PATHS,
        help="JUnit XML attachment paths: relative to the working directory (default; GitLab reads "
        "these) or absolute (ini: modelviz_junit_paths).",
    )
    # "bool" is pytest's type tag (pytest 8 takes tags only). pytest 9 also takes a type there, so
    # mypy may read the tag as a string annotation: it does on a cold cache, not on a warm one.
    parser.addini("modelviz", "Same as --modelviz.", type="bool", default=False)  # type: ignore[maybe-unrecognized-str-typeform, unused-ignore]
    parser.addini("modelviz_dir", "Same as --modelviz-dir.", default=".modelviz")
    parser.addini("modelviz_device", "Same as --modelviz-device.", default="auto")
    parser.addini("modelviz_visdom", "Same as --modelviz-visdom.", default="offline")
    parser.addini("modelviz_job", "Same as --modelviz-job.", default="")
    parser.addini("modelviz_junit_paths", "Same as --modelviz-junit-paths.", default="relative")
    parser.addini(
        "modelviz_log_every",
        "short_train logs histograms and images every N steps (default 10).",
        type=_typed("int"),
        default=10,
    )
    parser.addini(
        "modelviz_keep_runs",
        "Run folders to keep in the modelviz dir, newest first; 0 keeps every run (default 5).",
        type=_typed("int"),
        default=5,
    )
    parser.addini(
        "modelviz_param_rtol",
        "Default relative tolerance of parameter-statistics snapshots (default 1e-4).",
        type=_typed("float"),
        default=1e-4,
    )
    parser.addini(
        "modelviz_param_atol",
        "Default absolute tolerance of parameter-statistics snapshots (default 1e-6).",
        type=_typed("float"),
        default=1e-6,
    )
    parser.addini(
        "modelviz_train_rtol",
        "Default relative tolerance of training-dynamics snapshots (default 1e-2).",
        type=_typed("float"),
        default=1e-2,
    )
    parser.addini(
        "modelviz_train_atol",
        "Default absolute tolerance of training-dynamics snapshots (default 1e-6).",
        type=_typed("float"),
        default=1e-6,
    )
    parser.addini(
        "modelviz_gpu_marker",
        "Name of the marker that runs a test on CUDA (default gpu). Set it when the project "
        "registers a gpu marker of its own.",
        default=None,
    )


def _typed(kind: Literal["int", "float"]) -> Literal["int", "float"] | None:
    """The ini type of a number option: pytest >= 8.4 checks it itself (and its native TOML table
    ``[tool.pytest]`` accepts only values of the declared type); older pytest knows no number
    types and reads every value as a string, which ``_number`` parses."""
    import pytest

    return kind if pytest.version_tuple >= (8, 4) else None


def _pick(config: pytest.Config, option: str, ini: str) -> object:
    value = config.getoption(option)
    return config.getini(ini) if value is None else value


_KIND_WORDS = {int: "an integer", float: "a number"}


def _number(config: pytest.Config, ini: str, kind: type[int] | type[float]) -> float:
    import pytest

    try:
        raw = config.getini(ini)
    except (pytest.UsageError, ValueError, TypeError) as exc:
        # pytest's own check of a typed value (a UsageError from pytest 9, a ValueError in 8.4),
        # whose message may not name the key.
        text = str(exc)
        message = text if ini in text else f"ini option {ini} must be {_KIND_WORDS[kind]}: {text}"
        raise ValueError(message) from None
    try:
        if isinstance(raw, bool):  # True is an int to Python, not to a user
            raise TypeError
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"ini option {ini} must be {_KIND_WORDS[kind]}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"ini option {ini} must be a finite number >= 0, got {raw!r}")
    return value


# pytest's own markers: naming one of them would change what every such test means.
_PYTEST_MARKERS = frozenset({"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings"})


def _marker_name(raw: object) -> str | None:
    import keyword

    import pytest

    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    name = str(raw).strip()
    if not name.isidentifier() or keyword.iskeyword(name) or name in _PYTEST_MARKERS:
        raise pytest.UsageError(
            "ini option modelviz_gpu_marker must be a marker name usable as @pytest.mark.NAME and "
            f"in -m (a Python identifier, not a keyword nor one of pytest's own markers), got {name!r}"
        )
    return name


def job_name(configured: str, environ: Mapping[str, str]) -> str:
    """The job a run is: as configured, else ``MODELVIZ_JOB``, else GitHub's job id with the values
    of ``MODELVIZ_MATRIX`` (``${{ toJSON(matrix) }}``: GitHub gives matrix values to no variable of
    its own). Reduced to characters safe in a folder name; "" when nothing names it."""
    name = configured.strip() or environ.get("MODELVIZ_JOB", "").strip()
    if not name and environ.get("GITHUB_JOB", "").strip():
        parts = [environ["GITHUB_JOB"].strip(), *_matrix_values(environ.get("MODELVIZ_MATRIX", ""))]
        name = "-".join(p for p in parts if p)
    return _JOB_UNSAFE.sub("_", name).strip("._-")[:60]


def _matrix_values(text: str) -> list[str]:
    import json

    try:
        matrix = json.loads(text) if text.strip() else {}
    except ValueError:
        return [text.strip()]  # not JSON: a plain value the workflow chose
    if isinstance(matrix, dict):
        return [str(matrix[k]) for k in sorted(matrix) if not isinstance(matrix[k], (dict, list))]
    return [str(matrix)]


def load_settings(config: pytest.Config) -> Settings:
    """Read and validate every option; a bad value is a usage error naming the option."""
    import pytest

    device = str(_pick(config, "modelviz_device", "modelviz_device")).strip()
    if not DEVICE_PATTERN.match(device):
        raise pytest.UsageError(
            f"--modelviz-device must be auto, cpu, cuda or cuda:N (N a number), got {device!r}"
        )
    visdom = str(_pick(config, "modelviz_visdom", "modelviz_visdom")).strip()
    if visdom not in VISDOM_MODES and not re.match(r"^https?://[^/\s]+", visdom):
        raise pytest.UsageError(
            "--modelviz-visdom must be 'offline', 'server' or a URL like http://localhost:8097, "
            f"got {visdom!r}"
        )
    try:
        log_every = int(_number(config, "modelviz_log_every", int))
        rtol = float(_number(config, "modelviz_param_rtol", float))
        atol = float(_number(config, "modelviz_param_atol", float))
        train_rtol = float(_number(config, "modelviz_train_rtol", float))
        train_atol = float(_number(config, "modelviz_train_atol", float))
        keep_runs = int(_number(config, "modelviz_keep_runs", int))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if log_every < 1:
        raise pytest.UsageError(f"ini option modelviz_log_every must be >= 1, got {log_every}")
    gpu_marker = _marker_name(config.getini("modelviz_gpu_marker"))
    import os

    junit_paths = str(_pick(config, "modelviz_junit_paths", "modelviz_junit_paths")).strip()
    if junit_paths not in JUNIT_PATHS:
        raise pytest.UsageError(f"ini option modelviz_junit_paths must be relative or absolute, got {junit_paths!r}")
    base = Path(str(_pick(config, "modelviz_dir", "modelviz_dir"))).expanduser()
    if not base.is_absolute():
        base = Path(config.rootpath) / base
    return Settings(
        enabled=bool(_pick(config, "modelviz", "modelviz")),
        base_dir=base,
        device=device,
        visdom=visdom,
        log_every=log_every,
        param_rtol=rtol,
        param_atol=atol,
        full_diff=bool(config.getoption("modelviz_full_diff")),
        keep_runs=keep_runs,
        gpu_marker=gpu_marker,
        train_rtol=train_rtol,
        train_atol=train_atol,
        job=job_name(str(_pick(config, "modelviz_job", "modelviz_job") or ""), os.environ),
        junit_paths=junit_paths,
    )
