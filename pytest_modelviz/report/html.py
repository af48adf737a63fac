"""Write ``report.html`` for a run folder (placeholder until the full report lands)."""

from __future__ import annotations

import html
import json
from pathlib import Path


def write_report(run_dir: Path) -> Path:
    data = json.loads((run_dir / "outcomes.json").read_text(encoding="utf-8"))
    rows = "".join(
        f"<tr><td>{html.escape(t['nodeid'])}</td><td>{html.escape(t['outcome'])}</td></tr>" for t in data["tests"]
    )
    path = run_dir / "report.html"
    path.write_text(f"<!doctype html><meta charset=utf-8><table>{rows}</table>", encoding="utf-8")
    return path
