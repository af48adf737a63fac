"""The architecture text: the body of a graph snapshot, and its parser.

One node per line, so a change to one layer is a one-line git diff. Fields are separated by two
spaces (values never contain two spaces: capture collapses whitespace). Parameters and buffers
follow their node on indented lines. Lines marked "derived" below are recomputed from the
nodes, so the parser skips them.

Names come from the user (a ``ModuleDict`` key may be ``"head 1"`` or hold a line break), so a
name that is not one plain word is written as a JSON string (``"head 1"``, ``"a\nb"``) with
every space after a space, line break and control character escaped: the file stays one node
per line, fields stay split by two spaces, and every name torch accepts reads back as it was.
Plain names are written as they are.

    # modelviz architecture v1
    model: ConvNet
    mode: eval
    note: captured by running forward once: ...
    inputs: x [1, 1, 28, 28] float32                      (derived)
    totals: params=20,534  trainable=20,534  frozen=0  buffers=0  macs=1,044,288

    0  input.x  input  () -> [1, 1, 28, 28] float32
    1  conv1  torch.nn.Conv2d(1, 16, kernel_size=(3, 3))  [1, 1, 28, 28] float32 -> [1, 16, 26, 26] float32
           params=160  macs=97,344  <- 0                  (wrapped here; one line in the file)
        param conv1.weight [16, 1, 3, 3] float32
        param conv1.bias [16] float32
    ...

    unused:
    aux  torch.nn.Linear(3, 3)  params=12
        param aux.weight [3, 3] float32
"""

from __future__ import annotations

import json
import re
import unicodedata

from pytest_modelviz.errors import SnapshotFormatError
from pytest_modelviz.graph.model import (
    ArchitectureGraph,
    Node,
    NodeKind,
    ParamSpec,
    TensorSpec,
    Totals,
    UnusedModule,
)

FORMAT_HEADER = "# modelviz architecture v1"
SEP = "  "
INDENT = "    "
_SPEC = re.compile(r"\[([0-9, ]*)\] ([A-Za-z0-9_]+)")
_SPECS = re.compile(rf"^{_SPEC.pattern}(, {_SPEC.pattern})*$")
_FIX = "the snapshot is corrupt or was edited by hand; re-create it with `pytest --snapshot-update`"
# A name: a JSON string, or a plain word that does not start with a quote.
_TOKEN = r'(?:"(?:[^"\\]|\\.)*"|[^\s"]\S*)'
_PARAM_LINE = re.compile(
    rf"^{INDENT}(param|buffer) ({_TOKEN}) {_SPEC.pattern}((?: frozen)?)((?: shared_with={_TOKEN})?)$"
)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


# ---------------------------------------------------------------- names


def _unsafe(ch: str) -> bool:
    """Characters that could end a line, hide, or vanish in an editor: always escaped."""
    return (ch.isspace() and ch != " ") or unicodedata.category(ch).startswith("C")


