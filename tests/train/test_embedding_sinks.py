"""The embedding projector in both sinks: TensorBoard's projector files, read back as TensorBoard
reads them, and visdom's principal-component scatter, read back from a real server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from tensorboardX import SummaryWriter

# The tiny models live with the training tests, the visdom server with the visdom tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "visdom"))
from train_models import SmallCNN, ce, images, sgd  # noqa: E402
from visdom_testing import *  # noqa: E402,F401,F403  (the test server and its fixtures)
from visdom_testing import ReadWindow  # noqa: E402

from pytest_modelviz import short_train  # noqa: E402
from pytest_modelviz.tensorboard.sink import TensorBoardSink  # noqa: E402
from pytest_modelviz.visdom.sink import VisdomSink, principal_components, window_id  # noqa: E402


def read_projector(logdir: Path) -> ProjectorConfig:
    config = ProjectorConfig()
    text_format.Parse((logdir / "projector_config.pbtxt").read_text(), config)
    return config


def test_tensorboard_writes_what_the_projector_reads(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, 3, generator=g)
    thumbs = torch.rand(6, 3, 4, 4, generator=g)
    writer = SummaryWriter(logdir=str(tmp_path))
    sink = TensorBoardSink(writer)
    sink.embedding(7, "embedding/fc.input", features, [0, 1, 2, 0, 1, 2], thumbs)
    sink.embedding(9, "embedding/plain", features[:2], None, None)
    sink.close()
    writer.close()
    first, second = read_projector(tmp_path).embeddings
    assert first.tensor_name == "embedding/fc.input:00007"
    tensors = np.loadtxt(tmp_path / first.tensor_path, delimiter="\t", ndmin=2)
    np.testing.assert_allclose(tensors, features.numpy(), rtol=1e-6)
    assert (tmp_path / first.metadata_path).read_text().splitlines() == ["0", "1", "2", "0", "1", "2"]
    assert list(first.sprite.single_image_dim) == [4, 4]
    sprite = Image.open(tmp_path / first.sprite.image_path)
    assert sprite.size == (12, 12)  # three 4-pixel thumbnails a row, padded to a square
    assert (second.tensor_name, second.metadata_path, second.sprite.image_path) == ("embedding/plain:00009", "", "")
    assert np.loadtxt(tmp_path / second.tensor_path, delimiter="\t", ndmin=2).shape == (2, 3)


def test_short_train_projects_the_first_batch_at_the_last_step(tmp_path: Path) -> None:
    x, y = images(16)
    writer = SummaryWriter(logdir=str(tmp_path))
    result = short_train(SmallCNN(), (x, y), loss_fn=ce, optimizer=sgd, steps=4, device="cpu", writer=writer,
                         embedding=True, embedding_every=2)
    writer.close()
    configs = read_projector(tmp_path).embeddings
    assert [c.tensor_name for c in configs] == ["embedding/head.input:00001", "embedding/head.input:00003"]
    last = configs[-1]
    model = result.model.eval()
    with torch.no_grad():
        expected = torch.nn.functional.max_pool2d(torch.relu(model.bn(model.conv(x))), 2).flatten(1)
    tensors = np.loadtxt(tmp_path / last.tensor_path, delimiter="\t")
    np.testing.assert_allclose(tensors, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert (tmp_path / last.metadata_path).read_text().split() == [str(v) for v in y.tolist()]
    assert list(last.sprite.single_image_dim) == [8, 8]


def test_principal_components_match_sklearn_up_to_sign() -> None:
    from sklearn.decomposition import PCA

    g = np.random.default_rng(0)
    features = g.normal(size=(40, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    ours = principal_components(features, 2)
    theirs = PCA(n_components=2).fit_transform(features)
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(principal_components(features, 2), ours)  # no randomness
    assert principal_components(features[:, :1], 2)[:, 1].tolist() == [0.0] * 40  # a missing axis is zeros
    assert principal_components(np.zeros((0, 3)), 2).shape == (0, 2)


def test_visdom_draws_a_scatter_coloured_by_label(env_client: Any, read_window: ReadWindow, env: str) -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(9, 4, generator=g)
    labels = [3, 1, 1, 3, 7, 7, 1, 3, 7]
    VisdomSink(env_client).embedding(4, "embedding/fc.input", features, labels, None)
    win = read_window(window_id("embedding", "embedding/fc.input"), env)
    assert win["title"] == "embedding/fc.input (step 4)"
    traces = win["content"]["data"]
    assert [t["name"] for t in traces] == ["1", "3", "7"]  # one colour and legend entry per class
    points = principal_components(features.double().numpy(), 2)
    for trace, label in zip(traces, [1, 3, 7], strict=True):
        rows = [i for i, v in enumerate(labels) if v == label]
        assert trace["type"] == "scatter" and trace["mode"] == "markers"
        np.testing.assert_allclose(trace["x"], points[rows, 0])
        np.testing.assert_allclose(trace["y"], points[rows, 1])


def test_visdom_without_labels_draws_one_trace(env_client: Any, read_window: ReadWindow, env: str) -> None:
    features = torch.arange(12, dtype=torch.float32).reshape(6, 2) ** 2
    VisdomSink(env_client).embedding(0, "embedding/x", features, None, None)
    [trace] = read_window(window_id("embedding", "embedding/x"), env)["content"]["data"]
    assert len(trace["x"]) == 6
    with pytest.raises(ValueError, match=r"'embedding/x' at step 1: 2 labels for 6 rows"):
        VisdomSink(env_client).embedding(1, "embedding/x", features, [0, 1], None)
