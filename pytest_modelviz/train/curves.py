"""The loss and metric curves of a run as a PNG for the report, drawn by hiddenlayer.

hiddenlayer's ``Canvas`` draws with matplotlib and then pauses and shows the figure as if on a
screen; here it draws on the Agg backend and the figure is saved and closed, never shown.
Names are drawn as written: a run or metric called ``$\\alpha$`` is text, not mathtext (which
fails on ``$\\notacommand$``), and values too large for matplotlib's axes are drawn clamped.
"""

from __future__ import annotations

import io
import math
import sys
import warnings
from typing import TYPE_CHECKING, Iterable

from pytest_modelviz.render.outcome import LITERAL_TEXT

if TYPE_CHECKING:
    from pytest_modelviz.train.result import TrainResult

# matplotlib's tick locator overflows on an axis spanning more than float64 can hold
# ([1e308, -1e308]); values beyond this are drawn at it (the record keeps the true values).
PLOT_LIMIT = 1e300


def curves_png(result: TrainResult) -> bytes:
    """``train loss`` per step, and the eval metrics at their steps, as PNG bytes."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # never pick a GUI backend for a test run
    import hiddenlayer as hl
    import matplotlib.pyplot as plt

    train = hl.History()
    for step, (loss, lr) in enumerate(zip(plottable(result.losses), result.lrs)):
        train.log(step, loss=loss, lr=lr)
    evaluated = hl.History()
    for metric, points in result.eval.items():
        for step, value in zip((s for s, _ in points), plottable(v for _, v in points)):
            evaluated.log(step, **{metric: value})
    canvas = hl.Canvas()
    png = io.BytesIO()
    try:
        with matplotlib.rc_context(LITERAL_TEXT), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "FigureCanvasAgg is non-interactive, and thus cannot be shown"
            with canvas:
                canvas.draw_plot([train["loss"]], labels=[f"{result.name} train loss"], ylabel="loss")
                if result.eval:
                    metrics = sorted(result.eval)
                    canvas.draw_plot([evaluated[m] for m in metrics], labels=metrics, ylabel="eval")
            canvas.figure.savefig(png, format="png")
    finally:
        if canvas.figure is not None:  # also when drawing failed: pyplot keeps every open figure
            plt.close(canvas.figure)
    return png.getvalue()


def clamped_series(result: TrainResult) -> list[str]:
    """The curves with a value that ``plottable`` clamps, to say so beside the picture."""
    series = {"train loss": result.losses, **{m: [v for _, v in points] for m, points in result.eval.items()}}
    return [name for name, values in series.items() if any(math.isfinite(v) and abs(v) > PLOT_LIMIT for v in values)]


def plottable(values: Iterable[float]) -> list[float]:
    """Finite values clamped to ``PLOT_LIMIT``; NaN and infinities pass (matplotlib skips them)."""
    return [max(-PLOT_LIMIT, min(PLOT_LIMIT, v)) if math.isfinite(v) else v for v in values]
