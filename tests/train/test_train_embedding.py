"""short_train's embedding projector: which features, when, and that taking them changes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
from torch.nn import functional as F
from train_models import SmallCNN, WithUnusedLayer, batches, bn_mlp, ce, images, sgd

from pytest_modelviz import short_train
from pytest_modelviz.errors import TrainingError
from pytest_modelviz.sink import Histogram, MetricSink


class Recorder:
    """A MetricSink keeping what it is given (the other calls are covered by the sink tests)."""

    def __init__(self) -> None:
        self.embeddings: list[tuple[int, str, torch.Tensor, Sequence[int] | None, torch.Tensor | None]] = []

    def embedding(self, step: int, tag: str, features: torch.Tensor, labels: Sequence[int] | None,
                  images: torch.Tensor | None) -> None:
        self.embeddings.append((step, tag, features.clone(), labels, images))

    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...
    def histogram(self, step: int, tag: str, hist: Histogram) -> None: ...
    def image_grid(self, step: int, tag: str, grid: torch.Tensor) -> None: ...
    def heatmap(self, step: int, tag: str, matrix: torch.Tensor) -> None: ...
    def text(self, tag: str, text: str) -> None: ...
    def close(self) -> None: ...


def penultimate(model: SmallCNN, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        was = model.training
        model.eval()
        features = F.max_pool2d(F.relu(model.bn(model.conv(x))), 2).flatten(1)
        model.train(was)
    return features


def test_the_default_is_the_input_of_the_last_layer_after_the_last_step() -> None:
    x, y = images(16)
    sink = Recorder()
    as_protocol: MetricSink = sink
    result = short_train(SmallCNN(), (x, y), loss_fn=ce, optimizer=sgd, steps=3, device="cpu", embedding=True,
                         sinks=[as_protocol])
    [(step, tag, features, labels, thumbs)] = sink.embeddings
    assert (step, tag) == (2, "embedding/head.input")
    # Taken after the last update, in eval mode (BatchNorm on its running statistics).
    torch.testing.assert_close(features, penultimate(result.model, x))
    assert labels == y.tolist()
    assert thumbs is not None and thumbs.shape == (16, 1, 8, 8)
    assert thumbs.min() == 0.0 and thumbs.max() == 1.0
    assert result.model.training and result.model.bn.training  # the modes are given back


def test_every_n_steps_and_a_named_module() -> None:
    x, y = images(16)
    sink = Recorder()
    short_train(SmallCNN(), (x, y), loss_fn=ce, optimizer=sgd, steps=5, device="cpu", embedding="conv",
                embedding_every=2, sinks=[sink])
    assert [(s, t) for s, t, *_ in sink.embeddings] == [(s, "embedding/conv") for s in (1, 3, 4)]
    assert sink.embeddings[0][2].shape == (16, 4 * 8 * 8)  # the module's output, one row per example
    assert not torch.equal(sink.embeddings[0][2], sink.embeddings[-1][2])  # the model trained in between


def test_embedding_every_alone_turns_it_on_and_only_the_first_batch_is_used() -> None:
    data = batches(n_batches=3, size=8)
    sink = Recorder()
    short_train(bn_mlp(), data, loss_fn=ce, optimizer=sgd, steps=4, device="cpu", embedding_every=3, sinks=[sink])
    assert [(s, t) for s, t, *_ in sink.embeddings] == [(2, "embedding/4.input"), (3, "embedding/4.input")]
    for _, _, features, labels, thumbs in sink.embeddings:
        assert features.shape == (8, 16) and labels == data[0][1].tolist() and thumbs is None


def test_taking_features_changes_nothing_training_does() -> None:
    """Dropout draws from the RNG and BatchNorm moves its statistics in train mode: a projection at
    every step must leave both alone."""

    def run(**kwargs: Any) -> tuple[list[float], dict[str, torch.Tensor]]:
        result = short_train(bn_mlp(), batches(), loss_fn=ce, optimizer=sgd, steps=6, device="cpu",
                             sinks=[Recorder()], **kwargs)
        return result.losses, result.model.state_dict()

    plain_losses, plain_state = run()
    losses, state = run(embedding=True, embedding_every=1)
    assert losses == plain_losses
    assert plain_state.keys() == state.keys()
    for key in state:
        assert torch.equal(state[key], plain_state[key]), key


def test_without_sinks_nothing_runs() -> None:
    x, y = images(16)
    result = short_train(SmallCNN(), (x, y), loss_fn=ce, optimizer=sgd, steps=2, device="cpu", embedding=True)
    assert result.steps_run == 2


def test_a_module_the_forward_never_calls_is_named() -> None:
    with pytest.raises(TrainingError, match=r"step 1: embedding: module 'spare' was not called.*WithUnusedLayer"):
        short_train(WithUnusedLayer(), batches(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu",
                    embedding="spare", sinks=[Recorder()])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embedding": "nope"}, r"embedding='nope': SmallCNN has no module of that name.*conv, bn, head"),
        ({"embedding": 3}, r"embedding must be True, False or a module name, got int"),
        ({"embedding": True, "embedding_every": 0}, r"embedding_every must be a positive int, got 0"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    x, y = images(16)
    with pytest.raises(TrainingError, match=message):
        short_train(SmallCNN(), (x, y), loss_fn=ce, optimizer=sgd, steps=2, device="cpu", sinks=[Recorder()], **kwargs)


class BatchMean(torch.nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(0, keepdim=True)


class WithBatchMean(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 2)
        self.pool = BatchMean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h + self.pool(h)


def test_features_that_are_not_one_row_per_example_are_refused() -> None:
    message = r"step 0: embedding/pool: the features are Tensor\[1, 2\] float32, not .*\(16 rows\)"
    with pytest.raises(TrainingError, match=message):
        short_train(WithBatchMean(), batches(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu",
                    embedding="pool", sinks=[Recorder()])
