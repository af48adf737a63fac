"""The pictures short_train logs: the same input grid torchvision draws, without importing it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from pytest_modelviz.train.summaries import image_grid, is_image_batch


@pytest.mark.parametrize("shape", [(64, 1, 28, 28), (5, 3, 10, 12), (2, 1, 4, 4), (33, 3, 5, 7)])
def test_the_input_grid_is_the_one_torchvision_draws(shape: tuple[int, int, int, int]) -> None:
    make_grid = pytest.importorskip("torchvision.utils").make_grid
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(image_grid(images), make_grid(images[:32], normalize=True))


def test_a_constant_batch_draws_black_not_nan() -> None:
    grid = image_grid(torch.full((3, 1, 4, 4), 7.0))
    assert torch.isfinite(grid).all() and grid.abs().max() == 0


@pytest.mark.parametrize(("inputs", "expected"), [
    (torch.zeros(2, 1, 4, 4), True),
    (torch.zeros(2, 3, 4, 4), True),
    (torch.zeros(2, 2, 4, 4), False),  # neither grey nor RGB
    (torch.zeros(2, 1, 4, 4, dtype=torch.long), False),
    (torch.zeros(2, 16), False),
    ({"x": torch.zeros(2, 1, 4, 4)}, False),
])
def test_only_grey_or_rgb_float_batches_are_drawn(inputs: object, expected: bool) -> None:
    assert is_image_batch(inputs) is expected


def test_logging_an_image_batch_does_not_import_torchvision(tmp_path: object) -> None:
    # torchvision's import takes seconds: more than a short run of a small model.
    script = textwrap.dedent(f"""
        import sys
        import torch
        from torch import nn
        from tensorboardX import SummaryWriter
        from pytest_modelviz import short_train
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        batch = (torch.randn(8, 1, 4, 4), torch.randint(0, 2, (8,)))
        writer = SummaryWriter({str(tmp_path)!r})
        short_train(model, batch, loss_fn=nn.functional.cross_entropy,
                    optimizer=lambda p: torch.optim.SGD(p, lr=0.1), steps=2, device="cpu",
                    writer=writer)
        writer.close()
        print("torchvision imported:", "torchvision" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torchvision imported: False" in done.stdout
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(tmp_path), size_guidance={ea.IMAGES: 0})
    acc.Reload()
    [image] = acc.Images("inputs/first_batch")
    assert (image.width, image.height) == (2 + 8 * 6, 2 + 6)
