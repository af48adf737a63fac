"""Turning DOT text into SVG and PNG with a Graphviz binary found on this machine.

The Python ``graphviz`` package only writes DOT; drawing needs a ``dot`` executable, which many CI
images lack. ``graphviz-pure`` (a pip-installable port with the same flags) fills that gap, so the
search is: ``$MODELVIZ_GRAPHVIZ`` if set (empty turns rendering off), else ``dot`` on PATH, else
``graphviz-pure`` on PATH or next to the running Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_modelviz.errors import RenderError

ENV_VAR = "MODELVIZ_GRAPHVIZ"
PURE_NAME = "graphviz-pure"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_TIMEOUT_S = 120.0

NO_RENDERER_NOTE = (
    "No Graphviz renderer found, so only .dot files were written. To get SVG/PNG pictures, "
    f"`pip install {PURE_NAME}` (pure Python wheel, no system packages) or "
    "`apt-get install graphviz` (or `brew install graphviz`) so that `dot` is on PATH; "
    f"or point {ENV_VAR} at a dot executable."
)
DISABLED_NOTE = f"Graphviz rendering is turned off ({ENV_VAR} is set to an empty value); only .dot files were written."

RendererKind = Literal["dot", "graphviz-pure"]
ImageFormat = Literal["svg", "png"]


@dataclass(frozen=True)
class Renderer:
    """A Graphviz executable and which of the two known kinds it is."""

    path: Path
    kind: RendererKind


def find_renderer(environ: Mapping[str, str] | None = None) -> Renderer | None:
    """The Graphviz binary to use, or None when there is none (or it is turned off).

    Raises ``RenderError`` when ``$MODELVIZ_GRAPHVIZ`` names something that cannot run, since a
    setting that is silently ignored is worse than none.
    """
    env = os.environ if environ is None else environ
    if ENV_VAR in env:
        return _from_setting(env[ENV_VAR].strip())
    found = shutil.which("dot")
    if found:
        return Renderer(Path(found), "dot")
    found = shutil.which(PURE_NAME)
    if found:
        return Renderer(Path(found), "graphviz-pure")
    beside = Path(sys.executable).parent / PURE_NAME
    if _is_executable(beside):
        return Renderer(beside, "graphviz-pure")
    return None


def missing_renderer_note(environ: Mapping[str, str] | None = None) -> str:
    """Why there are no pictures, and how to get them."""
    env = os.environ if environ is None else environ
    return DISABLED_NOTE if env.get(ENV_VAR, "unset").strip() == "" else NO_RENDERER_NOTE


def _from_setting(value: str) -> Renderer | None:
    if not value:
        return None
    found = shutil.which(value)
    if found is None:
        raise RenderError(
            f"{ENV_VAR}={value!r} is not an executable file or a command on PATH. Point it at "
            f"Graphviz's `dot` or at `{PURE_NAME}`, or set it empty to turn rendering off."
        )
    kind: RendererKind = "graphviz-pure" if Path(found).name.startswith(PURE_NAME) else "dot"
    return Renderer(Path(found), kind)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def render_file(renderer: Renderer, dot_path: Path, fmt: ImageFormat, *,
                timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Render ``dot_path`` to ``<same stem>.<fmt>`` next to it and check the result is sound.

    Raises ``RenderError`` naming the file, the renderer and its message when the renderer fails,
    times out, or writes something that is not a well-formed SVG/PNG.
    """
    out = dot_path.with_suffix(f".{fmt}")
    cmd = [str(renderer.path), f"-T{fmt}", "-o", str(out), str(dot_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        out.unlink(missing_ok=True)
        raise RenderError(
            f"{renderer.kind} took longer than {timeout:.0f}s to draw {dot_path.name} as {fmt}; "
            "the graph may be too large to lay out. The .dot file is kept; open it with any "
            "Graphviz viewer."
        ) from None
    except OSError as exc:
        raise RenderError(f"could not run {renderer.path} ({exc}); check {ENV_VAR} or reinstall Graphviz") from exc
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        stderr = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise RenderError(
            f"{renderer.kind} failed to draw {dot_path.name} as {fmt} (exit {proc.returncode}): "
            f"{stderr or 'no message'}"
        )
    check_output(out, fmt)
    return out


def check_output(path: Path, fmt: str) -> None:
    """Raise ``RenderError`` unless ``path`` holds a well-formed SVG document or a PNG image."""
    if not path.is_file() or path.stat().st_size == 0:
        raise RenderError(f"the renderer reported success but wrote no {fmt} file at {path.name}")
    if fmt == "png":
        with path.open("rb") as fh:
            if fh.read(len(PNG_MAGIC)) != PNG_MAGIC:
                raise RenderError(f"{path.name} does not start with the PNG signature")
    elif fmt == "svg":
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise RenderError(f"{path.name} is not well-formed XML: {exc}") from exc
        if not root.tag.endswith("svg"):
            raise RenderError(f"{path.name} is XML but its root element is <{root.tag}>, not <svg>")