def _json_string(text: str) -> str:
    """``text`` as a JSON string with no line break, control character or two spaces in a row."""
    out = ['"']
    for i, ch in enumerate(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _unsafe(ch) or (ch == " " and i and text[i - 1] == " "):
            code = ord(ch)
            if code > 0xFFFF:  # JSON spells astral characters as a surrogate pair
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def quote_name(name: str) -> str:
    """A module, parameter or input name as one field: as it is when it is one plain word."""
    if name.startswith('"') or any(ch.isspace() or _unsafe(ch) for ch in name):
        return _json_string(name)
    return name


def quote_value(value: str) -> str:
    """A header value (model name, note): as it is unless it holds a line break or control
    character, starts with a quote, or starts or ends with a space (which editors strip)."""
    if value.startswith(('"', " ")) or value.endswith(" ") or any(_unsafe(ch) for ch in value):
        return _json_string(value)
    return value


def _read_quoted(text: str, lineno: int, line: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, str):
        raise _fail(lineno, f"bad quoted name {text!r}", line)
    return value


def unquote(text: str, lineno: int, line: str) -> str:
    """The name or value a field spells (the inverse of ``quote_name`` and ``quote_value``)."""
    return _read_quoted(text, lineno, line) if text.startswith('"') else text


# ---------------------------------------------------------------- writing


def _num(n: int) -> str:
    return f"{n:,}"


def format_specs(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(str(s) for s in specs) if specs else "()"


def format_call(target: str, args: tuple[tuple[str, str], ...]) -> str:
    """``torch.nn.Conv2d(1, 16, kernel_size=(3, 3))``; positional args are keyed by digits."""
    if "(" in target or quote_name(target) != target:  # a user class named oddly
        target = _json_string(target)
    if not args:
        return target
    parts = [v if k.isdigit() else f"{k}={v}" for k, v in args]
    return f"{target}({', '.join(parts)})"


def default_scope(name: str) -> str:
    """The scope a node name implies (``layer1.0`` for ``layer1.0.add#2``)."""
    base = name.split("#", 1)[0]
    return base.rsplit(".", 1)[0] if "." in base else ""


def _param_lines(params: tuple[ParamSpec, ...], word: str) -> list[str]:
    lines = []
    for p in params:
        line = f"{INDENT}{word} {quote_name(p.name)} {TensorSpec(p.shape, p.dtype)}"
        if word == "param" and not p.trainable:
            line += " frozen"
        if p.shared_with:
            line += f" shared_with={quote_name(p.shared_with)}"
        lines.append(line)
    return lines


def node_line(node: Node) -> str:
    fields = [
        str(node.index),
        quote_name(node.name),
        format_call(node.target, node.args),
        f"{format_specs(node.inputs)} -> {format_specs(node.outputs)}",
    ]
    if node.num_params:
        fields.append(f"params={_num(node.num_params)}")
    if node.macs:
        fields.append(f"macs={_num(node.macs)}")
    if node.kind not in ("input", "output") and node.scope != default_scope(node.name):
        fields.append(f"scope={quote_name(node.scope)}")
    if node.parents:
        fields.append("<- " + ", ".join(str(p) for p in node.parents))
    return SEP.join(fields)


def to_text(graph: ArchitectureGraph) -> str:
    t = graph.totals
    lines = [FORMAT_HEADER, f"model: {quote_value(graph.model_name)}", f"mode: {'train' if graph.training else 'eval'}"]
    lines += [f"note: {quote_value(note)}" for note in graph.notes]
    inputs = [
        f"{quote_name(n.name.removeprefix('input.'))} {format_specs(n.outputs)}"
        for n in graph.nodes
        if n.kind == "input"
    ]
    if inputs:
        lines.append(f"inputs: {'; '.join(inputs)}")
    lines.append(
        f"totals: params={_num(t.params)}{SEP}trainable={_num(t.trainable)}{SEP}frozen={_num(t.frozen)}"
        f"{SEP}buffers={_num(t.buffers)}{SEP}macs={_num(t.macs)}"
    )
    lines.append("")
    for node in graph.nodes:
        lines.append(node_line(node))
        lines += _param_lines(node.params, "param") + _param_lines(node.buffers, "buffer")
    if graph.unused:
        lines += ["", "unused:"]
        for u in graph.unused:
            n_params = sum(p.numel for p in u.params)
            fields = [quote_name(u.name), format_call(u.target, u.args)]
            fields += [f"params={_num(n_params)}"] if n_params else []
            lines.append(SEP.join(fields))
            lines += _param_lines(u.params, "param")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- reading


def _fail(lineno: int, what: str, line: str) -> SnapshotFormatError:
    return SnapshotFormatError(f"line {lineno}: {what}: {line.strip()!r}; {_FIX}")


def _int(text: str, lineno: int, line: str) -> int:
    try:
        return int(text.replace(",", ""))
    except ValueError:
        raise _fail(lineno, f"expected a number, got {text!r}", line) from None


def parse_specs(text: str, lineno: int, line: str) -> tuple[TensorSpec, ...]:
    if text == "()":
        return ()
    if not _SPECS.match(text):
        raise _fail(lineno, f"bad tensor list {text!r} (expected like '[1, 3] float32')", line)
    return tuple(
        TensorSpec(tuple(int(d) for d in shape.split(",") if d.strip()), dtype)
        for shape, dtype in _SPEC.findall(text)
    )


def parse_call(text: str, lineno: int, line: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    from pytest_modelviz.graph.naming import keyed_args, split_top_level

    if text.startswith('"'):
        try:
            target, end = json.JSONDecoder().raw_decode(text)
        except ValueError:
            raise _fail(lineno, "bad quoted layer name", line) from None
        rest = text[end:]
        if not rest:
            return target, ()
        if not rest.startswith("("):
            raise _fail(lineno, "a quoted layer name must be followed by its arguments", line)
        rest = rest[1:]
    elif "(" not in text:
        return text, ()
    else:
        target, _, rest = text.partition("(")
    if not rest.endswith(")") or not target:
        raise _fail(lineno, "unbalanced parentheses in the layer", line)
    return target, keyed_args(split_top_level(rest[:-1]))


def infer_kind(target: str) -> NodeKind:
    """Kinds are implied by targets: user classes carry no dots, torch functions are lowercase."""
    if target in ("input", "output"):
        return target  # type: ignore[return-value]
    if target.startswith("Tensor."):
        return "method"
    if target.startswith("operator."):
        return "operator"
    if "." in target and target.startswith("torch.") and target.rsplit(".", 1)[-1][:1].islower():
        return "function"
    return "module"


def _parse_param(line: str, lineno: int) -> tuple[str, ParamSpec]:
    m = _PARAM_LINE.match(line)
    if not m:
        raise _fail(lineno, "bad parameter line", line)
    word, name, shape, dtype, frozen, shared = m.groups()
    shared = shared.removeprefix(" shared_with=")
    spec = ParamSpec(
        name=unquote(name, lineno, line),
        shape=tuple(int(d) for d in shape.split(",") if d.strip()),
        dtype=dtype,
        trainable=word == "param" and not frozen,
        shared_with=unquote(shared, lineno, line) if shared else None,
    )
    return word, spec


def _parse_node(line: str, lineno: int, index: int) -> Node:
    fields = line.split(SEP)
    if len(fields) < 4:
        raise _fail(lineno, "a node line needs index, name, layer and shapes", line)
    if _int(fields[0], lineno, line) != index:
        raise _fail(lineno, f"expected node {index}", line)
    name = unquote(fields[1], lineno, line)
    target, args = parse_call(fields[2], lineno, line)
    ins, arrow, outs = fields[3].partition(" -> ")
    if not arrow:
        raise _fail(lineno, "shapes must read 'inputs -> outputs'", line)
    kind = infer_kind(target)
    extra: dict[str, str] = {}
    for field in fields[4:]:
        key, sep, value = field.partition("=") if not field.startswith("<- ") else ("<-", "=", field[3:])
        if not sep or key not in ("params", "macs", "scope", "<-"):
            raise _fail(lineno, f"unknown field {field!r}", line)
        extra[key] = value
    parents = tuple(_int(p, lineno, line) for p in extra["<-"].split(", ")) if "<-" in extra else ()
    scope = unquote(extra["scope"], lineno, line) if "scope" in extra else default_scope(name)
    if any(p >= index or p < 0 for p in parents):
        raise _fail(lineno, "a node can only consume earlier nodes", line)
    return Node(
        index=index,
        name=name,
        kind=kind,
        target=target,
        scope="" if kind in ("input", "output") else scope,
        args=args,
        inputs=parse_specs(ins, lineno, line),
        outputs=parse_specs(outs, lineno, line),
        macs=_int(extra.get("macs", "0"), lineno, line),
        parents=parents,
    )


def from_text(text: str) -> ArchitectureGraph:
    """Parse a snapshot body back into the graph it was written from."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != FORMAT_HEADER:
        got = lines[0] if lines else "an empty file"
        raise _fail(1, f"expected {FORMAT_HEADER!r} as the first line", got)
    header: dict[str, str] = {}
    notes: list[str] = []
    i = 1
    while i < len(lines) and lines[i]:
        key, sep, value = lines[i].partition(": ")
        if not sep or key not in ("model", "mode", "note", "inputs", "totals"):
            raise _fail(i + 1, "unknown header line", lines[i])
        if key in ("model", "note"):
            value = unquote(value, i + 1, lines[i])
        if key == "note":
            notes.append(value)
        else:
            header[key] = value
        i += 1
    for key in ("model", "mode", "totals"):
        if key not in header:
            raise _fail(i, f"the header has no '{key}:' line", lines[i - 1] if i else "")
    if header["mode"] not in ("train", "eval"):
        raise _fail(3, "mode must be 'train' or 'eval'", header["mode"])
    totals = _parse_totals(header["totals"], i)
    nodes: list[Node] = []
    unused: list[UnusedModule] = []
    section = "nodes"
    current: dict[str, list[ParamSpec]] = {}
    for lineno, line in enumerate(lines[i + 1 :], start=i + 2):
        if not line:
            continue
        if line == "unused:":
            section = "unused"
            continue
        if line.startswith(INDENT):
            if not (nodes or unused):
                raise _fail(lineno, "a parameter line must follow a layer", line)
            word, spec = _parse_param(line, lineno)
            current.setdefault(word, []).append(spec)
            _attach(nodes, unused, section, current)
            continue
        current = {}
        if section == "nodes":
            nodes.append(_parse_node(line, lineno, len(nodes)))
        else:
            fields = line.split(SEP)
            target, args = parse_call(fields[1] if len(fields) > 1 else "", lineno, line)
            if len(fields) < 2 or not target:
                raise _fail(lineno, "an unused line needs a name and a layer", line)
            unused.append(UnusedModule(name=unquote(fields[0], lineno, line), target=target, args=args))
    return ArchitectureGraph(
        model_name=header["model"],
        training=header["mode"] == "train",
        nodes=tuple(nodes),
        totals=totals,
        unused=tuple(unused),
        notes=tuple(notes),
    )


def _attach(nodes: list[Node], unused: list[UnusedModule], section: str, current: dict[str, list[ParamSpec]]) -> None:
    """Replace the last layer with one carrying the parameter lines read so far."""
    from dataclasses import replace

    params, buffers = tuple(current.get("param", ())), tuple(current.get("buffer", ()))
    if section == "nodes" and nodes:
        nodes[-1] = replace(nodes[-1], params=params, buffers=buffers)
    elif unused:
        unused[-1] = replace(unused[-1], params=params)


def _parse_totals(text: str, lineno: int) -> Totals:
    values: dict[str, int] = {}
    for field in text.split(SEP):
        key, sep, value = field.partition("=")
        if not sep:
            raise _fail(lineno, "totals must read key=value", text)
        values[key] = _int(value, lineno, text)
    try:
        return Totals(**values)
    except TypeError:
        raise _fail(lineno, "totals need params, trainable, frozen, buffers and macs", text) from None
