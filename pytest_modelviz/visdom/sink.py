"""``MetricSink`` on a visdom client: one window per tag (per-layer scalars ``a/b/<layer>`` share
the window ``a/b``, one line per layer), with window ids derived from the tag,
so a rerun or a replay redraws the same windows instead of adding random ones.

Every call to the visdom client is a JSON encoding, a write to the event log and, with a server, an
HTTP post: with ``flush_secs`` (what ``short_train``'s fixture uses) a training step only buffers
(new line points, the latest histogram and heatmap of each tag), and the buffered windows are sent
together every ``flush_secs`` and at ``close``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_modelviz.sink import Histogram

if TYPE_CHECKING:
    import numpy as np
    import torch

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
FLUSH_SECS = 2.0  # what short_train's fixture buffers for: windows are sent this often, and at close


def window_id(kind: str, tag: str) -> str:
    """``<kind>-<readable tag>-<hash>``: the hash keeps ``a/b`` and ``a_b`` apart."""
    readable = _UNSAFE.sub("_", tag).strip("_")[:60] or "tag"
    digest = hashlib.sha1(f"{kind}\0{tag}".encode()).hexdigest()[:8]
    return f"{kind}-{readable}-{digest}"


def line_window(tag: str) -> tuple[str, str | None]:
    """The window a scalar tag is drawn in, and its line's name there: ``a/b`` has a window of its
    own; ``health/b/c`` (per-layer scalars such as ``health/grad_norm/fc1``) is line ``c`` of window
    ``health/b``, so a model's layers share one window per metric instead of one window each."""
    parts = tag.split("/")
    # Only per-layer health tags: other three-part tags (``train/loss/rank1``) sit beside a
    # two-part tag of the same window name (``train/loss``), whose own line has no name.
    if len(parts) < 3 or parts[0] != "health":
        return tag, None
    return "/".join(parts[:2]), "/".join(parts[2:])


def principal_components(features: np.ndarray, k: int) -> np.ndarray:
    """``features`` (rows, dims) projected on their first ``k`` principal axes, ``(rows, k)``.

    An exact SVD (no random projections, so no RNG is used and reruns draw the same picture), each
    axis signed so its largest loading is positive; missing axes (fewer rows or dims than ``k``)
    are zeros.
    """
    import numpy as np

    if features.ndim != 2:
        raise ValueError(f"principal_components needs a (rows, dims) matrix, got shape {features.shape}")
    out = np.zeros((features.shape[0], k))
    if features.shape[0] == 0 or features.shape[1] == 0:
        return out
    centered = features - features.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    axes = vt[:k]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    out[:, : len(axes)] = centered @ axes.T
    return out


