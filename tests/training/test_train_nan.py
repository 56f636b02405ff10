"""A NaN stops training with the step and the sample keys named; the last good checkpoint stays intact."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from train_helpers import InjectNaN, tiny_config, write_config

from convrnn.training import ConvRNNModule, NonFiniteLossError
from convrnn.training.cli import ConvRNNCLI


def test_nan_loss_stops_and_names_step_and_keys(tmp_path: Path, synthetic_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(sys, "argv", ["train.py"])
    threads = torch.get_num_threads()
    cfg = tiny_config(synthetic_root, tmp_path / "runs", trainer={"max_steps": 8, "limit_val_batches": 0})
    cli = ConvRNNCLI(args=["--config", str(write_config(tmp_path / "c.yaml", cfg))], run=False)
    injector = InjectNaN(step=5)  # checkpoints at steps 2 and 4; the NaN arrives in the 6th batch
    cli.trainer.callbacks.append(injector)
    try:
        with pytest.raises(NonFiniteLossError) as exc:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        torch.set_num_threads(threads)
    message = str(exc.value)
    assert "global step 5" in message
    assert injector.key is not None and injector.key in message
    assert "rank 0" in message
    ckpt = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    assert ckpt.read_bytes() == injector.last_ckpt_before  # not rewritten after the NaN
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())  # no optimiser step on the NaN batch


def test_nonfinite_gradient_is_refused() -> None:
    module = ConvRNNModule(arch="ugrnn_intermediate", overrides={"input_size": 32, "width_multiplier": 0.0625,
                                                                  "num_classes": 4, "times": 11})
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    next(module.parameters()).grad[..., 0] = float("inf")
    module._last_keys = ["img_a", "img_b"]
    with pytest.raises(NonFiniteLossError, match="non-finite gradient.*img_a, img_b"):
        module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.1))


def test_check_finite_off_lets_it_through() -> None:
    module = ConvRNNModule(arch="ugrnn_intermediate", check_finite=False,
                           overrides={"input_size": 32, "width_multiplier": 0.0625, "num_classes": 4, "times": 11})
    for p in module.parameters():
        p.grad = torch.full_like(p, float("nan"))
    module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.1))  # no error
