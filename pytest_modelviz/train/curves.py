"""The loss and metric curves of a run as one standalone SVG, drawn by the report's own charts.

Pure Python (a few milliseconds, no plotting library), so the picture costs a training test
nothing and exists whatever extras are installed. Every name (run, metric) is user text and is
escaped by the chart code; non-finite values break the line and are marked, huge ones are drawn
on axes that span them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_modelviz.report.charts import Series, chart_document, line_chart

if TYPE_CHECKING:
    from pytest_modelviz.train.result import TrainResult

CURVES_FILE = "curves.svg"


def curves_svg(result: TrainResult) -> str:
    """``train loss`` per step and the eval metrics at their steps, as an SVG document."""
    # losses[i] is the loss of step i, the 0-based numbering eval points and TensorBoard use.
    loss = Series(f"{result.name} train loss", tuple((float(i), float(v)) for i, v in enumerate(result.losses)))
    charts = [line_chart([loss], title=f"{result.name}: training loss", y_label="loss")]
    if result.eval:
        metrics = [Series(m, tuple((float(s), float(v)) for s, v in result.eval[m])) for m in sorted(result.eval)]
        charts.append(line_chart(metrics, title=f"{result.name}: evaluation", y_label="eval"))
    return chart_document(charts, title=f"training curves of {result.name}")
