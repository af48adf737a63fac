"""HTML for one test's card: outcome, architecture, graph renders, training, snapshots, links.

Each function takes view-model records and returns an HTML fragment. Every string that came from
a record or a test id goes through ``e`` (escape) or ``href`` (URL-quote, then escape).
"""

from __future__ import annotations

import math
import shlex
from html import escape as e
from urllib.parse import quote

from pytest_modelviz.records import CHANGED_STATES, ArchitectureRecord, CheckRecord, HealthRow
from pytest_modelviz.report.charts import Series, format_number, line_chart
from pytest_modelviz.report.model import (
    Architecture,
    Artifact,
    GraphRender,
    ParamsSnapshot,
    TestView,
    TrainRun,
)

_RENDER_FAMILIES = (
    ("", "Architecture graph"),
    ("hiddenlayer_", "hiddenlayer"),
    ("torchviz_", "Autograd graph (torchviz)"),
)


def href(path: str) -> str:
    """An attribute-safe relative URL for a run-relative posix path."""
    return e(quote(path, safe="/"))


def link(artifact: Artifact | None, text: str | None = None) -> str:
    if artifact is None:
        return ""
    label = e(text or artifact.label)
    if artifact.href is None:
        return (
            '<span class="missing" title="the record names a file that is not in the run folder">'
            f"{label} (missing)</span>"
        )
    return f'<a href="{href(artifact.href)}">{label}</a>'


def image(artifact: Artifact | None, alt: str) -> str:
    # <img> never runs scripts inside an SVG, so a render with hostile labels stays inert.
    if artifact is None or artifact.href is None:
        return link(artifact)
    return f'<a class="figure" href="{href(artifact.href)}"><img src="{href(artifact.href)}" alt="{e(alt)}"></a>'


def zoomable(artifact: Artifact | None, title: str, extra: str = "") -> str:
    """A picture in a scrolling viewport, fitted to its width (a button shows it at its own size),
    with a link that opens it full size on its own: big graphs stay readable."""
    if artifact is None or artifact.href is None:
        return f"<figure><figcaption>{e(title)}: {link(artifact)} {extra}</figcaption></figure>"
    url = href(artifact.href)
    return (
        f'<figure class="zoomable"><div class="viewport"><img src="{url}" alt="{e(title)}"></div>'
        f'<figcaption>{e(title)} · <a href="{url}" target="_blank" rel="noopener">open full size</a>'
        f' <button type="button" class="zoom" hidden>actual size</button> {extra}</figcaption></figure>'
    )


def badge(word: str, cls: str | None = None) -> str:
    return f'<span class="badge {e(cls or word)}">{e(word)}</span>'


def command(text: str) -> str:
    return f'<code class="cmd">{e(text)}</code>'


def anchor_id(t: TestView, index: int) -> str:
    """The id of a test's card; the folder name is unique and already safe for an id."""
    return f"t-{t.dirname}" if t.dirname else f"t-{index}"


def test_card(t: TestView, index: int) -> str:
    parts = [
        f'<section class="test {e(t.outcome)}" id="{e(anchor_id(t, index))}" data-outcome="{e(t.outcome)}">',
        '<header class="test-head">',
        badge(t.outcome),
        f'<h2 class="nodeid">{e(t.nodeid)}</h2>',
        badge(t.job, "job") if t.job else "",
        f'<span class="duration">{t.duration:.2f} s</span>',
        "</header>",
    ]
    if t.message:
        # A changed snapshot's diff is shown below in colour; the traceback repeats it, so start closed.
        shown_below = any(a.record.diff for a in t.architectures) or any(p.record.mismatches for p in t.params)
        opens = t.outcome in ("failed", "error", "xpassed", "interrupted", "unknown") and not shown_below
        opened = " open" if opens else ""
        title = {"skipped": "Reason", "xfailed": "Reason", "interrupted": "Interrupted"}.get(t.outcome, "Failure")
        parts.append(f'<details class="message"{opened}><summary>{title}</summary><pre>{e(t.message)}</pre></details>')
    for problem in t.problems:
        parts.append(f'<p class="problem">{e(problem)}</p>')
    parts += [architecture(a) for a in t.architectures]
    parts += [graph_render(g) for g in t.renders]
    parts += [train(r) for r in t.trains]
    if t.checks:
        parts.append(checks(t.checks))
    parts += [params(p) for p in t.params]
    parts.append(viewers(t))
    if t.others:
        body = "\n".join(t.others)
        parts.append(
            f'<details class="others"><summary>{len(t.others)} other record(s)</summary><pre>{e(body)}</pre></details>'
        )
    if t.files:
        items = "".join(f"<li>{link(f)}</li>" for f in t.files)
        parts.append(
            f'<details class="files"><summary>All artifacts ({len(t.files)})</summary><ul>{items}</ul></details>'
        )
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _snapshot_badge(state: str) -> str:
    if not state:
        return ""
    cls = "failed" if state == "changed" else ("updated" if state in CHANGED_STATES or state == "created" else "passed")
    return badge(f"snapshot {state}", cls)


