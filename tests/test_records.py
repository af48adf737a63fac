"""The record contract: every kind round-trips, every kind survives garbage, and the records the
fixtures write today read back without a problem."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import pytest
from modelviz_testing import run_dir_of

from pytest_modelviz.artifacts import ArtifactDir, walk_run
from pytest_modelviz.records import (
    KINDS,
    RECORDS_FILE,
    ArchitectureRecord,
    CheckRecord,
    GraphRenderRecord,
    LayerRow,
    ParamsRecord,
    Record,
    RunOutcomes,
    TestOutcome,
    TrainRecord,
    UnknownRecord,
    UnreadableRecord,
    VisdomRecord,
    from_json,
    parse_line,
    read_outcomes,
    snapshot_changes,
    to_line,
)

EXAMPLES = [
    ArchitectureRecord(
        name="convnet", model="ConvNet", training=False,
        totals={"params": 206922, "trainable": 206922, "frozen": 0, "buffers": 0, "macs": 1234567},
        rows=(LayerRow("conv1", "Conv2d", (1, 16, 28, 28), 160, 112896), LayerRow("x", "Identity", (), 0, 0)),
        snapshot="changed", diff="~ conv1", text="graph-convnet/architecture.txt", torch_version="2.14.1",
    ),
    ParamsRecord(name="init", model="ConvNet", snapshot="matched", mismatches=("fc.weight: std 0.1 -> 0.2",),
                 plot="params-init/histograms.svg", stats="params-init/stats.json"),
    GraphRenderRecord(name="convnet", files={"dot": "g/model.dot", "svg": "g/model.svg"},
                      renderer="graphviz-pure", note="no hiddenlayer picture", errors=("torchviz: boom",),
                      tensorboard_graph=True),
    TrainRecord(name="convnet", model="ConvNet", device="cpu", torch_version="2.14.1", steps=3,
                losses=(2.3, 1.1, 0.5), lrs=(0.1, 0.1, 0.05), grad_norms=(3.0, 2.0, 1.0),
                eval={"accuracy": ((1.0, 0.4), (3.0, 0.7))}, curves="train-convnet/curves.png",
                error="TrainingError: loss is NaN at step 3", note="", tensorboard="tensorboard"),
    CheckRecord(name="loss decreases", passed=True, message="2.3 -> 0.5", train="convnet"),
    VisdomRecord(env="test_x", json="visdom/test_x.json", log="visdom/events.jsonl",
                 replay="python -m pytest_modelviz.visdom.replay x", server=None, windows=2),
]


def test_every_kind_has_an_example() -> None:
    assert {type(r) for r in EXAMPLES} == set(KINDS.values())


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: r.KIND)
def test_round_trip(record: Record) -> None:
    line = to_line(record)
    back = parse_line(line)
    assert back == record
    assert back.problems == ()
    assert json.loads(line)["kind"] == record.KIND and json.loads(line)["version"] == 1


def test_a_diverged_loss_is_kept() -> None:
    record = TrainRecord(name="t", losses=(1.0, math.nan, math.inf, -math.inf))
    back = parse_line(to_line(record))
    assert back.losses[0] == 1.0 and math.isnan(back.losses[1]) and back.losses[2:] == (math.inf, -math.inf)
    assert back.problems == ()


def test_records_as_written_by_keyword_read_back() -> None:
    """Writers may keep calling ``ArtifactDir.record(kind, **fields)``: same JSON, same record."""
    for record in EXAMPLES:
        data = record.to_json()
        del data["version"]  # records written before the field existed
        assert from_json(data) == record


GARBAGE = [
    math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 10**400, -1, True, None, "", "text <script>",
    [], [0, 5e-324], [1e308, -1e308], ["a", {"b": 1}], {}, {"x": [1, 2]},
    [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]],
]


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: r.KIND)
def test_every_field_of_every_kind_survives_garbage(record: Record) -> None:
    tried = 0
    for key in record.to_json():
        for value in GARBAGE:
            data = {**record.to_json(), key: value}
            try:
                line = json.dumps(data)
            except (ValueError, OverflowError):
                continue
            back = parse_line(line)  # never raises
            tried += 1
            expected = (UnreadableRecord, UnknownRecord, type(record)) if key == "kind" else (type(record),)
            assert isinstance(back, expected), (key, value, back)
            original = record.to_json()[key]
            if key != "kind" and None not in (original, value) and _shape(value) != _shape(original):
                assert back.problems, f"{key}={value!r} was taken without a word"
            json.dumps(back.to_json() if hasattr(back, "to_json") else back.raw)  # what was read can be shown
    assert tried > 100


def _shape(value: object) -> str:
    return "object" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"kind": ["architecture"], "name": "x"}', "no kind"),
        ('{"name": "x"}', "no kind"),
        ("[1, 2]", "not a JSON object"),
        ('"architecture"', "not a JSON object"),
        ('{"kind": "train", "losses": [1.0, 2', "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("\x00\xff garbage", "not JSON"),
    ],
)
def test_lines_that_are_not_records(line: str, reason: str) -> None:
    record = parse_line(line)
    assert isinstance(record, UnreadableRecord) and reason in record.reason
    assert len(record.raw) <= 2001


def test_bad_values_are_named_not_raised() -> None:
    line = json.dumps({
        "kind": "architecture", "name": "x",
        "totals": {"params": math.nan, "macs": math.inf, "trainable": 5},
        "rows": "not a list",
    })
    record = parse_line(line)
    assert isinstance(record, ArchitectureRecord)
    assert record.totals == {"trainable": 5} and record.rows == ()
    assert any(p.startswith("totals.params") for p in record.problems)
    assert any(p.startswith("rows") for p in record.problems)
    newer = parse_line(json.dumps({"kind": "check", "name": "c", "passed": True, "version": 7}))
    assert "newer pytest-modelviz" in newer.problems[0]


def test_unknown_kinds_are_kept_as_written() -> None:
    record = parse_line('{"kind": "future", "x": 1}')
    assert record == UnknownRecord("future", '{"kind": "future", "x": 1}')


def test_snapshot_changes_are_decided_in_one_place() -> None:
    records = [ArchitectureRecord("a", snapshot=s) for s in ("changed", "updated", "matched", "created")]
    records += [ParamsRecord("p", snapshot="changed"), UnreadableRecord("x", "")]
    assert snapshot_changes(records) == 3


OUTCOMES_GARBAGE = [
    {"started": math.nan, "finished": math.inf, "tests": "no"},
    {"started": 1e308, "finished": -1e308, "snapshot_changes": math.inf, "extras": [1]},
    {"tests": [None, 1, {"nodeid": ["x"]}, {"nodeid": "t", "outcome": ["passed"], "duration": math.nan,
                                          "dirname": {"a": 1}, "message": 5}]},
    {"interrupted": ["x"], "not_run": "t", "notes": [1, "ok"], "version": "one"},
]


@pytest.mark.parametrize("data", OUTCOMES_GARBAGE)
def test_outcomes_survive_garbage(tmp_path: Path, data: dict) -> None:
    path = tmp_path / "outcomes.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    outcomes = read_outcomes(path)
    assert isinstance(outcomes, RunOutcomes) and outcomes.problems
    for test in outcomes.tests:
        assert test.outcome in ("unknown", "passed") and math.isfinite(test.duration)


def test_outcomes_round_trip(tmp_path: Path) -> None:
    outcomes = RunOutcomes(
        tests=(TestOutcome("t::a", "passed", 0.5, "t-a-0123456789"),
               TestOutcome("t::b", "interrupted", 1.0, "b", "x", job="gpu")),
        started=1.0, finished=2.0, exit_status=2, interrupted="Ctrl-C", not_run=("t::c",), notes=("n",),
        not_written=("report.html (No space left on device)",), snapshot_changes=1, extras={"device": "cpu"},
        job="cpu-1",
    )
    path = tmp_path / "outcomes.json"
    path.write_text(json.dumps(outcomes.to_json()), encoding="utf-8")
    assert read_outcomes(path) == outcomes
    assert [f.name for f in fields(RunOutcomes)] == [
        "tests", "started", "finished", "exit_status", "interrupted", "not_run", "notes", "not_written",
        "snapshot_changes", "extras", "job", "version", "problems",
    ]
    assert [f.name for f in fields(TestOutcome)] == ["nodeid", "outcome", "duration", "dirname", "message", "job"]
    assert "job" not in outcomes.tests[0].to_json(), "a run that names no job writes what it always wrote"
    path.write_text('{"tests": [', encoding="utf-8")
    assert "could not be read" in read_outcomes(path).problems[0]
    assert read_outcomes(tmp_path / "missing.json") is None


def test_record_objects_can_be_written_directly(tmp_path: Path) -> None:
    art = ArtifactDir("t::x", tmp_path / "t-0123456789", persist=True)
    for record in EXAMPLES:
        art.record(record)
    art.record("train", name="by keyword", losses=[1.0])
    (folder,) = walk_run(tmp_path)
    assert list(folder.records[:-1]) == EXAMPLES
    assert folder.records[-1] == TrainRecord(name="by keyword", losses=(1.0,))
    assert folder.files == () and (tmp_path / "t-0123456789" / RECORDS_FILE).is_file()


FIXTURE_TESTS = """
import torch
from torch import nn
from torch.nn import functional as F


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_everything(graph_snapshot, short_train, visdom_client):
    model = make_model()
    graph_snapshot(model, torch.zeros(1, 4))
    graph_snapshot.parameters(model)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    result = short_train(model, (x, (x[:, 0] > 0).long()), loss_fn=F.cross_entropy,
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.5), steps=4)
    result.assert_finite()
    visdom_client.line(X=[0, 1], Y=[1.0, 0.5], win="loss")
