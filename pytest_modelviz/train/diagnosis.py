"""Per-layer training health: what ``short_train`` measured (``HealthLog``) and the judging of it.

Pure Python, no torch: ``health.py`` fills a ``HealthLog`` during the run; the ``TrainResult``
assertions, the report's health table and the TensorBoard scalars all read it through the
functions here, with the same default thresholds, so a row the report highlights is a row the
assertion names.

A *layer* is a module that owns parameters directly (``fc.0`` owns ``fc.0.weight`` and
``fc.0.bias``); parameters of the model itself belong to ``<root>``. Its gradient, parameter and
update norms are the L2 norms over all its parameters together, so a zero-initialised bias next
to a weight never divides by zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_modelviz.records import HealthRow

ROOT = "<root>"

# Defaults of the assertions (documented in docs/short_train.md, with why).
MIN_GRAD_RATIO = 1e-7  # a layer's grad norm / its parameter norm below this at every step: vanishing
MIN_VS_LARGEST = 1e-6  # a layer's grad norm / the largest layer's below this at every step: vanishing
MAX_GRAD_RATIO = 1e3  # a layer's grad norm / its parameter norm above this at any step: exploding
MAX_GROWTH = 1e3  # global grad norm, median of the last fifth of the steps / of the first fifth
MAX_DEAD = 0.5  # a module whose units were dead (saturated) for more than this fraction of them
MIN_UPDATE_RATIO = 1e-6  # update norm / parameter norm below this at every sampled step: not learning
MAX_UPDATE_RATIO = 1.0  # above this at a sampled step: the layer jumps


@dataclass(frozen=True)
class ActivationLog:
    """One watched activation module: which of its units were ever in their working range."""

    module: str
    kind: str  # the module's class: ReLU, ReLU6, Sigmoid, Tanh, ...
    units: int  # units per sample: features of a (batch, features) or (batch, seq, features) output,
    #             channels of a (batch, channels, ...) one
    inactive: int  # units never active on any sample of the run
    first_step: int  # the first and last sampled steps, whose batches the masks cover
    last_step: int
    windows: tuple[float, ...] = ()  # fraction inactive on each sampled step's batches

    @property
    def saturating(self) -> bool:
        return self.kind in SATURATING

    @property
    def fraction(self) -> float:
        return self.inactive / self.units if self.units else 0.0

    @property
    def state(self) -> str:
        return "saturated" if self.saturating else "dead"


SATURATING = ("Sigmoid", "Tanh", "Hardsigmoid", "Hardtanh")


@dataclass(frozen=True)
class Misplaced:
    """A tensor that was not on the run's device."""

    what: str  # "parameter", "buffer", "optimizer state", "model input", "tensor made in forward"
    name: str  # parameter/buffer name, "'exp_avg' of fc.weight", "torch.zeros in module 'enc.0'"
    device: str
    step: int | None = None  # when it was seen (None: before training started)

    def describe(self) -> str:
        when = "" if self.step is None else f" at step {self.step}"
        return f"{self.what} {self.name} on {self.device}{when}"


@dataclass(frozen=True)
class HealthLog:
    """Per-layer numbers of one run, taken on the device and copied to the host once, at its end.

    Parameter and update norms are sampled at ``samples`` (every ``log_every`` steps from step 0,
    and the last step): each needs a copy of the parameters, which every step would not afford.
    Gradient norms are the loop's own, every step (``TrainResult.param_grad_norms``).
    """

    device: str
    samples: tuple[int, ...] = ()
    param_norms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # parameter -> per sample
    update_norms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # parameter -> per sample
    frozen_in_optimizer: tuple[str, ...] = ()
    not_in_optimizer: tuple[str, ...] = ()
    activations: tuple[ActivationLog, ...] = ()
    misplaced: tuple[Misplaced, ...] = ()
    order: tuple[str, ...] = ()  # module names in model order (layers and activations)
    watched: str = ""  # why activations and forward tensors were not watched ("" when they were)


