"""The per-layer health checks: each planted fault fails naming its layer; healthy models pass."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from modelviz_testing import run_dir_of
from tensorboard.backend.event_processing import event_accumulator as ea
from torch import nn
from torch.nn import functional as F
from train_models import blobs, ce, mlp, sgd
from user_runs import USER_PRELUDE, folder_of, read_records, train_record

from pytest_modelviz import short_train
from pytest_modelviz.records import HealthRow, TrainRecord

EXAMPLE = Path(__file__).resolve().parents[2] / "example_project"
HEALTH_CHECKS = ("assert_gradients_healthy", "assert_no_dead_units", "assert_update_ratio", "assert_on_device")


def named(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(layers))


def every_health_check(result: Any, *, dead_units: bool = True) -> None:
    for check in HEALTH_CHECKS:
        if dead_units or check != "assert_no_dead_units":
            getattr(result, check)()


# ---------------------------------------------------------------- planted faults


def test_a_relu_behind_a_large_negative_bias_is_dead() -> None:
    model = named(("fc1", nn.Linear(4, 16)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(16, 16)),
                  ("relu2", nn.ReLU()), ("out", nn.Linear(16, 2)))
    with torch.no_grad():
        model.fc2.bias.fill_(-100.0)
    result = short_train(model, blobs(), loss_fn=ce, optimizer=sgd, steps=12, device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_no_dead_units()
    message = str(info.value)
    assert ("module relu2 (ReLU): 16 of 16 units (100%) dead on every sample of the sampled steps' batches "
            "(steps 0, 10, 11)") in message
    assert "relu1" not in message
    result.assert_no_dead_units(max_fraction=1.0)  # the threshold is the caller's


@pytest.mark.parametrize(("log_every", "watched"), [(10, [0, 10, 11]), (4, [0, 4, 8, 11]), (1, list(range(12)))])
def test_activations_are_watched_at_the_sampled_steps_only(log_every: int, watched: list[int]) -> None:
    # The other steps run the model bare: a reduction of every activation at every step would cost
    # as much as the activations themselves.
    model = named(("fc1", nn.Linear(4, 16)), ("relu1", nn.ReLU()), ("out", nn.Linear(16, 2)))
    hooked: list[bool] = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hooked.append(bool(model.relu1._forward_hooks))
        return ce(output, target)

    result = short_train(model, blobs(), loss_fn=loss_fn, optimizer=sgd, steps=12, log_every=log_every,
                         device="cpu")
    assert [step for step, on in enumerate(hooked) if on] == watched
    assert result.health is not None and list(result.health.samples) == watched
    assert not model.relu1._forward_hooks  # nothing left behind


def test_dead_convolution_channels_are_counted_per_channel() -> None:
    model = named(("conv", nn.Conv2d(1, 6, 3, padding=1)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)),
                  ("flat", nn.Flatten()), ("out", nn.Linear(6, 2)))
    with torch.no_grad():
        model.conv.bias[:4] = -100.0  # four of six channels never fire, at any position
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = short_train(model, (x, (x.mean((1, 2, 3)) > 0.5).long()), loss_fn=ce, optimizer=sgd, steps=3,
                         device="cpu")
    with pytest.raises(AssertionError, match=r"module relu \(ReLU\): 4 of 6 units \(67%\) dead"):
        result.assert_no_dead_units()


def test_a_saturated_sigmoid_is_named() -> None:
    model = named(("fc", nn.Linear(4, 8)), ("gate", nn.Sigmoid()), ("out", nn.Linear(8, 2)))
    with torch.no_grad():
        model.fc.bias.fill_(50.0)  # every output near 1: the sigmoid's gradient is ~0
    result = short_train(model, blobs(), loss_fn=ce, optimizer=sgd, steps=4, device="cpu")
    with pytest.raises(AssertionError, match=r"module gate \(Sigmoid\): 8 of 8 units \(100%\) saturated"):
        result.assert_no_dead_units()


def test_a_deep_sigmoid_stack_has_vanishing_gradients_in_its_first_layers() -> None:
    layers: list[tuple[str, nn.Module]] = []
    for i in range(20):
        layers += [(f"fc{i}", nn.Linear(16 if i else 4, 16)), (f"act{i}", nn.Sigmoid())]
    model = named(*layers, ("out", nn.Linear(16, 2)))
    result = short_train(model, blobs(), loss_fn=ce, optimizer=sgd, steps=10, device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_gradients_healthy()
    message = str(info.value)
    assert "unhealthy gradients" in message
    assert "layer fc0: vanishing gradient: its norm is at most" in message and "at every step" in message
    assert "layer out:" not in message and "layer fc19:" not in message  # the layers near the loss are fine


def test_a_learning_rate_of_1e3_explodes() -> None:
    model = named(("fc1", nn.Linear(4, 16)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(16, 16)),
                  ("relu2", nn.ReLU()), ("out", nn.Linear(16, 2)))
    result = short_train(model, blobs(), loss_fn=ce, optimizer=lambda p: torch.optim.SGD(p, lr=1e3), steps=20,
                         device="cpu", raise_on_nonfinite=False)
    with pytest.raises(AssertionError) as info:
        result.assert_gradients_healthy()
    assert "exploding gradient" in str(info.value)
    assert "layer fc1: exploding gradient: its norm" in str(info.value)
    with pytest.raises(AssertionError, match=r"layer fc1: jumps: update ratio \S+ at step 0 .* above high=1"):
        result.assert_update_ratio()


def test_gradient_norm_bounds_are_a_one_liner() -> None:
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=5, device="cpu")
    result.assert_gradients_healthy(max_norm=1e3, min_norm=1e-6)
    with pytest.raises(AssertionError, match=r"the global gradient norm is \S+ at step 0, above max_norm=1e-06"):
        result.assert_gradients_healthy(max_norm=1e-6)
    with pytest.raises(AssertionError, match=r"the global gradient norm is \S+ at step 0, below min_norm=1000"):
        result.assert_gradients_healthy(min_norm=1e3)


def test_a_frozen_layer_left_in_the_optimizer_does_not_learn() -> None:
    model = named(("body", nn.Linear(4, 16)), ("relu", nn.ReLU()), ("head", nn.Linear(16, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.body.requires_grad_(False)  # frozen by mistake after the optimizer was built
    result = short_train(model, blobs(), loss_fn=ce, optimizer=opt, steps=12, device="cpu")
    result.assert_params_updated()  # passes: the frozen layer did not move, as frozen layers must not
    with pytest.raises(AssertionError) as info:
        result.assert_update_ratio()
    message = str(info.value)
    assert "layer body: does not learn: update ratio 0 at every sampled step (steps 0, 10, 11)" in message
    assert "body.weight, body.bias are frozen (requires_grad=False) but in the optimizer" in message
    assert "layer head" not in message
    result.assert_update_ratio(allow_frozen_in_optimizer=True)


def test_a_layer_left_out_of_the_optimizer_or_with_learning_rate_zero_does_not_learn() -> None:
    model = named(("a", nn.Linear(4, 16)), ("relu", nn.ReLU()), ("b", nn.Linear(16, 16)), ("relu2", nn.ReLU()),
                  ("c", nn.Linear(16, 2)))
    opt = torch.optim.SGD([{"params": model.a.parameters()}, {"params": model.b.parameters(), "lr": 0.0}], lr=0.1)
    result = short_train(model, blobs(), loss_fn=ce, optimizer=opt, steps=3, device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_update_ratio()
    message = str(info.value)
    assert "layer b: does not learn: update ratio at most 0" in message and "learning rate 0" in message
    assert "layer c: does not learn" in message and "c.weight, c.bias are not in the optimizer" in message
    assert "layer a:" not in message


def test_optimizer_state_and_forward_tensors_off_the_device_are_named() -> None:
    class MetaTrace(torch.optim.SGD):
        """Keeps a per-parameter trace on another device than the parameters (a bug)."""

        def step(self, closure: Any = None) -> Any:
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p].setdefault("trace", torch.zeros_like(p, device="meta"))
            return super().step(closure)

    class ShapeProbe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.empty(x.shape, device="meta")  # made on another device than the run's
            return self.fc(x)

    model = ShapeProbe()
    result = short_train(model, blobs(), loss_fn=ce, optimizer=lambda p: MetaTrace(p, lr=0.1), steps=3, device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_on_device()
    message = str(info.value)
    assert "tensors not on the run's device cpu" in message
    assert "optimizer state 'trace' of fc.weight on meta at step 2" in message
    assert "tensor made in forward by torch.empty in module <root> on meta at step 0" in message


def test_a_buffer_registered_off_the_device_inside_forward_is_named_and_does_not_crash_the_run() -> None:
    class LateBuffer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not hasattr(self, "scale"):
                self.register_buffer("scale", torch.ones(2, device="meta"))  # a bug: not the run's device
            return self.fc(x)

    result = short_train(LateBuffer(), blobs(), loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    assert result.steps_run == 3
    with pytest.raises(AssertionError, match=r"(?s)buffer scale on meta"):
        result.assert_on_device()


@pytest.mark.gpu
def test_a_buffer_made_on_the_cpu_inside_forward_of_a_cuda_run_is_named() -> None:
    class CpuMask(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not hasattr(self, "mask"):
                self.register_buffer("mask", torch.ones(4))  # on the CPU: .to() ran before it existed
            return self.out(self.fc(x) * self.mask.to(x.device))

    result = short_train(CpuMask(), blobs(), loss_fn=ce, optimizer=sgd, steps=3, device="cuda")
    with pytest.raises(AssertionError) as info:
        result.assert_on_device()
    message = str(info.value)
    assert "buffer mask on cpu at step 2" in message
    assert "tensor made in forward by torch.ones in module <root> on cpu at step 0" in message


@pytest.mark.gpu
def test_healthy_models_on_cuda_raise_no_device_alarm() -> None:
    result = short_train(tiny_transformer(), token_batches(), loss_fn=token_ce,
                         optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), steps=12, device="cuda")
    every_health_check(result)


# ---------------------------------------------------------------- learns at all


def test_loss_below_reached_on_one_batch() -> None:
    result = short_train(mlp(hidden=32), blobs(16), loss_fn=ce, optimizer=lambda p: torch.optim.Adam(p, lr=0.05),
                         steps=60, overfit_batch=True, device="cpu")
    reached = result.assert_loss_below(0.05)
    assert result.losses[reached.step] == reached.loss < 0.05
    assert all(v >= 0.05 for v in result.losses[:reached.step])
    assert reached.message == f"reached loss {reached.loss:.4g} at step {reached.step} (target 0.05)"


def test_loss_below_stalled() -> None:
    result = short_train(mlp(), blobs(16), loss_fn=ce, optimizer=lambda p: torch.optim.SGD(p, lr=0.0),
                         steps=5, overfit_batch=True, device="cpu")
    lowest = min(result.losses)
    with pytest.raises(AssertionError) as info:
        result.assert_loss_below(0.01)
    assert f"the loss stalled at {lowest:.4g} (lowest, at step" in str(info.value)
    assert "never fell below 0.01 in 5 step(s)" in str(info.value)
    with pytest.raises(AssertionError, match=r"never fell below 0.5 in 2 step\(s\)"):
        short_train(mlp(), blobs(16), loss_fn=ce, optimizer=sgd, steps=20, overfit_batch=True,
                    device="cpu").assert_loss_below(0.5, within=2)


# ---------------------------------------------------------------- healthy models: no false alarms


def tiny_transformer(activation: nn.Module | str = "relu") -> nn.Module:
    class TinyEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Embedding(50, 32)
            self.pos = nn.Parameter(torch.zeros(1, 16, 32))
            layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, activation=activation, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(32, 50)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(self.embed(x) + self.pos[:, : x.shape[1]]))

    return TinyEncoder()


def token_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 50, (128, 16), generator=g)
    return [(x[i:i + 32], torch.roll(x[i:i + 32], 1, dims=1)) for i in range(0, 128, 32)]


def token_ce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output.flatten(0, 1), target.flatten())


@pytest.mark.parametrize("activation", ["relu", "module"])
def test_a_small_transformer_passes_every_health_check(activation: str) -> None:
    model = tiny_transformer(nn.ReLU() if activation == "module" else "relu")
    result = short_train(model, token_batches(), loss_fn=token_ce,
                         optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), steps=30, device="cpu")
    assert result.health is not None
    if activation == "module":  # its ReLU modules were watched, and found alive
        every_health_check(result)
        assert [a.module for a in result.health.activations] == ["encoder.layers.0.activation",
                                                                   "encoder.layers.1.activation"]
    else:  # a functional ReLU is not seen: the dead-unit check says so instead of passing
        with pytest.raises(AssertionError, match=r"no ReLU, .* module to watch.*activation=nn.ReLU\(\)"):
            result.assert_no_dead_units()
        every_health_check(result, dead_units=False)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_example_convnet_passes_every_health_check(monkeypatch: pytest.MonkeyPatch, optimizer: str) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from digits.data import Digits
    from digits.models import build

    loader = torch.utils.data.DataLoader(Digits("train"), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    make = ((lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)) if optimizer == "sgd"
            else (lambda p: torch.optim.Adam(p, lr=1e-3)))
    result = short_train(build("convnet", seed=0), loader, loss_fn=F.cross_entropy, optimizer=make, steps=40,
                         device="cpu")
    every_health_check(result)
    assert result.health is not None and {a.module for a in result.health.activations} == {
        "relu1", "relu2", "fc.1", "fc.3"}


def test_the_measurements_are_sampled_at_log_steps_and_the_last_one() -> None:
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=25, log_every=10, device="cpu")
    assert result.health is not None and result.health.samples == (0, 10, 20, 24)
    assert set(result.health.param_norms) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert all(len(v) == 4 for v in result.health.update_norms.values())


def test_without_measurements_the_health_checks_fail_rather_than_pass() -> None:
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=3, device="cpu", health=False)
    assert result.health is None
    for check in ("assert_no_dead_units", "assert_update_ratio", "assert_on_device"):
        with pytest.raises(AssertionError, match=r"needs the run's health measurements, and this result has none"):
            getattr(result, check)()


def test_a_model_whose_activations_cannot_be_watched_fails_the_dead_unit_check() -> None:
    result = short_train(nn.DataParallel(mlp()), blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu")
    with pytest.raises(AssertionError, match=r"cannot check dead units: activations are not watched in a DataParallel"):
        result.assert_no_dead_units()
    result.assert_update_ratio()


def test_hooks_are_removed_after_training_also_when_it_fails() -> None:
    model = mlp()

    def bad_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if bad_loss.calls == 2:  # type: ignore[attr-defined]
            raise ValueError("boom")
        bad_loss.calls += 1  # type: ignore[attr-defined]
        return ce(out, y)

    bad_loss.calls = 0  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="boom"):
        short_train(model, blobs(), loss_fn=bad_loss, optimizer=sgd, steps=5, device="cpu")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    short_train(model, blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------- the record


def test_health_rows_round_trip_and_bad_values_are_named() -> None:
    record = TrainRecord(name="run", health=(HealthRow("fc.0", "Linear", 0.5, 1e-3, None, ""),
                                             HealthRow("relu", "ReLU", None, None, 1.0, "module relu: dead")))
    assert TrainRecord.from_json(record.to_json()) == record
    data = record.to_json()
    data["health"] = [{"layer": "x", "grad_norm": "lots"}, 3]
    back = TrainRecord.from_json(data)
    assert back.health == (HealthRow("x"),)
    assert "health[0].grad_norm: expected a finite number, got 'lots'" in back.problems
    assert "health[1]: expected an object, got a number" in back.problems


# ---------------------------------------------------------------- as users run it


USER_TESTS = USER_PRELUDE + """
from collections import OrderedDict