"""


@pytest.mark.slow
def test_the_fixtures_records_read_back_without_problems(pytester: pytest.Pytester) -> None:
    """The writers are in other modules; this holds them to the contract as they are today."""
    pytester.makepyfile(test_all=FIXTURE_TESTS)
    pytester.runpytest("--modelviz", "--snapshot-update").assert_outcomes(passed=1)
    (folder,) = [f for f in walk_run(run_dir_of(pytester)) if f.has_records]
    kinds = {type(r).__name__ for r in folder.records}
    assert {"ArchitectureRecord", "ParamsRecord", "GraphRenderRecord", "TrainRecord", "CheckRecord",
            "VisdomRecord"} <= kinds, kinds
    assert [(type(r).__name__, r.problems) for r in folder.records if r.problems] == []


@pytest.mark.parametrize("depth", [50, 900, 5000])
def test_deep_nesting_inside_a_field(depth: int) -> None:
    rows = "[" * depth + "]" * depth
    line = '{"kind": "architecture", "name": "deep", "rows": ' + rows + ', "totals": {"x": 1}}'
    record = parse_line(line)
    if isinstance(record, UnreadableRecord):
        assert "nested too deeply" in record.reason
    else:
        assert record.name == "deep" and record.rows == () and record.problems
        assert record.totals == {"x": 1}
