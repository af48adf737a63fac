"""How the models train: short seeded runs with health checks, extra plots, the training script."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from digits.models import LeNet, build
from digits.train import accuracy, accuracy_every, load_checkpoint, main


def sgd(lr: float):
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9)


def test_convnet_learns_digits(short_train, train_loader, test_loader):
    model = build("convnet", seed=0)
    result = short_train(
        model,
        train_loader,
        loss_fn=F.cross_entropy,
        optimizer=sgd(0.05),
        steps=60,
        eval_fn=accuracy_every(test_loader),  # test accuracy in TensorBoard, visdom and the report
        eval_every=20,
        name="convnet",
    )
    result.assert_finite()
    result.assert_loss_decreased()
    result.assert_all_params_receive_grad()
    result.assert_params_updated()
    assert accuracy(model, test_loader) > 0.6


def test_lenet_overfits_one_batch(short_train, train_loader):
    # A model that cannot drive the loss down on a single batch has a bug, not a data problem.
    result = short_train(
        build("lenet", seed=0), train_loader, loss_fn=F.cross_entropy, optimizer=sgd(0.1),
        steps=40, overfit_batch=True, name="lenet-overfit",
    )
    result.assert_loss_decreased()


def test_convnet_resumes_from_a_checkpoint(short_train, train_loader):
    result = short_train(
        build("convnet", seed=1), train_loader, loss_fn=F.cross_entropy, optimizer=sgd(0.05),
        steps=10, name="convnet-resume",
    )
    result.assert_resume_equivalent()


def test_extra_plots(tb_writer, visdom_client, train_set):
    """Anything else worth a look, logged by hand next to what the fixtures log."""
    images, labels = train_set.images[:64], train_set.labels
    grid = make_grid(images, nrow=8, normalize=True)
    tb_writer.add_image("data/samples", grid, 0)
    tb_writer.add_histogram("data/labels", labels.double(), 0)
    tb_writer.flush()
    counts = torch.bincount(labels, minlength=10).double()
    win = visdom_client.bar(X=counts.numpy(), win="class-counts",
                            opts={"title": "training samples per class"})
    assert win == "class-counts"

    assert read_tags(tb_writer.logdir, "images") == ["data/samples"]
    assert read_tags(tb_writer.logdir, "histograms") == ["data/labels"]


def read_tags(logdir: str, kind: str, timeout: float = 20.0) -> list[str]:
    """The tags of ``kind`` in the event files, polled: the writer's thread may still be writing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    deadline = time.monotonic() + timeout
    events = EventAccumulator(logdir, size_guidance={kind: 0})
    while True:
        events.Reload()
        tags = events.Tags()[kind]
        if tags or time.monotonic() > deadline:
            return tags
        time.sleep(0.05)


def test_training_script_saves_a_checkpoint_that_loads(tmp_path, capsys):
    out = tmp_path / "ckpt.pt"
    reloaded = main(["--epochs", "1", "--device", "cpu", "--limit", "256", "--out", str(out),
                     "--model", "lenet"])
    assert "saved" in capsys.readouterr().out
    model = load_checkpoint(LeNet(), out)
    state = torch.load(out, weights_only=True)
    assert set(state) == set(model.state_dict())
    assert reloaded > 0.1  # better than chance after one short epoch


@pytest.mark.gpu
def test_convnet_trains_on_cuda(short_train, train_loader):
    result = short_train(
        build("convnet", seed=0), train_loader, loss_fn=F.cross_entropy, optimizer=sgd(0.05),
        steps=30, name="convnet-cuda",
    )
    result.assert_finite()
    result.assert_loss_decreased()
    assert next(result.model.parameters()).is_cuda
