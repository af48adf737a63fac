"""Parameter statistics: one record per tensor, its snapshot text, and the tolerant comparison.

Like a numeric regression file for a model's weights: per parameter (and optionally buffer) the
count, moments, a few quantiles and a histogram over ``[min, max]``. Statistics are reduced on the
tensor's own device in float64 and only the few resulting numbers move to the CPU.

Every number is rounded to ``SIGNIFICANT_DIGITS`` when the record is built, so the record, its
text and the text parsed back are the same values: comparing a fresh record with a stored one is
comparing what would be written with what was written. Nothing here imports torch at module level.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError
from pytest_modelviz.unwrap import refuse_transformed, unwrap_model

if TYPE_CHECKING:
    import torch

FORMAT_HEADER = "# pytest-modelviz parameter statistics, format 1"
QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
SIGNIFICANT_DIGITS = 9
MOMENTS = ("mean", "std", "min", "max")
KINDS = ("param", "buffer")
# torch.quantile refuses inputs above 2**24 elements; past that we select with kthvalue.
_SORT_LIMIT = 2**24

ToleranceSpec = float | Mapping[str, float] | None


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class TensorStats:
    """Statistics of one parameter or buffer; moments, quantiles and histogram skip non-finite values."""

    name: str
    kind: str  # "param" | "buffer"
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    count: int
    nonfinite: int
    mean: float
    std: float  # population standard deviation (no Bessel correction)
    min: float
    max: float
    quantiles: tuple[float, ...]  # at ParamStats.quantiles
    hist: tuple[float, ...]  # fraction of finite values per equal-width bin over [min, max]


class _Identity(TypedDict):
    """The fields of a ``TensorStats`` that describe the tensor, not its values."""

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    count: int


@dataclass(frozen=True)
class ParamStats:
    """The statistics of every parameter (and buffer, if asked) of one model, in registration order."""

    model: str  # class name, for people reading the file; not compared
    bins: int
    quantiles: tuple[float, ...]
    tensors: tuple[TensorStats, ...]

    def to_text(self) -> str:
        return format_stats(self)

    @classmethod
    def from_text(cls, text: str, source: str = "snapshot") -> ParamStats:
        return parse_stats(text, source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamStats:
        """``to_dict`` read back; a NaN or infinity may come as its string (JSON has no literal for
        them), which ``float`` reads."""
        tensors = tuple(
            TensorStats(
                name=t["name"], kind=t["kind"], shape=tuple(t["shape"]), dtype=t["dtype"],
                trainable=t["trainable"], count=t["count"], nonfinite=t["nonfinite"],
                mean=float(t["mean"]), std=float(t["std"]), min=float(t["min"]), max=float(t["max"]),
                quantiles=tuple(float(q) for q in t["quantiles"]), hist=tuple(float(h) for h in t["hist"]),
            )
            for t in data["tensors"]
        )
        return cls(model=data["model"], bins=data["bins"], quantiles=tuple(data["quantiles"]), tensors=tensors)

    def get(self, name: str) -> TensorStats | None:
        return next((t for t in self.tensors if t.name == name), None)


def _round(x: float) -> float:
    """Round to the stored precision; ``+ 0.0`` folds ``-0.0`` (the sign of zero differs by device)."""
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}") + 0.0


def _fmt(x: float) -> str:
    return f"{x:.{SIGNIFICANT_DIGITS}g}"


def _quantile_label(q: float) -> str:
    return f"q{q:g}"


# ---------------------------------------------------------------- computing


def compute_stats(model: Any, *, bins: int = 16, buffers: bool = False) -> ParamStats:
    """Statistics of ``model.named_parameters()`` (tied weights once), then buffers if ``buffers``."""
    import torch

    model = unwrap_model(model)  # the bare model's names, not ``_orig_mod.``/``module.`` ones
    refuse_transformed(model, "parameter statistics")
    if not isinstance(model, torch.nn.Module):
        raise ModelvizUsageError(
            f"parameter statistics need a torch.nn.Module, got {type(model).__name__}; "
            "pass the model itself, not its state_dict or output"
        )
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ModelvizUsageError(f"bins must be a positive int, got {bins!r}")
    named: list[tuple[str, str, torch.Tensor]] = [("param", n, p) for n, p in model.named_parameters()]
    if buffers:
        named += [("buffer", n, b) for n, b in model.named_buffers()]
    if not named:
        what = "parameters or buffers" if buffers else "parameters (pass buffers=True to snapshot buffers)"
        raise ModelvizUsageError(f"{type(model).__name__} has no {what}: there is nothing to snapshot")
    with torch.no_grad():
        tensors = tuple(tensor_stats(name, kind, t, bins) for kind, name, t in named)
    return ParamStats(model=type(model).__name__, bins=bins, quantiles=QUANTILES, tensors=tensors)


def tensor_stats(name: str, kind: str, tensor: torch.Tensor, bins: int) -> TensorStats:
    """Reduce one tensor on its device; one transfer of ``len(QUANTILES) + bins + 6`` numbers."""
    import torch

    if "\n" in name or "\r" in name:
        raise ModelvizUsageError(f"{kind} name {name!r} contains a line break; rename the module")
    if tensor.device.type == "meta":
        raise ModelvizUsageError(
            f"{kind} {name!r} is on the meta device and has no values; materialize the model first "
            "(model.to_empty(device='cpu') and initialize it) before snapshotting its statistics"
        )
    if tensor.is_complex():
        raise ModelvizUsageError(
            f"{kind} {name!r} is complex ({tensor.dtype}); statistics support real tensors only"
        )
    common: _Identity = dict(
        name=name,
        kind=kind,
        shape=tuple(int(d) for d in tensor.shape),
        dtype=str(tensor.dtype).removeprefix("torch."),
        trainable=bool(tensor.requires_grad),
        count=int(tensor.numel()),
    )
    raw = tensor.detach().reshape(-1)
    if raw.device.type == "mps":  # no float64 on MPS
        raw = raw.cpu()
    x = raw.to(torch.float64)
    nonfinite = 0
    if x.numel():
        lo, hi = torch.aminmax(x)
        # min/max propagate NaN and show infinities, so one check spares a pass in the common case.
        if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):
            x = x[torch.isfinite(x)]
            nonfinite = raw.numel() - x.numel()
            if x.numel():
                lo, hi = torch.aminmax(x)
    if x.numel() == 0:
        nan = float("nan")
        return TensorStats(
            **common, nonfinite=nonfinite, mean=nan, std=nan, min=nan, max=nan,
            quantiles=tuple(nan for _ in QUANTILES), hist=tuple(0.0 for _ in range(bins)),
        )  # fmt: skip
    std, mean = torch.std_mean(x, correction=0)
    # Quantiles are elements (interpolated in float64), so select them in the narrower source dtype.
    source = raw if raw.is_floating_point() and not nonfinite else x
    quantiles = _quantiles(source, QUANTILES)
    hist = _histogram(x, lo, hi, bins) / x.numel()
    small = torch.cat([torch.stack([mean, std, lo, hi]), quantiles, hist]).cpu().tolist()
    values = [_round(v) for v in small]
    q_end = 4 + len(QUANTILES)
    return TensorStats(
        **common, nonfinite=nonfinite, mean=values[0], std=values[1], min=values[2], max=values[3],
        quantiles=tuple(values[4:q_end]), hist=tuple(values[q_end:]),
    )  # fmt: skip


def _quantiles(x: torch.Tensor, levels: tuple[float, ...]) -> torch.Tensor:
    """Linear-interpolation quantiles (``torch.quantile``'s default) without its input size limit."""
    import torch

    n = x.numel()
    positions = [q * (n - 1) for q in levels]
    ranks = sorted({math.floor(p) for p in positions} | {math.ceil(p) for p in positions})
    if n <= _SORT_LIMIT:
        ordered = torch.sort(x).values
        picked = ordered[torch.tensor(ranks, device=x.device)]
    else:
        picked = torch.stack([torch.kthvalue(x, r + 1).values for r in ranks])
    picked = picked.to(torch.float64)
    by_rank = dict(zip(ranks, picked.unbind(), strict=True))  # one picked value per rank
    out = []
    for p in positions:
        below, above = by_rank[math.floor(p)], by_rank[math.ceil(p)]
        out.append(below + (above - below) * (p - math.floor(p)))
    return torch.stack(out)


def _histogram(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts per equal-width bin over ``[lo, hi]``; the maximum falls in the last bin.

    Bin indices are computed in float64 with one formula on every device, so CPU and CUDA put an
    element on a bin edge in the same bin (``torch.histc`` rounds differently per backend).
    A constant tensor puts everything in the first bin.
    """
    import torch

    width = hi - lo
    if float(width.item()) == 0.0:
        counts = torch.zeros(bins, dtype=torch.float64, device=x.device)
        counts[0] = x.numel()
        return counts
    index = ((x - lo) * (bins / width)).floor_().clamp_(0, bins - 1).to(torch.int64)
    return torch.bincount(index, minlength=bins).to(torch.float64)


# ---------------------------------------------------------------- text


def format_stats(stats: ParamStats) -> str:
    """The snapshot body: a header, then one block per tensor; stable, diff-friendly, no paths."""
    lines = [
        FORMAT_HEADER,
        f"model: {stats.model}",
        f"bins: {stats.bins}",
        "quantiles: " + " ".join(f"{q:g}" for q in stats.quantiles),
    ]
    for t in stats.tensors:
        lines += [
            "",
            f"{t.kind} {t.name}",
            f"  shape: [{', '.join(str(d) for d in t.shape)}]",
            f"  dtype: {t.dtype}",
            f"  trainable: {str(t.trainable).lower()}",
            f"  count: {t.count}",
            f"  nonfinite: {t.nonfinite}",
        ]
        lines += [f"  {m}: {_fmt(getattr(t, m))}" for m in MOMENTS]
        # strict=False: records are public dataclasses; one built by hand with fewer quantiles
        # writes fewer lines, which the parser then names.
        pairs = zip(stats.quantiles, t.quantiles, strict=False)
        lines += [f"  {_quantile_label(q)}: {_fmt(v)}" for q, v in pairs]
        lines.append("  hist: " + " ".join(_fmt(v) for v in t.hist))
    return "\n".join(lines) + "\n"


class _Lines:
    """Numbered lines of a snapshot body, so every parse error can name the line at fault."""

    def __init__(self, text: str, source: str) -> None:
        self.items = list(enumerate(text.splitlines(), start=1))
        self.pos = 0
        self.source = source

    def error(self, lineno: int, problem: str) -> SnapshotFormatError:
        return SnapshotFormatError(
            f"{self.source}, line {lineno}: {problem}. The file is corrupt or was edited by hand; "
            "regenerate it with `pytest --snapshot-update`"
        )

    def next(self, what: str) -> tuple[int, str]:
        while self.pos < len(self.items) and not self.items[self.pos][1].strip():
            self.pos += 1
        if self.pos >= len(self.items):
            last = self.items[-1][0] if self.items else 0
            raise self.error(last + 1, f"unexpected end of file, expected {what}")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def field(self, key: str, indent: str = "") -> tuple[int, str]:
        lineno, line = self.next(f"'{indent}{key}: ...'")
        prefix = f"{indent}{key}:"
        if not line.startswith(prefix):
            raise self.error(lineno, f"expected '{prefix} ...', got {line.strip()!r}")
        return lineno, line[len(prefix):].strip()

    def at_end(self) -> bool:
        return all(not line.strip() for _, line in self.items[self.pos:])


def _number(lines: _Lines, lineno: int, raw: str, kind: type = float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise lines.error(lineno, f"{raw!r} is not a {'number' if kind is float else 'whole number'}") from None
    if kind is int and value < 0:
        raise lines.error(lineno, f"{raw!r} must not be negative")
    return value


def _floats(lines: _Lines, lineno: int, raw: str) -> tuple[float, ...]:
    return tuple(_number(lines, lineno, part) for part in raw.split())


def parse_stats(text: str, source: str = "snapshot") -> ParamStats:
    """Read a snapshot body back; anything unexpected is a ``SnapshotFormatError`` naming the line."""
    lines = _Lines(text, source)
    lineno, line = lines.next("the format header")
    if line.strip() != FORMAT_HEADER:
        raise lines.error(lineno, f"expected the header {FORMAT_HEADER!r}, got {line.strip()!r}")
    _, model = lines.field("model")
    lineno, raw = lines.field("bins")
    bins = _number(lines, lineno, raw, int)
    if bins < 1:
        raise lines.error(lineno, "bins must be at least 1")
    lineno, raw = lines.field("quantiles")
    quantiles = _floats(lines, lineno, raw)
    tensors: list[TensorStats] = []
    seen: set[str] = set()
    while not lines.at_end():
        tensors.append(_parse_tensor(lines, bins, quantiles, seen))
    return ParamStats(model=model, bins=bins, quantiles=quantiles, tensors=tuple(tensors))


def _parse_tensor(lines: _Lines, bins: int, quantiles: tuple[float, ...], seen: set[str]) -> TensorStats:
    lineno, line = lines.next("'param NAME' or 'buffer NAME'")
    kind, _, name = line.partition(" ")
    if kind not in KINDS or not name.strip() or line.startswith(" "):
        raise lines.error(lineno, f"expected 'param NAME' or 'buffer NAME', got {line.strip()!r}")
    if name in seen:
        raise lines.error(lineno, f"{name!r} appears twice")
    seen.add(name)
    ind = "  "
    lineno, raw = lines.field("shape", ind)
    if not (raw.startswith("[") and raw.endswith("]")):
        raise lines.error(lineno, f"shape must look like [2, 3], got {raw!r}")
    shape = tuple(_number(lines, lineno, d.strip(), int) for d in raw[1:-1].split(",") if d.strip())
    _, dtype = lines.field("dtype", ind)
    lineno, raw = lines.field("trainable", ind)
    if raw not in ("true", "false"):
        raise lines.error(lineno, f"trainable must be true or false, got {raw!r}")
    trainable = raw == "true"
    lineno, raw = lines.field("count", ind)
    count = _number(lines, lineno, raw, int)
    lineno, raw = lines.field("nonfinite", ind)
    nonfinite = _number(lines, lineno, raw, int)
    moments = {}
    for m in MOMENTS:
        lineno, raw = lines.field(m, ind)
        moments[m] = _number(lines, lineno, raw)
    qs = []
    for q in quantiles:
        lineno, raw = lines.field(_quantile_label(q), ind)
        qs.append(_number(lines, lineno, raw))
    lineno, raw = lines.field("hist", ind)
    hist = _floats(lines, lineno, raw)
    if len(hist) != bins:
        raise lines.error(lineno, f"hist has {len(hist)} values but the header says bins: {bins}")
    return TensorStats(
        name=name, kind=kind, shape=shape, dtype=dtype, trainable=trainable, count=count,
        nonfinite=nonfinite, quantiles=tuple(qs), hist=hist, **moments,
    )  # fmt: skip


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Tolerance:
    """``|actual - stored| <= atol + rtol * |stored|`` per statistic.

    Histogram fractions live on a fixed [0, 1] scale, so they are compared with
    ``atol + rtol`` (the relative tolerance taken against the scale, not the stored fraction).
    Overrides are ``(glob pattern, value)`` pairs matched against tensor names; the first match
    wins, otherwise the default applies.
    """

    rtol: float
    atol: float
    rtol_overrides: tuple[tuple[str, float], ...] = ()
    atol_overrides: tuple[tuple[str, float], ...] = ()

    @classmethod
    def resolve(cls, rtol: ToleranceSpec, atol: ToleranceSpec, default_rtol: float, default_atol: float) -> Tolerance:
        """Per-call values over the defaults; a mapping gives per-tensor glob overrides."""
        r_default, r_over = _split_spec("rtol", rtol, default_rtol)
        a_default, a_over = _split_spec("atol", atol, default_atol)
        return cls(rtol=r_default, atol=a_default, rtol_overrides=r_over, atol_overrides=a_over)

    def for_tensor(self, name: str) -> tuple[float, float]:
        return _lookup(self.rtol_overrides, name, self.rtol), _lookup(self.atol_overrides, name, self.atol)


def _split_spec(label: str, spec: ToleranceSpec, default: float) -> tuple[float, tuple[tuple[str, float], ...]]:
    if spec is None:
        return default, ()
    if isinstance(spec, Mapping):
        pairs = tuple((str(k), _check_tol(f"{label}[{k!r}]", v)) for k, v in spec.items())
        return default, pairs
    return _check_tol(label, spec), ()


def _check_tol(label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ModelvizUsageError(
            f"{label} must be a finite number >= 0 (or, for rtol/atol, a dict of glob pattern -> "
            f"number), got {value!r}"
        )
    return float(value)


def _lookup(overrides: Iterable[tuple[str, float]], name: str, default: float) -> float:
    return next((v for pattern, v in overrides if fnmatch.fnmatchcase(name, pattern)), default)


def _close(stored: float, actual: float, tol: float) -> bool:
    if math.isnan(stored) or math.isnan(actual):
        return math.isnan(stored) and math.isnan(actual)
    if math.isinf(stored) or math.isinf(actual):
        return stored == actual
    return abs(actual - stored) <= tol


def compare_stats(stored: ParamStats, actual: ParamStats, tolerance: Tolerance) -> list[str]:
    """One line per difference beyond tolerance, in stored order; empty when they agree."""
    out: list[str] = []
    if stored.bins != actual.bins or stored.quantiles != actual.quantiles:
        out.append(
            f"layout: stored bins={stored.bins} quantiles={list(stored.quantiles)}, actual "
            f"bins={actual.bins} quantiles={list(actual.quantiles)} (pass bins={stored.bins} to "
            "keep the stored layout)"
        )
        return out
    actual_names = {t.name for t in actual.tensors}
    stored_names = {t.name for t in stored.tensors}
    for t in stored.tensors:
        if t.name not in actual_names:
            out.append(f"{t.name}: removed ({t.kind} [{_dims(t.shape)}] {t.dtype})")
    for t in actual.tensors:
        if t.name not in stored_names:
            out.append(f"{t.name}: added ({t.kind} [{_dims(t.shape)}] {t.dtype})")
    for s in stored.tensors:
        a = actual.get(s.name)
        if a is not None:
            out.extend(_compare_tensor(s, a, stored.quantiles, tolerance))
    return out


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in shape)


def _compare_tensor(s: TensorStats, a: TensorStats, levels: tuple[float, ...], tol: Tolerance) -> Iterator[str]:
    reshaped = s.shape != a.shape
    if reshaped:
        yield f"{s.name}: shape [{_dims(s.shape)}] -> [{_dims(a.shape)}]"
    exact = [("kind", s.kind, a.kind), ("dtype", s.dtype, a.dtype), ("trainable", s.trainable, a.trainable),
             ("count", s.count, a.count), ("nonfinite", s.nonfinite, a.nonfinite)]  # fmt: skip
    for key, sv, av in exact[: 3 if reshaped else None]:
        if sv != av:
            yield f"{s.name} {key}: stored {sv}, actual {av}"
    if reshaped:
        return  # another tensor: its statistics all differ, and listing them would bury the cause
    rtol, atol = tol.for_tensor(s.name)
    numbers = [(m, getattr(s, m), getattr(a, m)) for m in MOMENTS]
    # Same levels and bins on both sides (``compare_stats`` checked the layout); strict=False keeps
    # a hand-built record with fewer values comparable on the values it has.
    quantiles = zip(levels, s.quantiles, a.quantiles, strict=False)
    numbers += [(_quantile_label(q), sq, aq) for q, sq, aq in quantiles]
    for key, sv, av in numbers:
        limit = atol + rtol * abs(sv) if math.isfinite(sv) else 0.0
        if not _close(sv, av, limit):
            yield (
                f"{s.name} {key}: stored {_fmt(sv)}, actual {_fmt(av)} "
                f"(|diff| {_fmt(abs(av - sv))} > {_fmt(limit)} = atol {atol:g} + rtol {rtol:g} * |stored|)"
            )
    hist_limit = atol + rtol
    hist_pairs = enumerate(zip(s.hist, a.hist, strict=False))
    off = [(i, sv, av) for i, (sv, av) in hist_pairs if not _close(sv, av, hist_limit)]
    if off:
        i, sv, av = max(off, key=lambda d: abs(d[2] - d[1]))
        yield (
            f"{s.name} hist: {len(off)} of {len(s.hist)} bins differ, most in bin {i}: stored "
            f"{_fmt(sv)}, actual {_fmt(av)} (fractions over [min, max]; tolerance {_fmt(hist_limit)} "
            f"= atol {atol:g} + rtol {rtol:g})"
        )
