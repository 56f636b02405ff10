"""The objectives a trial is scored on besides ``val_top1``: parameter count, FLOPs, and the neural score.

- ``params``: trainable parameters of the trial's model at the search's sizes (``model.overrides``).
- ``flops``: FLOPs of one forward pass of one image over all time steps (``torch.utils.flop_counter`` on the
  meta device: no memory, no compute), counting each multiply-add as 2.
- ``neural``: the trained checkpoint scored by the ``fit_neural`` pipeline (``convrnn.neural.pipeline``) on the
  configured data (the synthetic V4/IT recordings by default): the median over areas of the noise-corrected
  score of each area's best layer, averaged over the time bins whose ceiling reaches ``min_ceiling``. Its wall
  time is stored on the trial (``neural_seconds``).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import statistics
import time
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from convrnn.errors import UserConfigError

#: the best-layer column holding each area's noise-corrected score averaged over its reliable bins (the bins
#: whose ceiling reaches min_ceiling); older pipelines called it "score"
SCORE_COLUMNS = ("mean_score_ceiled_bins", "score")
NEURAL_FIT_EXCLUDED = {"out", "model", "weights", "data", "synthetic", "synthetic_dir", "progress"}


def count_params(model_yaml: str | Path, overrides: Mapping[str, Any]) -> int:
    import convrnn

    model = convrnn.build_model(str(model_yaml), **dict(overrides))
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def count_flops(model_yaml: str | Path, overrides: Mapping[str, Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    import convrnn

    model = convrnn.build_model(str(model_yaml), **dict(overrides)).to("meta").eval()
    x = torch.empty(1, model.config["in_channels"], model.input_size, model.input_size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def check_neural_spec(spec: Mapping[str, Any], key: str = "neural") -> None:
    """Validate ``neural:`` (data, synthetic config, synthetic_dir, fit options of ``FitConfig``)."""
    from convrnn.neural.config import FitConfig
    from convrnn.neural.synthetic import SyntheticConfig

    data = spec.get("data", "synthetic")
    if not isinstance(data, str):
        raise UserConfigError(f"{key}.data", f"must be 'synthetic' or a data file, got {data!r}")
    if data != "synthetic" and not Path(data).exists():
        raise UserConfigError(f"{key}.data", f"not found: {data}")
    synthetic = spec.get("synthetic") or {}
    if not isinstance(synthetic, Mapping):
        raise UserConfigError(f"{key}.synthetic", "must be a mapping of SyntheticConfig fields")
    known = {f.name for f in fields(SyntheticConfig)}
    for name in synthetic:
        if name not in known:
            raise UserConfigError(f"{key}.synthetic.{name}", f"unknown field; fields: {sorted(known)}")
    try:
        SyntheticConfig(**_synthetic_kwargs(synthetic))
    except (TypeError, ValueError) as exn:
        raise UserConfigError(f"{key}.synthetic", str(exn)) from None
    fit = spec.get("fit") or {}
    if not isinstance(fit, Mapping):
        raise UserConfigError(f"{key}.fit", "must be a mapping of fit_neural options")
    allowed = {f.name for f in fields(FitConfig)} - NEURAL_FIT_EXCLUDED
    for name in fit:
        if name not in allowed:
            raise UserConfigError(f"{key}.fit.{name}", f"unknown fit option; options: {sorted(allowed)}")


def _synthetic_kwargs(spec: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(spec)
    if "levels" in kwargs:
        kwargs["levels"] = tuple(kwargs["levels"])
    return kwargs


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One worker at a time generates the shared synthetic recordings (others wait, then reuse them)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def neural_score(checkpoint: Path, out: Path, spec: Mapping[str, Any], shared_dir: Path) -> tuple[float, float]:
    """(median over areas of the best layer's noise-corrected score, seconds it took)."""
    from convrnn.neural.config import FitConfig
    from convrnn.neural.pipeline import run
    from convrnn.neural.synthetic import SyntheticConfig

    start = time.perf_counter()
    data = spec.get("data", "synthetic")
    kwargs: dict[str, Any] = dict(spec.get("fit") or {})
    kwargs.setdefault("progress", False)
    synthetic_dir = None
    synthetic = None
    if data == "synthetic":
        synthetic_dir = Path(spec.get("synthetic_dir") or shared_dir / "neural_data")
        if spec.get("synthetic"):
            synthetic = SyntheticConfig(**_synthetic_kwargs(spec["synthetic"]))
    config = FitConfig(out=out, model=str(checkpoint), data=data, synthetic=synthetic,
                       synthetic_dir=str(synthetic_dir) if synthetic_dir else None, **kwargs)
    lock = _exclusive(synthetic_dir.with_name(synthetic_dir.name + ".lock")) if synthetic_dir else \
        contextlib.nullcontext()
    with lock:
        result = run(config)
    table = result.best_layers
    column = next((c for c in SCORE_COLUMNS if c in table.columns), None)
    if column is None:
        raise RuntimeError(f"the neural fit's best-layer table has none of {SCORE_COLUMNS}: {list(table.columns)}")
    scores = [float(s) for s in table[column] if math.isfinite(float(s))]
    if not scores:
        raise RuntimeError("the neural fit produced no finite score for any area")
    return float(statistics.median(scores)), time.perf_counter() - start
