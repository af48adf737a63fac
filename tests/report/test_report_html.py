"""The run report from a hand-built run folder: content, escaping, links, robustness."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from fake_report_run import FAILED_ID, HOSTILE, PASSED_ID, SKIPPED_ID, make_run, write_records

from pytest_modelviz.report.html import write_report
from pytest_modelviz.report.read import load_run


class _Refs(HTMLParser):
    """Every src/href in the page, and the text of every <script> element."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path)


@pytest.fixture
def page(run: Path) -> str:
    path = write_report(run)
    assert path == run / "report.html"
    return path.read_text(encoding="utf-8")


def test_summary_counts_and_facts(page: str) -> None:
    assert '<span class="value">3</span><span class="label">tests</span>' in page
    for outcome in ("passed", "failed", "skipped"):
        assert f'<span class="value">1</span><span class="label">{outcome}</span>' in page
    assert '<span class="value">1</span><span class="label">snapshots changed</span>' in page
    assert '<span class="value">12.5 s</span><span class="label">total time</span>' in page
    assert "<dd>cpu</dd>" in page and "<dd>2.14.1</dd>" in page


def test_every_test_is_listed_failures_first(page: str) -> None:
    positions = [page.index(f'data-outcome="{o}"><td>') for o in ("failed", "passed", "skipped")]
    assert positions == sorted(positions)
    assert PASSED_ID in page and SKIPPED_ID in page
    assert "gpu test: CUDA is not available" in page


def test_user_strings_are_escaped(page: str) -> None:
    assert HOSTILE not in page
    assert html.escape(FAILED_ID) in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert page.count(escaped) >= 8  # id, message, model, layer, type, diff, check, metric, record
    parser = _Refs()
    parser.feed(page)
    assert not any("alert" in s for s in parser.scripts), "only the report's own scripts run"


def test_links_are_relative_and_stay_in_the_run_folder(run: Path, page: str) -> None:
    parser = _Refs()
    parser.feed(page)
    files = [r for r in parser.refs if not r.startswith("#")]
    assert files, "the report links to the artifacts"
    for ref in files:
        parsed = urlparse(ref)
        assert not parsed.scheme and not parsed.netloc and not ref.startswith("/"), ref
        assert ".." not in Path(unquote(parsed.path)).parts, ref
        assert (run / unquote(parsed.path)).exists(), f"link to a missing file: {ref}"
    assert "etc/passwd" not in " ".join(files)
    assert "architecture text (missing)" in page


def test_architecture_table_and_diff(page: str) -> None:
    assert "<th>Layer</th><th>Type</th><th>Output shape</th>" in page
    assert '<td class="layer">fc.0</td><td>Linear</td><td class="shape">1×128</td><td class="num">200,832</td>' in page
    assert "206,922 params" in page
    assert "snapshot changed" in page
    assert '<span class="chg">~ conv2: Conv2d(16, 32) -&gt; Conv2d(16, 64)</span>' in page
    assert '<span class="add">+ out 64 &lt;script&gt;' in page


def test_renders_training_and_viewers(run: Path, page: str) -> None:
    passed = load_run(run).tests[0].dirname
    assert f'<img src="{passed}/graph/model.svg"' in page
    # No torchviz picture: its DOT source is shown as text.
    assert "Autograd graph (torchviz): DOT source" in page and "&quot;AddmmBackward0&quot;" in page
    assert page.count('<svg class="chart"') == 5  # loss, eval, grad norm; loss and eval of the failed run
    assert "✓</td><td>loss decreases" in page
    assert f'<img src="{passed}/curves.png"' in page and f'<img src="{passed}/params.png"' in page
    assert f"tensorboard --logdir {passed}/tensorboard" in page
    assert "python -m visdom.replay visdom/events.jsonl" in page
    assert "statistics JSON (missing)" in page


def test_diverged_loss_is_marked(page: str) -> None:
    assert "loss: NaN at step 2" in page and "loss: +inf at step 3" in page
    assert '<tr class="bad"><td>✗</td><td>loss is finite</td>' in page


def test_partial_and_unknown_records(run: Path, page: str) -> None:
    assert "1 record line(s) could not be read" in page
    assert "1 other record(s)" in page and "future_kind" in page


def test_self_contained(page: str) -> None:
    lowered = page.lower()
    assert "<link" not in lowered and "@import" not in lowered and "url(" not in lowered
    parser = _Refs()
    parser.feed(page)
    assert not [r for r in parser.refs if r.startswith(("http:", "https:", "//"))]


def test_without_outcomes_the_test_folders_are_shown(tmp_path: Path) -> None:
    run = make_run(tmp_path, with_outcomes=False)
    page = write_report(run).read_text(encoding="utf-8")
    assert "outcomes.json is missing" in page
    view = load_run(run)
    assert {t.outcome for t in view.tests} == {"unknown"}
    assert len(view.tests) == 2  # the two folders with records; the skipped test left none


