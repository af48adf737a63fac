"""What real training code uses: complex buffers (RoPE), schedulers sized to the run,
ReduceLROnPlateau, float16 with loss scaling, gradient accumulation."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from train_models import batches, blobs, ce, mlp, sgd

from pytest_modelviz import TrainingError, short_train
from pytest_modelviz.train.state import fingerprints


class Rotary(nn.Module):
    """A Llama-style model with a complex ``freqs_cis`` buffer that rotates its features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(4, 8)
        self.out = nn.Linear(8, 2)
        angles = torch.arange(4, dtype=torch.float32) * 0.3
        self.register_buffer("freqs_cis", torch.polar(torch.ones(4), angles))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        pairs = torch.view_as_complex(h.reshape(h.shape[0], 4, 2))
        rotated = torch.view_as_real(pairs * self.freqs_cis).reshape(h.shape[0], 8)
        return self.out(torch.relu(rotated))


def test_a_complex_buffer_trains_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what -W error does to a user's suite
        result = short_train(Rotary(), blobs(32), loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    result.assert_params_updated()


def test_the_fingerprint_of_a_complex_tensor_sees_the_imaginary_part() -> None:
    z = torch.polar(torch.ones(4), torch.arange(4, dtype=torch.float32))
    moved = z.clone()
    moved[1] = torch.complex(moved[1].real, moved[1].imag + 1e-3)  # the real part is untouched
    assert fingerprints({"z": z}) != fingerprints({"z": moved})
    assert fingerprints({"z": z}) == fingerprints({"z": z.clone()})
    assert fingerprints({"z": z.conj()}) != fingerprints({"z": z})


def test_a_drifting_imaginary_part_of_a_static_complex_buffer_is_reported() -> None:
    class Drifting(Rotary):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():  # a bug: the forward rotates the frozen table a little, in place
                self.freqs_cis.imag.add_(1e-3)
            return super().forward(x)

    model = Drifting()
    model.eval()  # eval mode: its buffers are static
    result = short_train(model, blobs(32), loss_fn=ce, optimizer=sgd, steps=2, device="cpu")
    pattern = r"buffer\(s\) of frozen or eval-mode module\(s\) changed: freqs_c"
    with pytest.raises(AssertionError, match=pattern):
        result.assert_params_updated()


# ------------------------------------------------------------------ schedulers


def test_resume_check_with_a_schedule_sized_to_the_run() -> None:
    steps = 10
    result = short_train(
        mlp(), batches(4), loss_fn=ce, optimizer=sgd, steps=steps, device="cpu",
        scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps),
    )
    result.assert_resume_equivalent()


def test_resume_check_names_a_scheduler_state_that_does_not_load() -> None:
    class Forgetful(torch.optim.lr_scheduler.StepLR):
        def load_state_dict(self, state_dict: dict) -> None:
            super().load_state_dict({**state_dict, "last_epoch": 0})

    result = short_train(mlp(), batches(2), loss_fn=ce, optimizer=sgd, steps=3, device="cpu",
                         scheduler=lambda opt: Forgetful(opt, step_size=1, gamma=0.5))
    with pytest.raises(AssertionError, match=r"scheduler state 'last_epoch': 3 vs 0"):
        result.assert_resume_equivalent()


def test_reduce_lr_on_plateau_steps_on_the_training_loss() -> None:
    def flat(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output * 0).sum() + 1.0  # a loss that never improves

    result = short_train(
        mlp(), blobs(32), loss_fn=flat, optimizer=sgd, steps=5, device="cpu",
        scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
    )
    # Step 0 sets the best loss; every later step is no better, so the lr halves after each.
    assert result.lrs == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125])
    result.assert_resume_equivalent()


def test_reduce_lr_on_plateau_on_an_eval_metric() -> None:
    seen = []

    def accuracy(model: nn.Module, step: int) -> dict[str, float]:
        seen.append(step)
        return {"accuracy": 0.5}  # never improves

    result = short_train(
        mlp(), blobs(32), loss_fn=ce, optimizer=sgd, steps=6, device="cpu", eval_fn=accuracy, eval_every=2,
        scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "max", patience=0, factor=0.5),
        scheduler_metric="accuracy",
    )
    assert seen == [1, 3, 5]
    # Stepped at eval steps only: after step 1 (first value, the best so far), then halved after 3 and 5.
    assert result.lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_scheduler_metric_mistakes_are_refused_up_front() -> None:
    pattern = r"scheduler_metric='acc' names an eval metric, but there is no eva"
    with pytest.raises(TrainingError, match=pattern):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu", scheduler_metric="acc")
    with pytest.raises(TrainingError, match=r"scheduler_metric='acc' applies to ReduceLROnPlateau"):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu", scheduler_metric="acc",
                    eval_fn=lambda m, s: {"acc": 1.0},
                    scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1))
    missing = r"step 0: scheduler_metric='acc' is not among the metrics eval_fn returned \('loss'\)"
    with pytest.raises(TrainingError, match=missing):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu", scheduler_metric="acc",
                    eval_fn=lambda m, s: {"loss": 1.0},
                    scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt))


# ------------------------------------------------------------------ precision and accumulation


def test_float16_on_the_cpu_says_why_and_what_to_use() -> None:
    pattern = r"GradScaler on CUDA only, and this run is on cpu.*autocast=torch.bf"
    with pytest.raises(TrainingError, match=pattern):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu", autocast=torch.float16)


@pytest.mark.gpu
def test_float16_on_cuda_trains_with_a_grad_scaler() -> None:
    result = short_train(mlp(), batches(4), loss_fn=ce, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
                         steps=30, device="cuda", autocast=torch.float16)
    assert result.setup is not None and result.setup.scaler is not None
    result.assert_finite()
    result.assert_loss_decreased()
    result.assert_params_updated()
    result.assert_resume_equivalent(rtol=1e-3, atol=1e-4)


def test_accumulate_takes_n_batches_per_optimizer_step() -> None:
    data = batches(4, size=8)
    accumulated = short_train(mlp(), data, loss_fn=ce, optimizer=sgd, steps=2, device="cpu", accumulate=2)
    # The same as one step on both batches at once: the gradient of the mean loss.
    whole = [(torch.cat([data[0][0], data[1][0]]), torch.cat([data[0][1], data[1][1]])),
             (torch.cat([data[2][0], data[3][0]]), torch.cat([data[2][1], data[3][1]]))]
    merged = short_train(mlp(), whole, loss_fn=ce, optimizer=sgd, steps=2, device="cpu")
    assert accumulated.steps_run == 2
    assert accumulated.losses == pytest.approx(merged.losses, rel=1e-5)
    assert accumulated.grad_norms == pytest.approx(merged.grad_norms, rel=1e-5)
    for a, b in zip(accumulated.model.parameters(), merged.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    accumulated.assert_resume_equivalent()


def test_accumulate_must_be_a_positive_int() -> None:
    with pytest.raises(TrainingError, match=r"accumulate must be a positive int, got 0"):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu", accumulate=0)


def test_bf16_stays_as_it_was() -> None:
    result = short_train(mlp(), blobs(), loss_fn=lambda out, y: F.cross_entropy(out.float(), y),
                         optimizer=sgd, steps=2, device="cpu", autocast=torch.bfloat16)
    assert result.setup is not None and result.setup.scaler is None
    result.assert_finite()
