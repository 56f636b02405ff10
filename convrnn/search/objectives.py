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
from typing import TYPE_CHECKING, Any

import torch

from convrnn.errors import UserConfigError

if TYPE_CHECKING:  # imported when needed: the neural package is heavier than the search's own modules
    from convrnn.neural.config import FitConfig

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
    """Validate ``neural:`` (data, synthetic config, synthetic_dir, fit options of ``FitConfig``) before any trial:
    names and types through :func:`convrnn.neural.config.fit_config_from_mapping`, the parser the
    ``convrnn-fit-neural`` command uses too, so each error names the key (``neural.fit.n_components: ...``)."""
    data = spec.get("data", "synthetic")
    if not isinstance(data, str):
        raise UserConfigError(f"{key}.data", f"must be 'synthetic' or a data file, got {data!r}")
    if data != "synthetic" and not Path(data).exists():
        raise UserConfigError(f"{key}.data", f"not found: {data}")
    synthetic_dir = spec.get("synthetic_dir")
    if synthetic_dir is not None and not isinstance(synthetic_dir, str):
        raise UserConfigError(f"{key}.synthetic_dir", f"must be a folder, got {synthetic_dir!r}")
    _fit_config(spec, Path("."), key=key)


def _fit_config(spec: Mapping[str, Any], out: Path, model: str | None = None, synthetic_dir: str | None = None,
                key: str = "neural") -> FitConfig:
    """The :class:`FitConfig` of ``spec`` (``neural:``): ``fit`` holds FitConfig fields but those the objective
    sets itself (:data:`NEURAL_FIT_EXCLUDED`); ``synthetic`` (SyntheticConfig fields) applies to synthetic data."""
    from convrnn.neural.config import FitConfig, fit_config_from_mapping

    fit = spec.get("fit") or {}
    if not isinstance(fit, Mapping):
        raise UserConfigError(f"{key}.fit", "must be a mapping of fit_neural options")
    allowed = {f.name for f in fields(FitConfig)} - NEURAL_FIT_EXCLUDED
    for name in fit:
        if name not in allowed:
            raise UserConfigError(f"{key}.fit.{name}", f"unknown fit option; options: {sorted(allowed)}")
    fit_config_from_mapping({**fit, "out": str(out)}, where=f"{key}.fit.")  # type errors name neural.fit.KEY
    data = spec.get("data", "synthetic")
    synthetic = spec.get("synthetic") or None
    values: dict[str, Any] = {"progress": False, **fit, "out": str(out), "model": model, "data": data,
                              "synthetic_dir": synthetic_dir if data == "synthetic" else None,
                              "synthetic": synthetic if data == "synthetic" else None}
    if synthetic is not None:  # checked whatever the data, named neural.synthetic.KEY
        fit_config_from_mapping({"out": str(out), "synthetic": synthetic}, where=f"{key}.")
    return fit_config_from_mapping(values, where=f"{key}.")


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
    from convrnn.neural.pipeline import run

    start = time.perf_counter()
    synthetic_dir = None
    if spec.get("data", "synthetic") == "synthetic":
        synthetic_dir = Path(spec.get("synthetic_dir") or shared_dir / "neural_data")
    config = _fit_config(spec, out, model=str(checkpoint), synthetic_dir=str(synthetic_dir) if synthetic_dir else None)
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
