"""The loss and metric curves of a run as a PNG for the report, drawn by hiddenlayer.

hiddenlayer's ``Canvas`` draws with matplotlib and then pauses and shows the figure as if on a
screen; here it draws on the Agg backend and the figure is saved and closed, never shown.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_modelviz.train.result import TrainResult


def write_curves_png(result: TrainResult, path: Path) -> Path:
    """Draw ``train loss`` per step, and the eval metrics at their steps, into ``path``."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # never pick a GUI backend for a test run
    import hiddenlayer as hl
    import matplotlib.pyplot as plt

    train = hl.History()
    for step, (loss, lr) in enumerate(zip(result.losses, result.lrs)):
        train.log(step, loss=loss, lr=lr)
    evaluated = hl.History()
    for metric, points in result.eval.items():
        for step, value in points:
            evaluated.log(step, **{metric: value})
    canvas = hl.Canvas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "FigureCanvasAgg is non-interactive, and thus cannot be shown"
        with canvas:
            canvas.draw_plot([train["loss"]], labels=[f"{result.name} train loss"], ylabel="loss")
            if result.eval:
                metrics = sorted(result.eval)
                canvas.draw_plot([evaluated[m] for m in metrics], labels=metrics, ylabel="eval")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(str(path))
    finally:
        plt.close(canvas.figure)
    return path
