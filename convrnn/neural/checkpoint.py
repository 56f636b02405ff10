"""Load the model to score: a zoo name or YAML graph (optionally with weights), a ``train.py`` checkpoint, or the
synthetic data's hidden teacher.

Why one entry point: ``scripts/fit_neural.py --model`` accepts all four, and each needs its own rebuild rule
(a checkpoint rebuilds the ConvRNN from its saved ``arch`` and ``overrides``; a zoo model is seeded so an untrained
model is reproducible; the teacher is rebuilt from the synthetic config).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import convrnn
from convrnn.checkpoint import (
    graph_of,
    is_checkpoint_path,
    load_weights,
    model_from_checkpoint,
    model_state_dict,
    read_checkpoint,
)
from convrnn.errors import UserError
from convrnn.graph.model import ConvRNN
from convrnn.presentation import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["LoadedModel", "build_seeded", "load_checkpoint", "load_model", "load_state_dict", "read_checkpoint"]

logger = logging.getLogger(__name__)

#: ``--model release:NAME --weights PREFIX``: a release TensorFlow checkpoint, imported on the fly.
RELEASE_PREFIX = "release:"

#: Seed of an untrained zoo model's random weights (``--seed``); not the synthetic teacher's seed (0).
DEFAULT_ZOO_SEED = 1234


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


def build_seeded(spec: str | os.PathLike, seed: int, **overrides: Any) -> ConvRNN:
    """The zoo model or YAML graph ``spec`` with random weights from ``torch.manual_seed(seed)``, in eval mode.

    Why one helper: an untrained model (``--seed``) and the synthetic data's teacher must both be reproducible from
    their seed without touching the caller's global RNG (it runs inside ``fork_rng``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = convrnn.build_model(str(spec), **overrides)
    return model.eval()


def load_state_dict(model: ConvRNN, source: str | os.PathLike | Mapping[str, Any], *, trusted: bool = False) -> None:
    """Load weights (a file or a mapping: a plain state dict, ``{"state_dict": ...}`` or either checkpoint layout)
    into ``model``, strictly; the error names missing and unexpected keys."""
    payload = read_checkpoint(source, trusted=trusted) if isinstance(source, str | os.PathLike) else source
    if not isinstance(payload, Mapping):
        raise UserError(f"no state dict in {source!r}")
    load_weights(model, model_state_dict(payload), str(source) if isinstance(source, str | os.PathLike) else model.name)


def load_checkpoint(path: str | os.PathLike, *, input_size: int | None = None, trusted: bool = False) -> LoadedModel:
    """The ConvRNN of a checkpoint (``train.py``'s, or a model checkpoint such as an imported release model), built
    from the graph stored in it, on the CPU, with its own schedule (the pipeline passes ``times``/``image_off`` when
    it runs the model). ``input_size`` overrides the trained size (weights are size-free up to the global-pool
    readout)."""
    path = Path(path)
    ckpt = read_checkpoint(path, trusted=trusted)
    graph = graph_of(ckpt, str(path))
    overrides: dict[str, Any] = {}
    if input_size is not None and input_size != graph.get("input_size"):
        logger.warning("building %s at input_size=%d (trained at %s)", graph.get("name"), input_size,
                       graph.get("input_size"))
        overrides["input_size"] = int(input_size)
    model = model_from_checkpoint(ckpt, str(path), **overrides)
    hp = ckpt.get("hyper_parameters") or {}
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    mean = tuple(float(v) for v in dm.get("mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in dm.get("std") or IMAGENET_STD)
    name = str(hp.get("arch") or graph.get("name") or path.stem)
    return LoadedModel(model.eval(), "checkpoint", name, mean, std,
                       info=dict(path=str(path), arch=name, overrides=overrides, global_step=ckpt.get("global_step"),
                                 epoch=ckpt.get("epoch"), meta=ckpt.get("meta")))


def load_model(spec: str | os.PathLike, *, weights: str | os.PathLike | None = None, input_size: int | None = None,
               width_multiplier: float | None = None, seed: int = DEFAULT_ZOO_SEED,
               teacher_config: Any = None, trusted: bool = False) -> LoadedModel:
    """``spec``: ``"teacher"`` (the synthetic data's teacher, from ``teacher_config``), a checkpoint
    (``.ckpt``/``.pt``/``.pth`` from ``train.py``), a YAML graph or a zoo name.

    Zoo/YAML models are built with ``input_size`` (default 224), ``width_multiplier`` (default 1) and random
    weights from ``torch.manual_seed(seed)`` (:func:`build_seeded`; the global RNG is left untouched), then
    ``weights`` are loaded when given. The one place that checks which options a kind takes: the teacher takes
    none that differ from its config and a checkpoint no ``weights`` (:class:`UserError` naming the flag).
    """
    text = str(spec)
    if text == "teacher":
        from convrnn.neural.synthetic import SyntheticConfig, build_teacher

        config = teacher_config or SyntheticConfig()
        if weights is not None or input_size not in (None, config.input_size) or \
                width_multiplier not in (None, config.width_multiplier):
            raise UserError("--model teacher is fixed by the synthetic config; drop --weights/--input-size/--width")
        return LoadedModel(build_teacher(config), "teacher", f"teacher:{config.teacher}",
                           info=dict(arch=config.teacher, input_size=config.input_size,
                                     width_multiplier=config.width_multiplier, seed=config.teacher_seed))
    path = Path(text)
    if text.startswith(RELEASE_PREFIX):
        return _load_release(text[len(RELEASE_PREFIX):], weights, input_size)
    if is_checkpoint_path(path):
        if weights is not None:
            raise UserError("--weights: a checkpoint carries its own weights; --weights is for zoo/YAML/release: "
                            "models")
        return load_checkpoint(path, input_size=input_size, trusted=trusted)
    kind = "yaml" if path.suffix in (".yaml", ".yml") else "zoo"
    overrides: dict[str, Any] = {"presentation": "neural"}
    overrides["input_size"] = int(input_size) if input_size is not None else 224
    if width_multiplier is not None:
        overrides["width_multiplier"] = float(width_multiplier)
    model = build_seeded(text, seed, **overrides)
    info: dict[str, Any] = dict(arch=model.name, overrides=overrides, seed=seed, weights=None)
    if weights is not None:
        load_state_dict(model, weights, trusted=trusted)
        info["weights"] = str(weights)
    else:
        logger.info("%s has random (untrained) weights, seed %d", model.name, seed)
    return LoadedModel(model.eval(), kind, model.name, info=info)


def _load_release(name: str, prefix: str | os.PathLike | None, input_size: int | None) -> LoadedModel:
    """``release:NAME`` with ``--weights`` = the release's checkpoint prefix (``DIR/model.ckpt-NNN``)."""
    if prefix is None:
        raise UserError(f"--model release:{name} needs --weights DIR/model.ckpt-NNN (the release's TF checkpoint)")
    from convrnn.release import load_release_checkpoint

    overrides: dict[str, Any] = {"presentation": "neural"}
    if input_size is not None:
        overrides["input_size"] = int(input_size)
    model = load_release_checkpoint(name, prefix, **overrides)
    return LoadedModel(model.eval(), "release", f"release:{name}",
                       info=dict(arch=name, weights=str(prefix), overrides=overrides))
