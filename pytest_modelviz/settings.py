"""Command-line options and ini keys, resolved once into a plain ``Settings`` record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
VISDOM_MODES = ("offline", "server")


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
    parser.addini("modelviz", "Same as --modelviz.", type="bool", default=False)
    parser.addini("modelviz_dir", "Same as --modelviz-dir.", default=".modelviz")
    parser.addini("modelviz_device", "Same as --modelviz-device.", default="auto")
    parser.addini("modelviz_visdom", "Same as --modelviz-visdom.", default="offline")
    parser.addini(
        "modelviz_log_every",
        "short_train logs histograms and images every N steps (default 10).",
        default="10",
    )
    parser.addini(
        "modelviz_param_rtol",
        "Default relative tolerance of parameter-statistics snapshots (default 1e-4).",
        default="1e-4",
    )
    parser.addini(
        "modelviz_param_atol",
        "Default absolute tolerance of parameter-statistics snapshots (default 1e-6).",
        default="1e-6",
    )


def _pick(config: pytest.Config, option: str, ini: str) -> object:
    value = config.getoption(option)
    return config.getini(ini) if value is None else value


def _number(config: pytest.Config, ini: str, kind: type) -> float:
    raw = config.getini(ini)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"ini option {ini} must be a {kind.__name__}, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"ini option {ini} must not be negative, got {raw!r}")
    return value


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
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if log_every < 1:
        raise pytest.UsageError(f"ini option modelviz_log_every must be >= 1, got {log_every}")
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
    )