def architecture(view: Architecture) -> str:
    a = view.record
    mode = "" if a.training is None else (" · train mode" if a.training else " · eval mode")
    totals = a.totals
    facts = [
        f"{_int(totals.get('params'))} params",
        f"{_int(totals.get('trainable'))} trainable",
        f"{_int(totals.get('frozen'))} frozen",
        f"{_int(totals.get('buffers'))} buffer values",
        f"{_int(totals.get('macs'))} mult-adds",
    ] if totals else []
    head = (
        f'<div class="block architecture"><h3>Architecture <span class="name">{e(a.name)}</span> '
        f'<span class="model">{e(a.model)}{mode}</span> {_snapshot_badge(a.snapshot)}</h3>'
    )
    parts = [head]
    if facts:
        parts.append(f'<p class="facts">{e(" · ".join(facts))}</p>')
    if a.diff:
        parts.append(f'<details class="diff" open><summary>Snapshot difference</summary>{diff(a.diff)}</details>')
    if a.rows:
        parts.append(_layer_table(a, view.outputs))
    if view.text:
        parts.append(f'<p class="links">{link(view.text)}</p>')
    parts.append("</div>")
    return "".join(parts)


def _layer_table(a: ArchitectureRecord, outputs: dict[str, tuple[tuple[int, ...], ...]]) -> str:
    rows = []
    for r in a.rows:
        shapes = outputs.get(r.name) or (r.output_shape,)  # every output (LSTM: output, (h, c)) when known
        shown = "<br>".join(e("×".join(str(d) for d in shape)) for shape in shapes)
        rows.append(
            f'<tr><td class="layer">{e(r.name)}</td><td>{e(r.type)}</td>'
            f'<td class="shape">{shown}</td><td class="num">{e(_int(r.params))}</td>'
            f'<td class="num">{e(_int(r.macs))}</td></tr>'
        )
    return (
        '<div class="table-wrap"><table class="layers"><thead><tr><th>Layer</th><th>Type</th>'
        '<th>Output shape</th><th class="num">Params</th><th class="num">Mult-adds</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
    )


def diff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        cls = {"+": "add", "-": "del", "@": "hunk", "~": "chg"}.get(line[:1], "")
        lines.append(f'<span class="{cls}">{e(line)}</span>' if cls else e(line))
    return f'<pre class="diff">{chr(10).join(lines)}</pre>'


def graph_render(g: GraphRender) -> str:
    r = g.record
    parts = [f'<div class="block render"><h3>Graph <span class="name">{e(r.name)}</span></h3>']
    figures = []
    for prefix, title in _RENDER_FAMILIES:
        picture = g.files.get(f"{prefix}svg") or g.files.get(f"{prefix}png")
        dot = g.files.get(f"{prefix}dot")
        if picture is not None:
            figures.append(zoomable(picture, title, link(dot, "DOT")))
        elif dot is not None:
            text = g.dot_texts.get(f"{prefix}dot", "")
            figures.append(
                f'<details class="dot"><summary>{e(title)}: DOT source (no image rendered)</summary>'
                f'<pre>{e(text)}</pre>{link(dot, "DOT file")}</details>'
            )
    parts.append(f'<div class="figures">{"".join(figures)}</div>' if figures else "")
    notes = []
    if r.renderer:
        notes.append(f"rendered with {e(r.renderer)}")
    notes += [e(note) for note in r.notes]
    notes += [f'<span class="missing">{e(err)}</span>' for err in r.errors]
    if r.tensorboard_graph:
        notes.append("also in TensorBoard's Graphs tab")
    if notes:
        parts.append(f'<p class="note">{" · ".join(notes)}</p>')
    parts.append("</div>")
    return "".join(parts)