def test_empty_run_folder(tmp_path: Path) -> None:
    (tmp_path / "outcomes.json").write_text(json.dumps({"tests": []}), encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "No tests were recorded in this run." in page


def test_hostile_dirname_in_outcomes_is_not_followed(tmp_path: Path) -> None:
    outcomes = {"tests": [{"nodeid": "t", "outcome": "failed", "duration": 0, "dirname": "../..", "message": "m"}]}
    (tmp_path / "outcomes.json").write_text(json.dumps(outcomes), encoding="utf-8")
    view = load_run(tmp_path)
    assert view.tests[0].dirname == ""
    assert '<section class="test failed" id="t-0"' in write_report(tmp_path).read_text(encoding="utf-8")


def test_tests_with_nothing_to_show_get_no_card(tmp_path: Path) -> None:
    outcomes = {"tests": [{"nodeid": "test_plain", "outcome": "passed", "duration": 0.1, "dirname": "plain-0"}]}
    (tmp_path / "outcomes.json").write_text(json.dumps(outcomes), encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<span>test_plain</span>" in page
    assert "<section class=\"test" not in page and 'href="#' not in page


def test_checks_attach_to_the_run_they_name(tmp_path: Path) -> None:
    write_records(
        tmp_path / "t-1",
        {"kind": "train", "name": "first", "losses": [1.0]},
        {"kind": "train", "name": "second", "losses": [1.0]},
        {"kind": "check", "name": "assert_finite", "passed": True, "message": "", "train": "first"},
        {"kind": "check", "name": "assert_loss_decreased", "passed": False, "message": "flat", "train": "second"},
        {"kind": "check", "name": "orphan", "passed": True, "message": "", "train": "gone"},
    )
    outcomes = {"tests": [{"nodeid": "t", "outcome": "failed", "duration": 0, "dirname": "t-1"}]}
    (tmp_path / "outcomes.json").write_text(json.dumps(outcomes), encoding="utf-8")
    test = load_run(tmp_path).tests[0]
    assert [[c.name for c in r.checks] for r in test.trains] == [["assert_finite"], ["assert_loss_decreased"]]
    assert [c.name for c in test.checks] == ["orphan"]


def test_report_is_a_pure_function_of_the_folder(run: Path) -> None:
    first = write_report(run).read_text(encoding="utf-8")
    assert write_report(run).read_text(encoding="utf-8") == first


ISSUE_VARIANTS = {
    "nan-totals": {"kind": "architecture", "name": "n", "totals": {"params": float("nan"), "macs": float("inf")}},
    "rows-not-a-list": {"kind": "architecture", "name": "r", "rows": 5},
    "rows-a-string": {"kind": "architecture", "name": "s", "rows": "conv1"},
    "list-kind": {"kind": ["train"], "losses": [1.0]},
    "huge-losses": {"kind": "train", "name": "h", "losses": [1e308, -1e308, 1e308]},
    "tiny-losses": {"kind": "train", "name": "t", "losses": [0, 5e-324], "eval": {"acc": [[0, 5e-324], [1, 0]]}},
    "equal-losses": {"kind": "train", "name": "e", "losses": [0.3, 0.1 + 0.2], "grad_norms": [1e-320, 1e-320]},
    "bad-steps": {"kind": "train", "name": "b", "steps": float("inf"), "eval": {"acc": "high"}},
    "bad-check": {"kind": "check", "name": ["x"], "passed": "yes", "train": 3},
    "bad-render": {"kind": "graph_render", "name": "g", "files": ["a.svg"], "errors": "boom", "note": {"a": 1}},
    "bad-visdom": {"kind": "visdom", "env": {"e": 1}, "json": ["../../x"], "windows": float("nan")},
    "bad-params": {"kind": "params", "name": "p", "mismatches": "std", "plot": 5, "stats": "/etc/passwd"},
}


def test_tampered_records_show_what_they_can(tmp_path: Path) -> None:
    tests = []
    for name, record in ISSUE_VARIANTS.items():
        dirname = f"{name}-0123456789"
        write_records(tmp_path / dirname, record)
        tests.append({"nodeid": f"t::{name}", "outcome": "passed", "duration": 0.1, "dirname": dirname})
    write_records(tmp_path / "deep-0123456789", tail="[" * 100_000 + "]" * 100_000 + "\n")
    tests.append({"nodeid": "t::deep", "outcome": "passed", "duration": 0.1, "dirname": "deep-0123456789"})
    outcomes = {"started": float("nan"), "finished": 1e308, "snapshot_changes": float("inf"), "tests": tests}
    (tmp_path / "outcomes.json").write_text(json.dumps(outcomes), encoding="utf-8")

    page = write_report(tmp_path).read_text(encoding="utf-8")  # raised in 8 of these before
    parser = _Refs()
    parser.feed(page)
    assert "/etc/passwd" not in " ".join(parser.refs) and "../../x" not in " ".join(parser.refs)
    assert page.count("unreadable, shown without it") == 8  # the other four are values, not garbage
    assert "totals.params: expected a whole number, got nan" in page
    assert "1 record line(s) could not be read (no kind" in page
    assert "1 record line(s) could not be read (nested too deeply to read)" in page
    assert page.count('<svg class="chart"') >= 5  # the huge, tiny and equal series are drawn
    assert "outcomes.json: started: expected a finite number" in page


def test_every_kind_fed_garbage_still_gives_a_report(tmp_path: Path) -> None:
    from test_records import EXAMPLES, GARBAGE  # noqa: PLC0415 - shared fixtures of the contract tests

    tests = []
    for example in EXAMPLES:
        dirname = f"{example.KIND}-0123456789"
        lines = []
        for key in example.to_json():
            for value in GARBAGE:
                try:
                    lines.append(json.dumps({**example.to_json(), key: value}))
                except (ValueError, OverflowError):
                    continue
        (tmp_path / dirname).mkdir()
        (tmp_path / dirname / "modelviz.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tests.append({"nodeid": f"t::{example.KIND}", "outcome": "failed", "duration": 1, "dirname": dirname})
    (tmp_path / "outcomes.json").write_text(json.dumps({"tests": tests}), encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert len(load_run(tmp_path).tests) == len(EXAMPLES)
    assert page.count('<section class="test failed"') == len(EXAMPLES)
    assert "text <script>" not in page and "text &lt;script&gt;" in page
    assert page.count("unreadable, shown without it") >= len(EXAMPLES)