def test_dead(short_train):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([("fc", nn.Linear(4, 8)), ("act<i>", nn.ReLU()), ("out", nn.Linear(8, 2))]))
    with torch.no_grad():
        model.fc.bias.fill_(-100.0)
    result = short_train(model, make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=12)
    result.assert_gradients_healthy()
    result.assert_no_dead_units()


def test_learns(short_train):
    result = short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=40,
                         overfit_batch=True)
    result.assert_loss_below(0.2)
"""


def test_users_see_the_dead_module_in_the_failure_the_report_and_tensorboard(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: Sequential: dead or saturated units:",
        "*module act<i> (ReLU): 8 of 8 units (100%) dead on every sample of the sampled steps' batches "
        "(steps 0, 10, 11), above max_fraction=0.5",
    ])
    run_dir = run_dir_of(pytester)
    dead = folder_of(run_dir, "test_dead")
    records = read_records(dead)
    checks = {r["name"]: r for r in records if r["kind"] == "check"}
    assert checks["assert_gradients_healthy"]["passed"] is True
    assert checks["assert_no_dead_units"]["passed"] is False and "act<i>" in checks["assert_no_dead_units"]["message"]
    rows = {row["layer"]: row for row in train_record(dead)["health"]}
    assert list(rows) == ["fc", "act<i>", "out"]
    assert rows["act<i>"]["dead_fraction"] == 1.0 and "8 of 8 units" in rows["act<i>"]["problem"]
    assert rows["fc"]["kind"] == "Linear" and rows["out"]["problem"] == ""
    assert rows["out"]["grad_norm"] > 0 and rows["out"]["update_ratio"] > 0

    page = (run_dir / "report.html").read_text()
    assert "act<i>" not in page  # escaped everywhere
    assert '<tr class="bad"><td class="layer">act&lt;i&gt;</td><td>ReLU</td>' in page
    assert '<tr class="ok"><td class="layer">out</td><td>Linear</td>' in page

    acc = ea.EventAccumulator(str(dead / "tensorboard"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("health/grad_norm/out")] == [0, 10, 11]  # modelviz_log_every = 10, the last
    assert [e.value for e in acc.Scalars("health/dead_fraction/act<i>")] == [1.0, 1.0, 1.0]
    assert {"health/update_ratio/fc", "health/update_ratio/out"} <= set(acc.Tags()["scalars"])

    learns = {r["name"]: r for r in read_records(folder_of(run_dir, "test_learns")) if r["kind"] == "check"}
    assert learns["assert_loss_below"]["passed"] is True
    assert learns["assert_loss_below"]["message"].startswith("reached loss ")
    assert "(target 0.2)" in learns["assert_loss_below"]["message"]