class VisdomSink:
    """Logs to ``client``'s env: ``scalars`` as one appended line per tag, ``histogram`` as bars
    of the latest counts, ``image_grid`` as an image, ``embedding`` as a scatter of its first two
    principal components, ``heatmap`` and ``text`` as themselves.

    By default every call is sent when made. With ``flush_secs`` > 0, lines, histograms and
    heatmaps are buffered and sent every ``flush_secs`` and at ``close`` (``flush`` sends them
    now), and the other calls are sent when made.
    """

    def __init__(self, client: Any, flush_secs: float = 0.0) -> None:
        self.client = client
        self.flush_secs = flush_secs
        self._lines: set[str] = set()  # line windows this sink has created
        self._points: dict[str, list[tuple[int, float]]] = {}  # tag -> line points not yet sent
        self._latest: dict[str, Callable[[], None]] = {}  # window -> the call drawing its latest state
        self._flushed = time.monotonic()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self._points.setdefault(tag, []).append((int(step), float(value)))
        self._flush_if_due()

    def histogram(self, step: int, tag: str, hist: Histogram) -> None:
        if len(hist.edges) != len(hist.counts) + 1 or len(hist.counts) == 0:
            raise ValueError(
                f"histogram {tag!r} at step {step}: needs len(edges) == len(counts) + 1 and at "
                f"least one bin, got {len(hist.edges)} edges and {len(hist.counts)} counts"
            )
        # The window shows one step: only the latest histogram of a tag is ever sent.
        self._latest[window_id("hist", tag)] = lambda: self._send_histogram(step, tag, hist)
        self._flush_if_due()

    def flush(self) -> None:
        """Send every buffered line point, histogram and heatmap."""
        points, self._points = self._points, {}
        latest, self._latest = self._latest, {}
        self._flushed = time.monotonic()
        for tag, pairs in points.items():
            self._send_line(tag, pairs)
        for send in latest.values():
            send()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._flushed >= self.flush_secs:
            self.flush()

    def _send_line(self, tag: str, pairs: list[tuple[int, float]]) -> None:
        import numpy as np

        title, trace = line_window(tag)
        win = window_id("line", title)
        first = win not in self._lines
        # The first points create the window with its layout (title, axis labels); later points
        # only append, since visdom drops the layout of appends. A trace name visdom has not seen
        # in the window is added to it as a new line.
        self.client.line(
            Y=np.asarray([v for _, v in pairs], dtype=float),
            X=np.asarray([s for s, _ in pairs]),
            win=win,
            update=None if first else "append",
            name=trace,
            opts={"title": title, "xlabel": "step", "ylabel": title.rsplit("/", 1)[-1],
                  "showlegend": trace is not None},
        )
        self._lines.add(win)

    def _send_histogram(self, step: int, tag: str, hist: Histogram) -> None:
        import numpy as np

        edges = np.asarray(hist.edges, dtype=float)
        counts = np.asarray(hist.counts, dtype=float)
        centers = (edges[:-1] + edges[1:]) / 2
        # One bar chart per tag showing the latest step; the step is in the title.
        self.client.bar(
            X=counts,
            Y=centers,
            win=window_id("hist", tag),
            opts={"title": f"{tag} (step {step})", "xlabel": "value", "ylabel": "count"},
        )

    def image_grid(self, step: int, tag: str, grid: torch.Tensor) -> None:
        """The window ``client.image`` draws, from the PNG the other sinks share (see
        ``pytest_modelviz.png``): sent as the JSON ``image`` builds, through ``_send``, which
        visdom's client documents for callers that build their own message."""
        from pytest_modelviz.png import grid_png

        png = grid_png(grid)
        caption = f"{tag} (step {step})"
        src = "data:image/png;base64," + base64.b64encode(png.data).decode("ascii")
        self.client._send({
            "data": [{"content": {"src": src, "caption": caption}, "type": "image"}],
            "win": window_id("image", tag),
            "eid": None,  # the client's env
            "opts": {"title": tag, "caption": caption, "width": png.width, "height": png.height},
        })

    def heatmap(self, step: int, tag: str, matrix: torch.Tensor) -> None:
        """Sent as given: visdom's client walks every value in Python, so pass a small matrix
        (``short_train`` passes its first 2-D weight block-averaged to at most 32 x 32)."""
        if matrix.dim() != 2:
            raise ValueError(
                f"heatmap {tag!r} at step {step}: needs a 2-D matrix, got shape {tuple(matrix.shape)}")
        values = matrix.detach().float().to("cpu", copy=True).numpy()  # as it is now, not at the flush
        self._latest[window_id("heatmap", tag)] = lambda: self._send_heatmap(step, tag, values)
        self._flush_if_due()

    def _send_heatmap(self, step: int, tag: str, values: np.ndarray) -> None:
        self.client.heatmap(
            X=values,
            win=window_id("heatmap", tag),
            opts={"title": f"{tag} (step {step})"},
        )

    def embedding(self, step: int, tag: str, features: torch.Tensor, labels: Sequence[int] | None,
                  images: torch.Tensor | None) -> None:
        """A scatter of the first two principal components, one colour (and legend entry) per label."""
        import numpy as np

        points = principal_components(features.detach().cpu().double().numpy(), 2)
        opts: dict[str, Any] = {
            "title": f"{tag} (step {step})", "xlabel": "PC 1", "ylabel": "PC 2", "markersize": 5,
        }
        classes = None
        if labels is not None:
            if len(labels) != len(points):
                raise ValueError(
                    f"embedding {tag!r} at step {step}: {len(labels)} labels for {len(points)} rows")
            values = sorted(set(labels))
            index = {v: i + 1 for i, v in enumerate(values)}  # visdom numbers classes from 1
            classes = np.asarray([index[v] for v in labels])
            opts["legend"] = [str(v) for v in values]
        self.client.scatter(X=points, Y=classes, win=window_id("embedding", tag), opts=opts)

    def text(self, tag: str, text: str) -> None:
        # visdom renders text windows as HTML: escape, and keep line breaks and spacing.
        self.client.text(
            f"<b>{html.escape(tag)}</b><pre>{html.escape(text)}</pre>",
            win=window_id("text", tag),
            opts={"title": tag},
        )

    def close(self) -> None:
        """Send what is buffered (nothing is, with ``flush_secs=0``)."""
        self.flush()
