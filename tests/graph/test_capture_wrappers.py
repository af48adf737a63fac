"""A wrapped model (torch.compile, DataParallel, DistributedDataParallel) snapshots byte for byte
like the bare model; TorchScript and torch.export forms are refused naming what to pass instead."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo  # noqa: F401 - loaded once here: pytester runs below must not import it again
from torch import distributed as dist
from torch import nn

from pytest_modelviz import capture
from pytest_modelviz.errors import ModelvizUsageError
from pytest_modelviz.params.stats import compute_stats
from pytest_modelviz.unwrap import unwrap_model


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.fc(x)).relu())


def test_compiled_and_data_parallel_models_snapshot_like_the_bare_model() -> None:
    model, x = Net(), torch.randn(5, 4)
    # Capture never runs the compiled graph (it runs the model inside), so no compiler is needed.
    wrapped = [torch.compile(model), nn.DataParallel(model), nn.DataParallel(torch.compile(model))]
    assert all(unwrap_model(w) is model for w in wrapped)
    bare_graph, bare_stats = capture(model, x).to_text(), compute_stats(model, buffers=True).to_text()
    assert "model: Net" in bare_graph and "_orig_mod" not in bare_graph
    for w in wrapped:
        assert capture(w, x).to_text() == bare_graph
        assert compute_stats(w, buffers=True).to_text() == bare_stats


def test_distributed_data_parallel_snapshots_like_the_bare_model(tmp_path) -> None:  # noqa: ANN001
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend to build a DistributedDataParallel with")
    model, x = Net(), torch.randn(5, 4)
    bare_graph, bare_stats = capture(model, x).to_text(), compute_stats(model).to_text()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        assert capture(ddp, x).to_text() == bare_graph
        assert compute_stats(ddp).to_text() == bare_stats
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:FSDP is switching to use `NO_SHARD`:UserWarning")  # one rank
def test_fsdp_sharded_models_are_refused_naming_the_module_to_pass(tmp_path) -> None:  # noqa: ANN001
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend to shard a model with")
    from torch.distributed import fsdp
    from torch.distributed.device_mesh import init_device_mesh

    x = torch.randn(5, 4)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = fsdp.FullyShardedDataParallel(Net(), device_id=torch.device("cpu"))
        sharded = fsdp.fully_shard(Net(), mesh=init_device_mesh("cpu", (1,)))
        for model in (wrapped, torch.compile(wrapped), sharded):
            refused = r"takes the model as it is before FSDP.*Snapshot the module before wrapping it"
            with pytest.raises(ModelvizUsageError, match="capture " + refused):
                capture(model, x)
            with pytest.raises(ModelvizUsageError, match="parameter statistics " + refused):
                compute_stats(model)
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")
@pytest.mark.parametrize("form", ["script", "trace", "export"])
def test_scripted_and_exported_forms_are_refused_naming_the_module_to_pass(form: str) -> None:
    model, x = Net().eval(), torch.randn(5, 4)
    converted = {
        "script": lambda: torch.jit.script(model),
        "trace": lambda: torch.jit.trace(model, x),
        "export": lambda: torch.export.export(model, (x,)),
    }[form]()
    hint = "torch.export.export" if form == "export" else "torch.jit.script or torch.jit.trace"
    refused = rf"capture takes the eager nn.Module.*Pass the module you gave {hint}"
    with pytest.raises(ModelvizUsageError, match=refused):
        capture(converted, x)
    with pytest.raises(ModelvizUsageError, match=r"parameter statistics takes the eager nn.Module"):
        compute_stats(converted)


MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x).relu()


def test_net(graph_snapshot):
    model = {wrap}
    graph_snapshot(model, torch.randn(2, 4))
    graph_snapshot.parameters(model)
"""


def test_users_can_wrap_a_model_without_touching_its_snapshots(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_wrapped=MODEL.format(wrap="Net()"))
    pytester.runpytest("--snapshot-update", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    folder = pytester.path / "__snapshots__" / "test_wrapped"
    written = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(written) == ["test_net[Net].architecture", "test_net[Net].params"]
    for wrap in ("torch.compile(Net())", "nn.DataParallel(Net())"):
        pytester.makepyfile(test_wrapped=MODEL.format(wrap=wrap))
        result = pytester.runpytest("--snapshot-update", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == written, wrap
