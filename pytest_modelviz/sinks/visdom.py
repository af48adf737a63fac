"""``MetricSink`` on a visdom client: one window per tag, with window ids derived from the tag,
so a rerun or a replay redraws the same windows instead of adding random ones."""

from __future__ import annotations

import hashlib
import html
import re
from typing import TYPE_CHECKING, Any, Mapping

from pytest_modelviz.sinks.base import Histogram

if TYPE_CHECKING:
    import torch

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def window_id(kind: str, tag: str) -> str:
    """``<kind>-<readable tag>-<hash>``: the hash keeps ``a/b`` and ``a_b`` apart."""
    readable = _UNSAFE.sub("_", tag).strip("_")[:60] or "tag"
    digest = hashlib.sha1(f"{kind}\0{tag}".encode("utf-8")).hexdigest()[:8]
    return f"{kind}-{readable}-{digest}"


class VisdomSink:
    """Logs to ``client``'s env: ``scalars`` as one appended line per tag, ``histogram`` as bars
    of the latest counts, ``image_grid`` as an image, ``heatmap`` and ``text`` as themselves."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lines: set[str] = set()  # line windows this sink has created

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        import numpy as np

        for tag, value in values.items():
            win = window_id("line", tag)
            first = win not in self._lines
            # The first point creates the window with its layout (title, axis labels); later
            # points only append, since visdom drops the layout of appends.
            self.client.line(
                Y=np.asarray([float(value)]),
                X=np.asarray([int(step)]),
                win=win,
                update=None if first else "append",
                opts={"title": tag, "xlabel": "step", "ylabel": tag.rsplit("/", 1)[-1]},
            )
            self._lines.add(win)

    def histogram(self, step: int, tag: str, hist: Histogram) -> None:
        import numpy as np

        edges = np.asarray(hist.edges, dtype=float)
        counts = np.asarray(hist.counts, dtype=float)
        if len(edges) != len(counts) + 1 or len(counts) == 0:
            raise ValueError(
                f"histogram {tag!r} at step {step}: needs len(edges) == len(counts) + 1 and at "
                f"least one bin, got {len(edges)} edges and {len(counts)} counts"
            )
        centers = (edges[:-1] + edges[1:]) / 2
        # One bar chart per tag showing the latest step; the step is in the title.
        self.client.bar(
            X=counts,
            Y=centers,
            win=window_id("hist", tag),
            opts={"title": f"{tag} (step {step})", "xlabel": "value", "ylabel": "count"},
        )

    def image_grid(self, step: int, tag: str, grid: torch.Tensor) -> None:
        self.client.image(
            grid.detach().cpu().float().clamp(0, 1).numpy(),
            win=window_id("image", tag),
            opts={"title": tag, "caption": f"{tag} (step {step})"},
        )

    def heatmap(self, step: int, tag: str, matrix: torch.Tensor) -> None:
        if matrix.dim() != 2:
            raise ValueError(f"heatmap {tag!r} at step {step}: needs a 2-D matrix, got shape {tuple(matrix.shape)}")
        self.client.heatmap(
            X=matrix.detach().cpu().float().numpy(),
            win=window_id("heatmap", tag),
            opts={"title": f"{tag} (step {step})"},
        )

    def text(self, tag: str, text: str) -> None:
        # visdom renders text windows as HTML: escape, and keep line breaks and spacing.
        self.client.text(
            f"<b>{html.escape(tag)}</b><pre>{html.escape(text)}</pre>",
            win=window_id("text", tag),
            opts={"title": tag},
        )

    def close(self) -> None:
        """Nothing to flush: every call is sent (or logged) when made."""
