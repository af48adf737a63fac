"""The report's inline SVG charts."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from pytest_modelviz.report.charts import Series, format_number, line_chart, nice_ticks


def test_nice_ticks_cover_the_range() -> None:
    ticks = nice_ticks(0.37, 2.31, 4)
    assert ticks[0] <= 0.37 and ticks[-1] >= 2.31
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert steps == {0.5}
    flat = nice_ticks(1.0, 1.0)
    assert flat[0] <= 1.0 < flat[-1]  # a constant series still gets an axis
    assert nice_ticks(math.nan, 1.0) == []


def test_chart_is_valid_svg_with_escaped_names() -> None:
    svg = line_chart([Series("<b>acc</b>", ((1, 0.1), (2, 0.5), (3, 0.9)))], title="Eval & <test>")
    root = ET.fromstring(svg)  # well-formed XML, so no label broke out of its element
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Eval & <test>" in texts and "<b>acc</b>" in texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) == 1


def test_non_finite_values_break_the_line_and_are_marked() -> None:
    svg = line_chart([Series("loss", ((1, 2.0), (2, 1.0), (3, math.nan), (4, 0.5), (5, 0.4)))], title="loss")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(list(root.iter(f"{ns}polyline"))) == 2
    assert [t.text for t in root.iter(f"{ns}title")] == ["loss: NaN at step 3"]


def test_no_finite_values() -> None:
    svg = line_chart([Series("loss", ((1, math.inf),))], title="loss")
    assert "no finite values" in svg
    ET.fromstring(svg)


def test_format_number() -> None:
    assert format_number(0) == "0"
    assert format_number(0.25) == "0.25"
    assert format_number(1234567) == "1.2e+06"
