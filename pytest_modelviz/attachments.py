"""Attach a test's artifacts to its report: pytest-html extras, JUnit attachment lines, summary.

pytest-html is never imported: its extras are plain dicts of a documented shape, so building them
here costs nothing when pytest-html is not installed.
"""

from __future__ import annotations

import base64
import os
import shlex
from pathlib import Path
from typing import Any

_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_TEXT_TYPES = {".dot": "text/plain", ".txt": "text/plain", ".diff": "text/plain", ".json": "application/json"}
MAX_INLINE_IMAGE = 2 * 1024 * 1024
MAX_INLINE_TEXT = 256 * 1024


def _extra(content: str, format_type: str, name: str, mime: str | None, ext: str | None) -> dict[str, Any]:
    # The shape of pytest_html.extras.extra(); kept here so pytest-html stays optional.
    return {"name": name, "format_type": format_type, "content": content, "mime_type": mime, "extension": ext}


def html_extras(files: list[Path], test_dir: Path, report_dir: Path | None) -> list[dict[str, Any]]:
    """pytest-html extras for ``files``: small images and texts inline, everything else linked.

    Links are relative to the HTML report's folder so that report and run folder move together.
    """
    extras = []
    for path in files:
        name = path.relative_to(test_dir).as_posix()
        suffix = path.suffix.lower()
        size = path.stat().st_size
        if suffix in _IMAGE_TYPES and size <= MAX_INLINE_IMAGE:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            extras.append(_extra(data, "image", name, _IMAGE_TYPES[suffix], suffix[1:]))
        elif suffix in _TEXT_TYPES and size <= MAX_INLINE_TEXT:
            text = path.read_text(encoding="utf-8", errors="replace")
            fmt = "json" if suffix == ".json" else "text"
            extension = suffix[1:] if fmt == "json" else "txt"
            extras.append(_extra(text, fmt, name, _TEXT_TYPES[suffix], extension))
        else:
            start = report_dir if report_dir is not None else test_dir
            extras.append(_extra(Path(os.path.relpath(path, start)).as_posix(), "url", name, None, None))
    return extras


def link_extras(paths: list[Path], test_dir: Path, report_dir: Path | None,
                note: str = "") -> list[dict[str, Any]]:
    """pytest-html links to ``paths``, relative to the HTML report's folder (files may not exist yet)."""
    start = report_dir if report_dir is not None else test_dir
    return [
        _extra(Path(os.path.relpath(p, start)).as_posix(), "url", p.relative_to(test_dir).as_posix() + note,
               None, None)
        for p in paths
    ]


def junit_lines(files: list[Path], relative_to: Path | None = None) -> str:
    """``[[ATTACHMENT|path]]`` lines, as Jenkins' junit-attachments and GitLab read them: paths
    relative to ``relative_to`` (GitLab resolves them from the project folder), else absolute."""
    def shown(path: Path) -> str:
        if relative_to is None:
            return str(path.resolve())
        return Path(os.path.relpath(path.resolve(), relative_to.resolve())).as_posix()

    return "".join(f"[[ATTACHMENT|{shown(path)}]]\n" for path in files)


def tensorboard_command(run_dir: Path) -> str:
    return f"tensorboard --logdir {shlex.quote(str(run_dir))}"


def summary_lines(run_dir: Path, n_files: int, report: Path | None) -> list[str]:
    lines = [f"modelviz: run folder {run_dir} ({n_files} artifact{'s' if n_files != 1 else ''})"]
    if report is not None:
        lines.append(f"modelviz: report {report}")
    lines.append(f"modelviz: open in TensorBoard: {tensorboard_command(run_dir)}")
    return lines