def train(view: TrainRun) -> str:
    r = view.record
    steps = r.steps if r.steps is not None else len(r.losses)
    facts = [x for x in (r.model, r.device and f"device {r.device}", f"{steps} steps",
                         r.torch_version and f"torch {r.torch_version}") if x]
    if r.losses:
        last = r.losses[-1]
        facts.append(f"final loss {format_number(last) if math.isfinite(last) else last}")
    parts = [
        f'<div class="block train"><h3>Training <span class="name">{e(r.name)}</span></h3>',
        f'<p class="facts">{e(" · ".join(facts))}</p>',
    ]
    charts = []
    if r.losses:
        charts.append(line_chart([Series("loss", _by_step(r.losses))], title="Training loss", y_label="loss"))
    if r.eval:
        charts.append(line_chart([Series(k, v) for k, v in r.eval.items()], title="Evaluation", y_label="value"))
    if r.grad_norms:
        charts.append(line_chart([Series("grad norm", _by_step(r.grad_norms))], title="Gradient norm"))
    if r.lrs and len({str(x) for x in r.lrs}) > 1:
        charts.append(line_chart([Series("lr", _by_step(r.lrs))], title="Learning rate"))
    if charts:
        parts.append(f'<div class="charts">{"".join(charts)}</div>')
    if r.health:
        parts.append(health_table(r.health))
    if view.checks:
        parts.append(checks(view.checks))
    if view.curves is not None:
        parts.append(f'<details class="pictures"><summary>Plots</summary><div class="figures">'
                     f'<figure>{image(view.curves, view.curves.label)}<figcaption>{e(view.curves.label)}</figcaption>'
                     '</figure></div></details>')
    if r.error and r.error not in r.note:
        parts.append(f'<p class="problem">training stopped early: {e(r.error)}</p>')
    if r.note:
        parts.append(f'<p class="note">{e(r.note)}</p>')
    parts.append("</div>")
    return "".join(parts)


def health_table(rows: tuple[HealthRow, ...]) -> str:
    """Per layer: gradient norm, update ratio, dead fraction; rows the checks flag are marked
    and say why (their first lines open the table, so a problem is seen without scrolling)."""
    def cell(value: float | None, percent: bool = False) -> str:
        if value is None:
            return '<td class="num"></td>'
        return f'<td class="num">{e(f"{value:.0%}" if percent else format_number(value))}</td>'

    body = "".join(
        f'<tr class="{"bad" if row.problem else "ok"}"><td class="layer">{e(row.layer)}</td><td>{e(row.kind)}</td>'
        f"{cell(row.grad_norm)}{cell(row.update_ratio)}{cell(row.dead_fraction, percent=True)}"
        f'<td class="problem">{e(row.problem)}</td></tr>'
        for row in rows
    )
    flagged = sum(1 for row in rows if row.problem)
    summary = f"Layer health: {flagged} of {len(rows)} flagged" if flagged else f"Layer health: {len(rows)} layers"
    opened = " open" if flagged else ""
    return (
        f'<details class="health"{opened}><summary>{e(summary)}</summary><div class="table-wrap">'
        '<table class="layers health"><thead><tr><th>Layer</th><th>Type</th><th class="num">Grad norm</th>'
        '<th class="num">Update ratio</th><th class="num">Dead</th><th>Problem</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div></details>"
    )


def _by_step(values: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    # losses[i] is the loss of step i, the 0-based numbering eval points and TensorBoard use.
    return tuple((float(i), v) for i, v in enumerate(values))


def checks(items: tuple[CheckRecord, ...]) -> str:
    rows = "".join(
        f'<tr class="{"ok" if c.passed else "bad"}"><td>{"✓" if c.passed else "✗"}</td>'
        f"<td>{e(c.name)}</td><td>{e(c.message or ('passed' if c.passed else 'failed'))}</td></tr>"
        for c in items
    )
    return (
        '<table class="checks"><thead><tr><th></th><th>Check</th><th>Result</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def params(view: ParamsSnapshot) -> str:
    p = view.record
    parts = [
        f'<div class="block params"><h3>Parameter statistics <span class="name">{e(p.name)}</span> '
        f'<span class="model">{e(p.model)}</span> {_snapshot_badge(p.snapshot)}</h3>'
    ]
    if p.mismatches:
        items = "".join(f"<li>{e(m)}</li>" for m in p.mismatches)
        parts.append(f'<ul class="mismatches">{items}</ul>')
    if view.plot is not None:
        parts.append(f'<div class="figures">{zoomable(view.plot, "parameter histograms")}</div>')
    if view.stats is not None:
        parts.append(f'<p class="links">{link(view.stats)}</p>')
    parts.append("</div>")
    return "".join(parts)


def viewers(t: TestView) -> str:
    rows = []
    if t.tensorboard:
        rows.append(
            f'<li>TensorBoard run: <a href="{href(t.tensorboard)}/">{e(t.tensorboard)}/</a> '
            f"· open (from the run folder): {command('tensorboard --logdir ' + shlex.quote(t.tensorboard))}</li>"
        )
    for v in t.visdom:
        files = " · ".join(x for x in (link(v.json), link(v.log)) if x)
        r = v.record
        replay = f" · replay (from the run folder): {command(r.replay)}" if r.replay else ""
        windows = f" ({r.windows} window{'s' if r.windows != 1 else ''})" if r.windows is not None else ""
        rows.append(f"<li>visdom env <b>{e(r.env)}</b>{windows}{' · ' + files if files else ''}{replay}</li>")
    return f'<div class="block viewers"><ul>{"".join(rows)}</ul></div>' if rows else ""


def _int(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "" if value is None else str(value)
    return f"{int(value):,}"
