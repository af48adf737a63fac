"""Put a model back as it was after a forward pass run only to look at it.

Capturing an architecture, drawing the autograd graph and projecting embeddings each run the
model once more; none of them may change what the test or the training run sees afterwards:
every module's train/eval flag, every buffer's values (BatchNorm running statistics, counters)
and the CPU and CUDA random streams (dropout draws from them) are as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def kept_model_state(model: torch.nn.Module) -> Iterator[None]:
    """Run the block, then restore ``model``'s modes, buffers and the RNG streams, also when it raised."""
    import torch

    modules = list(model.modules())
    modes = [(m, m.training) for m in modules]
    with torch.no_grad():
        # Each buffer once (a tied buffer is one tensor); meta buffers clone to meta, for free.
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cpu_rng = torch.get_rng_state()
    # Every CUDA device's stream, not only the model's: a forward may draw on any of them.
    initialized = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    cuda_rng = torch.cuda.get_rng_state_all() if initialized else None
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, training in modes:
            if module.training != training:  # setting it goes through Module.__setattr__
                module.training = training
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
