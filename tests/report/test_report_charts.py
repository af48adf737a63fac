"""The report's inline SVG charts."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_modelviz.report.charts import Series, format_number, line_chart, nice_ticks


def test_nice_ticks_cover_the_range() -> None:
    ticks = nice_ticks(0.37, 2.31, 4)
    assert ticks[0] <= 0.37 and ticks[-1] >= 2.31
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
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


EDGE_VALUES = [0.0, -0.0, 5e-324, -5e-324, 1e-300, 1e-20, 0.3, 0.1 + 0.2, 1.0, -1.0, 1e15, 1e15 + 1,
               1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308]


def _in_child(call: str) -> str:
    """Run ``call`` (a function of this module) in a child Python with a memory cap and a time
    limit: a tick loop that never ends (it once grew memory by ~90 MB/s) fails the test instead
    of hanging the suite."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))\n"
        f"import test_report_charts as t; print(t.{call})"
    )
    if sys.platform == "win32":
        code = code.replace("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))\n", "")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{call} did not return")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_near_equal_values_do_not_hang() -> None:
    """0.3 and 0.1 + 0.2 are one ulp apart: the tick loop once never ended."""
    ticks = [float(t) for t in _in_child("nice_ticks(0.3, 0.1 + 0.2, 4)").strip("[]").split(",")]
    assert ticks[0] <= 0.3 and ticks[-1] >= 0.1 + 0.2 and len(ticks) <= 7


def test_the_float_limits_do_not_raise() -> None:
    ticks = nice_ticks(1e308, -1e308)
    assert ticks[0] <= -1e308 and ticks[-1] >= 1e308 and all(math.isfinite(t) for t in ticks)


def test_ticks_are_bounded_and_cover_every_pair_of_edge_values() -> None:
    assert _in_child("sweep_ticks()") == "checked 1539"


def test_charts_of_edge_values_are_valid_svg_with_finite_coordinates() -> None:
    assert _in_child("sweep_charts()") == "checked 361"


def sweep_ticks() -> str:
    checked = 0
    for lo in EDGE_VALUES:
        for hi in EDGE_VALUES:
            for count in (0, 1, 2, 4, 6, 10**9):
                ticks = nice_ticks(lo, hi, count)
                assert ticks[0] <= min(lo, hi) and ticks[-1] >= max(lo, hi), (lo, hi, count, ticks)
                assert len(ticks) <= min(max(count, 2), 50) + 3, (lo, hi, count, ticks)
                assert ticks == sorted(set(ticks)) and all(math.isfinite(t) for t in ticks), (lo, hi, ticks)
                checked += 1
    for bad in (math.nan, math.inf, -math.inf):
        assert nice_ticks(bad, 1.0) == [] and nice_ticks(0.0, bad) == []
        checked += 1
    return f"checked {checked}"


def sweep_charts() -> str:
    ns = "{http://www.w3.org/2000/svg}"
    values = [*EDGE_VALUES, math.nan, math.inf, -math.inf]
    checked = 0
    for a in values:
        for b in values:
            svg = line_chart([Series("y", ((0, a), (1, b))), Series("x", ((a, b), (b, a)))], title="t")
            root = ET.fromstring(svg)
            for el in root.iter():
                for attr in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy"):
                    if attr in el.attrib:
                        assert math.isfinite(float(el.attrib[attr])), (a, b, el.tag, el.attrib)
                for point in el.attrib.get("points", "").split():
                    assert all(math.isfinite(float(c)) for c in point.split(",")), (a, b, point)
            assert not list(root.iter(f"{ns}script"))
            checked += 1
    return f"checked {checked}"


def test_a_standalone_chart_file_is_styled_and_escapes_its_title() -> None:
    from pytest_modelviz.report.charts import CHART_CSS, chart_document

    charts = [line_chart([Series("a", ((0, 1.0), (1, 0.5)))], title=f"t{i}") for i in range(2)]
    doc = chart_document(charts, title='<run> & "x"')
    root = ET.fromstring(doc.split("\n", 1)[1])
    ns = "{http://www.w3.org/2000/svg}"
    assert root.find(f"{ns}title").text == '<run> & "x"'
    assert CHART_CSS in root.find(f"{ns}style").text  # styled on its own, as an <img> or opened alone
    assert [s.get("y") for s in root.findall(f"{ns}svg")] == ["0", str(240 + 8)]  # stacked
    assert root.get("height") == str(2 * 240 + 8)


def test_training_curves_are_one_svg_with_every_name_escaped() -> None:
    from types import SimpleNamespace

    from pytest_modelviz.train.curves import curves_svg

    hostile = '<script>alert(1)</script> & "$\\notacommand$"'
    result = SimpleNamespace(name=hostile, losses=[2.0, 1.0, math.nan, 0.5],
                             eval={hostile: [(0, 1e308), (2, -1e308)], "acc": [(0, 0.1), (3, 0.9)]})
    svg = curves_svg(result)
    assert "<script>" not in svg
    root = ET.fromstring(svg.split("\n", 1)[1])
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert f"{hostile}: training loss" in texts and f"{hostile}: evaluation" in texts
    assert _clip_of(f"{hostile} train loss") in texts and "acc" in texts
    assert [t.text for t in root.iter(f"{ns}title")][1:] == [f"{hostile} train loss: NaN at step 2"]


def _clip_of(text: str, n: int = 22) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"
