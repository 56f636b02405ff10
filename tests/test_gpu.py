"""The CUDA paths against the CPU ones: the unrolled model, the torch PLS/ridge maps and a bf16 training run.

Marked ``gpu``: skipped without a CUDA device (tests/conftest.py). Run on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cross_decomposition import PLSRegression as SkPLS

import convrnn
from convrnn.neural import PLSRegression, Ridge

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["rgc_intermediate", "lstm_shallow"])
def test_model_on_cuda_equals_cpu(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full fp32 on both sides; restored afterwards
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    size = 96 if name.endswith("shallow") else 64
    model = convrnn.build_model(name, input_size=size, width_multiplier=0.25, num_classes=10).eval()
    images = torch.randn(4, 3, size, size)
    with torch.no_grad():
        cpu = model(images, return_features=["conv4"])
        gpu = model.cuda()(images.cuda(), return_features=["conv4"])
    torch.testing.assert_close(gpu.logits.cpu(), cpu.logits, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu.features["conv4"].cpu(), cpu.features["conv4"], rtol=1e-3, atol=1e-4)


def test_backward_on_cuda_with_bf16_autocast_reaches_every_parameter() -> None:
    model = convrnn.build_model("rgc_intermediate", input_size=64, width_multiplier=0.25, num_classes=10).cuda()
    images = torch.randn(4, 3, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(images)
        loss = torch.nn.functional.cross_entropy(model.decode(out.logits).float(), torch.arange(4, device="cuda"))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_pls_and_ridge_on_cuda_match_sklearn_and_cpu() -> None:
    rng = np.random.default_rng(0)
    X, X_test = rng.standard_normal((300, 2000)), rng.standard_normal((50, 2000))
    Y = X[:, :10] @ rng.standard_normal((10, 12)) + 0.5 * rng.standard_normal((300, 12))
    sk = SkPLS(n_components=25, scale=False).fit(X, Y).predict(X_test)
    cuda = PLSRegression(25, device="cuda", dtype=torch.float64).fit(X, Y).predict(X_test)
    assert np.linalg.norm(cuda - sk) / np.linalg.norm(sk) < 1e-4
    ridge_cpu = Ridge(alpha=10.0).fit(X, Y).predict(X_test)
    ridge_gpu = Ridge(alpha=10.0, device="cuda", dtype=torch.float64).fit(X, Y).predict(X_test)
    np.testing.assert_allclose(ridge_gpu, ridge_cpu, rtol=1e-6, atol=1e-8)


def test_train_py_fit_on_gpu_with_bf16(tmp_path: Path) -> None:
    from convrnn.training.cli import main

    main(["fit", "--config", str(REPO / "configs" / "demo.yaml"), "--trainer.accelerator", "gpu",
          "--trainer.devices", "1", "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "4",
          "--trainer.limit_val_batches", "2", "--data.synthetic.root", str(tmp_path / "data"), "--run.root",
          str(tmp_path / "runs"), "--run.name", "gpu"])
    assert (tmp_path / "runs" / "gpu" / "checkpoints" / "last.ckpt").is_file()
