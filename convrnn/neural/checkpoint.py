"""Load the model to score: a zoo name or YAML graph (optionally with weights), a ``train.py`` checkpoint, or the
synthetic data's hidden teacher.

Why one entry point: ``scripts/fit_neural.py --model`` accepts all four, and each needs its own rebuild rule
(a checkpoint rebuilds the ConvRNN from its saved ``arch`` and ``overrides``; a zoo model is seeded so an untrained
model is reproducible; the teacher is rebuilt from the synthetic config).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import convrnn
from convrnn.graph.model import ConvRNN
from convrnn.neural.features import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["LoadedModel", "load_checkpoint", "load_model", "load_state_dict", "read_checkpoint"]

logger = logging.getLogger(__name__)

#: Seed of an untrained zoo model's random weights (``--seed``); not the synthetic teacher's seed (0).
DEFAULT_ZOO_SEED = 1234
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


@dataclass
class LoadedModel:
    """A model ready for feature extraction plus what is needed to present images to it.

    ``kind``: ``"zoo"``, ``"yaml"``, ``"checkpoint"`` or ``"teacher"``. ``mean``/``std``: the input normalisation
    (the checkpoint's DataModule values when saved, ImageNet's otherwise). ``info``: provenance for the report.
    """

    model: ConvRNN
    kind: str
    name: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    info: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` on the CPU; tensors-and-containers-only unpickling first, full unpickling as a fallback.

    Why the fallback: Lightning checkpoints can hold hyper-parameters that are arbitrary Python objects. Only
    load checkpoints you trust.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        logger.warning("%s needs full unpickling (%s); loading it with weights_only=False", path,
                       str(exc).splitlines()[0])
        return torch.load(path, map_location="cpu", weights_only=False)


def _strip(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model weights only: drop a LightningModule's ``model.`` prefix and torch.compile's ``_orig_mod.``."""
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}
    if any(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return state


def load_state_dict(model: ConvRNN, source: str | os.PathLike | Mapping[str, Any]) -> None:
    """Load weights (a file or a mapping: a plain state dict, ``{"state_dict": ...}`` or a Lightning checkpoint)
    into ``model``, strictly; the error names missing and unexpected keys."""
    payload = read_checkpoint(source) if isinstance(source, str | os.PathLike) else source
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping):
        raise TypeError(f"no state dict in {source!r}")
    state = _strip(state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"weights do not match the model {model.name!r}: missing {list(missing)[:8]}"
                       f"{' ...' if len(missing) > 8 else ''}, unexpected {list(unexpected)[:8]}"
                       f"{' ...' if len(unexpected) > 8 else ''}")


def load_checkpoint(path: str | os.PathLike, *, input_size: int | None = None) -> LoadedModel:
    """Rebuild the ConvRNN of a ``train.py`` checkpoint (``hyper_parameters``: ``arch``, ``overrides``) and load its
    ``model.``-prefixed weights on the CPU. ``input_size`` overrides the trained size (weights are size-free up
    to the global-pool readout)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    hp = ckpt.get("hyper_parameters") or {}
    if "arch" not in hp:
        raise KeyError(f"{path}: no hyper_parameters['arch']; is this a train.py (ConvRNNModule) checkpoint?")
    overrides = dict(hp.get("overrides") or {})
    if input_size is not None and input_size != overrides.get("input_size"):
        logger.warning("building %s at input_size=%d (trained at %s)", hp["arch"], input_size,
                       overrides.get("input_size"))
        overrides["input_size"] = int(input_size)
    model = convrnn.build_model(hp["arch"], **overrides)
    load_state_dict(model, ckpt)
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    mean = tuple(float(v) for v in dm.get("mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in dm.get("std") or IMAGENET_STD)
    return LoadedModel(model.eval(), "checkpoint", str(hp["arch"]), mean, std,
                       info=dict(path=str(path), arch=hp["arch"], overrides=overrides,
                                 global_step=ckpt.get("global_step"), epoch=ckpt.get("epoch")))


def load_model(spec: str | os.PathLike, *, weights: str | os.PathLike | None = None, input_size: int | None = None,
               width_multiplier: float | None = None, seed: int = DEFAULT_ZOO_SEED,
               teacher_config: Any = None) -> LoadedModel:
    """``spec``: ``"teacher"`` (the synthetic data's teacher, from ``teacher_config``), a checkpoint
    (``.ckpt``/``.pt``/``.pth`` from ``train.py``), a YAML graph or a zoo name.

    Zoo/YAML models are built with ``input_size`` (default 224), ``width_multiplier`` (default 1) and random
    weights from ``torch.manual_seed(seed)`` (the global RNG is left untouched), then ``weights`` are loaded
    when given.
    """
    text = str(spec)
    if text == "teacher":
        from convrnn.neural.synthetic import SyntheticConfig, build_teacher

        config = teacher_config or SyntheticConfig()
        if weights is not None or input_size not in (None, config.input_size) or \
                width_multiplier not in (None, config.width_multiplier):
            raise ValueError("--model teacher is fixed by the synthetic config; drop --weights/--input-size/--width")
        return LoadedModel(build_teacher(config), "teacher", f"teacher:{config.teacher}",
                           info=dict(arch=config.teacher, input_size=config.input_size,
                                     width_multiplier=config.width_multiplier, seed=config.teacher_seed))
    path = Path(text)
    if path.suffix in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if weights is not None:
            raise ValueError("a checkpoint carries its own weights; --weights is for zoo/YAML models")
        return load_checkpoint(path, input_size=input_size)
    kind = "yaml" if path.suffix in (".yaml", ".yml") else "zoo"
    overrides: dict[str, Any] = {"presentation": "neural"}
    overrides["input_size"] = int(input_size) if input_size is not None else 224
    if width_multiplier is not None:
        overrides["width_multiplier"] = float(width_multiplier)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = convrnn.build_model(text, **overrides)
    info: dict[str, Any] = dict(arch=model.name, overrides=overrides, seed=seed, weights=None)
    if weights is not None:
        load_state_dict(model, weights)
        info["weights"] = str(weights)
    else:
        logger.info("%s has random (untrained) weights, seed %d", model.name, seed)
    return LoadedModel(model.eval(), kind, model.name, info=info)