@dataclass(frozen=True)
class Finding:
    """One problem: the layer (module, parameter) at fault, the step and the sentence saying it."""

    check: str  # "gradients", "dead_units", "update_ratio", "device"
    where: str
    step: int | None
    message: str


def layer_of(param: str) -> str:
    return param.rpartition(".")[0] or ROOT


def by_layer(names: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(layer_of(name), []).append(name)
    return out


def _combine(values: Sequence[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def layer_grad_norms(param_grad_norms: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Each layer's gradient L2 norm per step, from its parameters' norms."""
    out: dict[str, list[float]] = {}
    for layer, names in by_layer(list(param_grad_norms)).items():
        rows = [param_grad_norms[n] for n in names]
        out[layer] = [_combine(step) for step in zip(*rows, strict=True)]
    return out


def layer_norms(per_param: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Per-layer norms per sample from ``HealthLog.param_norms`` or ``update_norms``."""
    return layer_grad_norms(per_param)


def layer_update_ratios(log: HealthLog) -> dict[str, list[float | None]]:
    """``update norm / parameter norm`` per layer per sample; None where the parameters are all zero."""
    params, updates = layer_norms(log.param_norms), layer_norms(log.update_norms)
    return {
        layer: [None if p == 0 else u / p for p, u in zip(params[layer], updates[layer], strict=True)]
        for layer in params
    }


def _param_norm_at(norms: Sequence[float], samples: Sequence[int], step: int) -> float | None:
    """The layer's parameter norm at the last sample at or before ``step``."""
    found = None
    for s, value in zip(samples, norms, strict=True):
        if s > step:
            break
        found = value
    return found


# ---------------------------------------------------------------- gradients


def gradient_findings(
    param_grad_norms: Mapping[str, Sequence[float]],
    grad_norms: Sequence[float],
    log: HealthLog | None,
    *,
    min_ratio: float = MIN_GRAD_RATIO,
    min_vs_largest: float = MIN_VS_LARGEST,
    max_ratio: float = MAX_GRAD_RATIO,
    max_growth: float | None = MAX_GROWTH,
    min_norm: float | None = None,
    max_norm: float | None = None,
) -> list[Finding]:
    layers = layer_grad_norms(param_grad_norms)
    out = _bounds(grad_norms, min_norm, max_norm)
    out += _nonfinite_gradients(layers)
    steps = len(grad_norms)
    largest = [max((v[k] for v in layers.values() if math.isfinite(v[k])), default=0.0) for k in range(steps)]
    pnorms = layer_norms(log.param_norms) if log is not None else {}
    samples = log.samples if log is not None else ()
    for layer, norms in layers.items():
        if not any(v > 0 for v in norms):
            continue  # no gradient at all: assert_all_params_receive_grad names it
        rel = [_ratio(v, _param_norm_at(pnorms.get(layer, ()), samples, k)) for k, v in enumerate(norms)]
        out += _vanishing(layer, norms, rel, largest, min_ratio, min_vs_largest)
        out += _exploding(layer, norms, rel, max_ratio)
    if max_growth is not None:
        out += _growth(grad_norms, max_growth)
    return out


def _ratio(value: float, base: float | None) -> float | None:
    if base is None or base == 0 or not math.isfinite(value):
        return None
    return value / base


def _bounds(grad_norms: Sequence[float], low: float | None, high: float | None) -> list[Finding]:
    out = []
    for k, v in enumerate(grad_norms):
        if high is not None and (v > high or math.isnan(v)):
            out.append(Finding("gradients", "the global gradient", k,
                               f"the global gradient norm is {v:.3g} at step {k}, above max_norm={high:g}"))
            break
    for k, v in enumerate(grad_norms):
        if low is not None and v < low:
            out.append(Finding("gradients", "the global gradient", k,
                               f"the global gradient norm is {v:.3g} at step {k}, below min_norm={low:g}"))
            break
    return out


def _nonfinite_gradients(layers: Mapping[str, Sequence[float]]) -> list[Finding]:
    out = []
    for layer, norms in layers.items():
        bad = next((k for k, v in enumerate(norms) if not math.isfinite(v)), None)
        if bad is not None:
            out.append(Finding("gradients", layer, bad,
                               f"layer {layer}: exploding gradient: its norm is {norms[bad]} at step {bad}"))
    return out


def _vanishing(layer: str, norms: Sequence[float], rel: Sequence[float | None], largest: Sequence[float],
               min_ratio: float, min_vs_largest: float) -> list[Finding]:
    finite = [k for k, v in enumerate(norms) if math.isfinite(v)]
    if not finite:
        return []
    known = [(k, r) for k, r in enumerate(rel) if r is not None]
    if known and all(r < min_ratio for _, r in known):
        k, r = max(known, key=lambda kr: kr[1])
        return [Finding("gradients", layer, k, (
            f"layer {layer}: vanishing gradient: its norm is at most {r:.3g} of its parameter norm "
            f"(step {k}: gradient {norms[k]:.3g}) at every step, below min_ratio={min_ratio:g}"))]
    vs = [(k, norms[k] / largest[k]) for k in finite if largest[k] > 0]
    if vs and all(v < min_vs_largest for _, v in vs):
        k, v = max(vs, key=lambda kv: kv[1])
        return [Finding("gradients", layer, k, (
            f"layer {layer}: vanishing gradient: its norm is at most {v:.3g} of the largest layer's "
            f"(step {k}: {norms[k]:.3g} vs {largest[k]:.3g}) at every step, below min_vs_largest={min_vs_largest:g}"))]
    return []


def _exploding(layer: str, norms: Sequence[float], rel: Sequence[float | None], max_ratio: float) -> list[Finding]:
    for k, r in enumerate(rel):
        if r is not None and r > max_ratio:
            return [Finding("gradients", layer, k, (
                f"layer {layer}: exploding gradient: its norm {norms[k]:.3g} at step {k} is {r:.3g} times its "
                f"parameter norm, above max_ratio={max_ratio:g}"))]
    return []


def _growth(grad_norms: Sequence[float], max_growth: float) -> list[Finding]:
    n = len(grad_norms)
    w = max(1, n // 5)
    if n < 2 * w or n < 2:
        return []
    first = _median(grad_norms[:w])
    last = _median(grad_norms[-w:])
    if first > 0 and math.isfinite(first) and (not math.isfinite(last) or last / first > max_growth):
        return [Finding("gradients", "the global gradient", n - 1, (
            f"exploding gradients: the global gradient norm grew from {first:.3g} (median of steps 0-{w - 1}) "
            f"to {last:.3g} (median of steps {n - w}-{n - 1}), more than max_growth={max_growth:g} times"))]
    return []


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values, key=lambda v: (math.isnan(v), v))
    return ordered[len(ordered) // 2]


# ---------------------------------------------------------------- dead units


def dead_findings(log: HealthLog, *, max_fraction: float = MAX_DEAD) -> list[Finding]:
    out = []
    for act in log.activations:
        if act.units and act.fraction > max_fraction:
            what = "saturated" if act.saturating else "dead"
            steps = _steps(log.samples or (act.last_step,))
            out.append(Finding("dead_units", act.module, act.last_step, (
                f"module {act.module} ({act.kind}): {act.inactive} of {act.units} units ({act.fraction:.0%}) "
                f"{what} on every sample of the sampled steps' batches (steps {steps}), "
                f"above max_fraction={max_fraction:g}")))
    return out


# ---------------------------------------------------------------- update size


def update_findings(
    log: HealthLog, *, low: float = MIN_UPDATE_RATIO, high: float = MAX_UPDATE_RATIO,
    allow_frozen_in_optimizer: bool = False,
) -> list[Finding]:
    out = []
    frozen = by_layer(log.frozen_in_optimizer)
    missing = by_layer(log.not_in_optimizer)
    for layer, ratios in layer_update_ratios(log).items():
        known = [(log.samples[i], r) for i, r in enumerate(ratios) if r is not None]
        if not known:
            continue
        steps = _steps([s for s, _ in known])
        if layer in frozen:
            if allow_frozen_in_optimizer:
                continue
            out.append(Finding("update_ratio", layer, known[0][0], (
                f"layer {layer}: does not learn: update ratio {known[-1][1]:.3g} at every sampled step "
                f"(steps {steps}): {', '.join(frozen[layer])} are frozen (requires_grad=False) but in "
                "the optimizer. Unfreeze the layer (requires_grad_(True)) if it should learn, or leave it out "
                "of the optimizer (allow_frozen_in_optimizer=True if that is intended)")))
            continue
        jumped = next(((s, r) for s, r in known if not math.isfinite(r) or r > high), None)
        if jumped is not None:
            out.append(Finding("update_ratio", layer, jumped[0], (
                f"layer {layer}: jumps: update ratio {jumped[1]:.3g} at step {jumped[0]} (update norm / parameter "
                f"norm), above high={high:g}; the usual ratio is about 1e-3: lower the learning rate or clip")))
        elif all(r < low for _, r in known):
            s, r = max(known, key=lambda sr: sr[1])
            why = (f"{', '.join(missing[layer])} are not in the optimizer" if layer in missing
                   else "is its learning rate 0 or tiny, or its gradient vanishing?")
            out.append(Finding("update_ratio", layer, s, (
                f"layer {layer}: does not learn: update ratio at most {r:.3g} (step {s}) at every sampled step "
                f"(steps {steps}), below low={low:g}; the usual ratio is about 1e-3: {why}")))
    return out


def _steps(sampled: Sequence[int]) -> str:
    steps = [str(s) for s in sampled]
    return ", ".join(steps) if len(steps) <= 6 else ", ".join(steps[:3]) + ", ..., " + steps[-1]


# ---------------------------------------------------------------- devices


def device_findings(log: HealthLog) -> list[Finding]:
    return [Finding("device", m.name, m.step, m.describe()) for m in log.misplaced]


# ---------------------------------------------------------------- the report's table


def health_rows(
    param_grad_norms: Mapping[str, Sequence[float]], grad_norms: Sequence[float], log: HealthLog,
    kinds: Mapping[str, str], frozen_in_optimizer_ok: bool = False,
) -> list[HealthRow]:
    """The table the report shows, in model order; ``kinds`` maps module names to class names."""
    findings = gradient_findings(param_grad_norms, grad_norms, log, max_growth=None)
    findings += dead_findings(log) + update_findings(log, allow_frozen_in_optimizer=frozen_in_optimizer_ok)
    problems: dict[str, list[str]] = {}
    for f in findings:
        problems.setdefault(f.where, []).append(f.message)
    grads = layer_grad_norms(param_grad_norms)
    ratios = layer_update_ratios(log)
    acts = {a.module: a for a in log.activations}
    names = [m for m in log.order if m in grads or m in ratios or m in acts]
    names += [m for m in [*grads, *ratios] if m not in names]
    rows = []
    for m in names:
        finite = [v for v in grads.get(m, ()) if math.isfinite(v)]
        known = [r for r in ratios.get(m, ()) if r is not None and math.isfinite(r)]
        act = acts.get(m)
        rows.append(HealthRow(
            layer=m, kind=act.kind if act else kinds.get(m, ""),
            grad_norm=_median(finite) if finite else None,
            update_ratio=_median(known) if known else None,
            dead_fraction=act.fraction if act else None,
            problem="; ".join(problems.get(m, [])),
        ))
    return rows
