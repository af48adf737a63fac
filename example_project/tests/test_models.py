"""What the models are: architecture snapshots and the statistics of their initial weights.

Change a layer (say ``conv2`` to 64 channels) and these fail with a diff that names it;
``pytest --snapshot-update`` accepts the change.
"""

from __future__ import annotations

import pytest
import torch

from digits.models import ConvNet, LeNet, build


def test_convnet_architecture(graph_snapshot, digit_batch):
    graph = graph_snapshot(ConvNet(), digit_batch, name="convnet")
    assert graph.totals.params == sum(p.numel() for p in ConvNet().parameters())


def test_lenet_architecture(graph_snapshot, digit_batch):
    graph = graph_snapshot(LeNet(), digit_batch, name="lenet")
    assert graph.totals.params == 61_706  # LeNet-5's well-known parameter count


def test_convnet_initial_weights(graph_snapshot):
    # A seeded init: a changed init scheme (or a layer initialised twice) changes these statistics.
    graph_snapshot.parameters(build("convnet", seed=0), name="convnet-init")


@pytest.mark.parametrize("name", ["convnet", "lenet"])
def test_logits_shape(name, digit_batch):
    model = build(name, seed=0)
    assert model(digit_batch.repeat(3, 1, 1, 1)).shape == (3, 10)


def test_seeded_build_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build("lenet", seed=0)
    assert torch.equal(torch.rand(3), expected)
