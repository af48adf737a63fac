"""A sharded pipeline's merged report in a real headless Chromium: every test once per job, the two
jobs of a test side by side, every link resolves, and no script or resource error."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import unquote

from headless_chromium import IMAGE_PROBE, dump_dom, find_chromium
from sharded_runs import GPU_JOB, NODEIDS, SHARDS, make_project, run_jobs

from pytest_modelviz.merge import merge_runs


def test_merged_report_in_chromium(tmp_path: Path) -> None:
    chromium = find_chromium()
    jobs = run_jobs(make_project(tmp_path))
    out = tmp_path / "merged"
    result = merge_runs(list(jobs.values()), out)
    assert result.report is not None and not result.warnings
    page = result.report.read_text(encoding="utf-8")
    probed = out / "probed.html"
    probed.write_text(page.replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8")
    dom = dump_dom(chromium, probed, tmp_path / "profile")

    assert 'data-ready="yes"' in dom, "the report's script did not run"
    assert '<div id="js-errors" hidden=""></div>' in dom, "a console error or a broken resource"
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert images >= 4 and 'data-broken=""' in dom, "every picture loads through the merged folder's links"
    # The index: one row per test, one cell per job the test ran in.
    rows = re.findall(r'<tr data-outcome="[^"]*"><td>([^<]+)</td>(.*?)</tr>', dom)
    assert sorted(unescape(nodeid) for nodeid, _ in rows) == sorted(NODEIDS)
    for nodeid, cells in rows:
        ran_in = re.findall(r'data-job="([^"]+)"', cells)
        assert ran_in.count(GPU_JOB) == 1 and len([j for j in ran_in if j in SHARDS]) == 1, (nodeid, ran_in)
    # The cards: every test of every job once, the CPU and GPU results of a test side by side.
    cards = re.findall(r'<h2 class="nodeid">([^<]+)</h2>\s*<span class="badge job">([^<]+)</span>', dom)
    assert len(cards) == len(set(cards)) == 2 * len(NODEIDS)
    groups = re.findall(r'<div class="side-by-side" style="--jobs: (\d)">', dom)
    assert groups == ["2"] * len(NODEIDS)
    # Every relative link of the page names a file or folder of the merged run.
    links = {unquote(unescape(h)) for h in re.findall(r'(?:href|src)="([^"#][^"]*)"', page)}
    assert links and all(not h.startswith(("/", "http:", "https:", "file:")) for h in links)
    missing = [h for h in links if not (out / h).exists()]
    assert missing == []
