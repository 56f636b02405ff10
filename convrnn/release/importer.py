"""Load the release's trained TensorFlow checkpoints into our models: ``load_release_checkpoint(name, prefix)``.

Why strict: a weight left at its random initial value, or a tensor loaded into the wrong slot, still gives a
model that runs; only a one-to-one check catches it. So every checkpoint tensor must be used exactly once
(imported, checked as a known constant, or skipped by a named rule) and every model parameter set exactly
once, with matching shapes, before anything is loaded; otherwise the import stops and lists what did not match.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convrnn.errors import UserError
from convrnn.graph.model import ConvRNN
from convrnn.release.names import (
    ConstantCheck,
    TensorMapping,
    release_constants,
    release_mapping,
    release_shape,
    skip_reason,
    to_torch,
)
from convrnn.release.tensorbundle import TensorBundle
from convrnn.zoo import build_model, list_models

__all__ = ["ImportReport", "import_release_weights", "load_release_checkpoint", "load_release_model"]

_SHOW = 40  # names listed per category in an error message


@dataclass
class ImportReport:
    """What an import did: tensors imported (and how many values), constants checked, tensors skipped by rule."""

    checkpoint: str
    model: str
    imported: list[str] = field(default_factory=list)
    values: int = 0
    constants: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    global_step: int | None = None

    def summary(self) -> str:
        skipped = ", ".join(f"{len(v)} {k}" for k, v in sorted(self.skipped.items())) or "none"
        step = f", trained for {self.global_step} steps" if self.global_step is not None else ""
        return (f"{self.model}: imported {len(self.imported)} tensors ({self.values:,} values) from "
                f"{self.checkpoint}{step}; checked {len(self.constants)} constants; skipped {skipped}")

    def as_meta(self) -> dict[str, Any]:
        """Plain-type provenance for the converted checkpoint's ``meta``."""
        return {"source": "neuroailab/convrnns release checkpoint", "release_checkpoint": self.checkpoint,
                "release_global_step": self.global_step, "imported_tensors": len(self.imported),
                "imported_values": self.values, "checked_constants": list(self.constants),
                "skipped": {k: len(v) for k, v in self.skipped.items()}}


def _listing(title: str, lines: list[str]) -> str:
    more = f"\n    ... and {len(lines) - _SHOW} more" if len(lines) > _SHOW else ""
    return f"  {title} ({len(lines)}):\n" + "\n".join(f"    {line}" for line in lines[:_SHOW]) + more


def _plan(model: ConvRNN, bundle: TensorBundle) -> tuple[list[TensorMapping], list[ConstantCheck], dict[str, str]]:
    """Match checkpoint and model one to one; raise ``UserError`` listing every mismatch."""
    mappings = release_mapping(model)
    constants = [c for c in release_constants(model) if c.release_name in bundle]
    state = model.state_dict()
    duplicates = [n for n, k in Counter(m.release_name for m in mappings).items() if k > 1]
    duplicates += [t for t, k in Counter(m.target for m in mappings).items() if k > 1]
    if duplicates:  # a bug in the name rules, not in the user's file
        raise RuntimeError(f"release name rules map these more than once: {duplicates}")

    missing, mismatched = [], []
    for m in mappings:
        expected = release_shape(tuple(state[m.target].shape), m.layout)
        if m.release_name not in bundle:
            missing.append(f"{m.release_name} {list(expected)} (for {m.target})")
            continue
        found = bundle.entry(m.release_name).shape
        if tuple(found) != expected:
            mismatched.append(f"{m.release_name}: checkpoint {list(found)}, model {m.target} needs {list(expected)}")
    used = {m.release_name for m in mappings} | {c.release_name for c in constants}
    skipped: dict[str, str] = {}
    unexpected = []
    for name in bundle.names():
        if name in used:
            continue
        reason = skip_reason(name, model)
        if reason is None:
            unexpected.append(f"{name} {list(bundle.entry(name).shape)}")
        else:
            skipped[name] = reason
    targets = {m.target for m in mappings}
    unset = [f"{n} {list(p.shape)}" for n, p in model.named_parameters() if n not in targets]
    if missing or mismatched or unexpected or unset:
        parts = [f"{bundle.index_path}: the checkpoint does not match {model.name!r} "
                 f"(input_size={model.input_size}, num_classes={model.num_classes}, "
                 f"width_multiplier={model.config.get('width_multiplier', 1.0)}); nothing was loaded"]
        if mismatched:
            parts.append(_listing("shape mismatches", mismatched))
        if missing:
            parts.append(_listing("model tensors with no checkpoint tensor", missing))
        if unexpected:
            parts.append(_listing("checkpoint tensors the model has no place for", unexpected))
        if unset:
            parts.append(_listing("model parameters with no release name", unset))
        raise UserError("\n".join(parts))
    return mappings, constants, skipped


def import_release_weights(model: ConvRNN, checkpoint_prefix: str | os.PathLike | TensorBundle) -> ImportReport:
    """Fill ``model`` in place from a release checkpoint; every tensor's CRC-32C is checked (skipped ones too)."""
    bundle = checkpoint_prefix if isinstance(checkpoint_prefix, TensorBundle) else TensorBundle(checkpoint_prefix)
    mappings, constants, skipped = _plan(model, bundle)
    report = ImportReport(checkpoint=str(bundle.prefix), model=model.name)
    state = model.state_dict()
    new_state = {}
    for m in mappings:
        array = bundle.read(m.release_name)
        target = state[m.target]
        if array.dtype.kind != "f":
            raise UserError(f"{bundle.index_path}: tensor {m.release_name!r} has dtype "
                            f"{bundle.entry(m.release_name).dtype_name}; expected floating point")
        tensor = to_torch(array, m.layout)
        if tensor.dtype != target.dtype:
            tensor = tensor.to(target.dtype)
        new_state[m.target] = tensor
        report.imported.append(m.release_name)
        report.values += tensor.numel()
    for check in constants:
        value = bundle.read(check.release_name)
        if value.size != 1 or not np.isclose(float(value.reshape(-1)[0]), check.value, rtol=1e-6, atol=1e-7):
            raise UserError(f"{bundle.index_path}: tensor {check.release_name!r} holds {value.reshape(-1)[:4]}, "
                            f"but {model.name!r} fixes it at {check.value} ({check.why}); this checkpoint needs a "
                            "model that does not exist in this project")
        report.constants.append(check.release_name)
    for name, reason in sorted(skipped.items()):
        bundle.read_bytes(name)  # not used, but CRC-checked like every other tensor
        report.skipped.setdefault(reason, []).append(name)
        if name == "global_step" and bundle.entry(name).dtype_code in (3, 9):  # int32 / int64
            report.global_step = int(bundle.read(name).reshape(-1)[0])
    missing, unexpected = model.load_state_dict(new_state, strict=False)
    leftover = [k for k in missing if k in dict(model.named_parameters())]
    if leftover or unexpected:  # cannot happen after _plan; kept as a guard against rule bugs
        raise RuntimeError(f"import left parameters unset: {leftover}, unexpected: {list(unexpected)}")
    return report


def load_release_model(name: str, checkpoint_prefix: str | os.PathLike, **overrides: Any
                       ) -> tuple[ConvRNN, ImportReport]:
    """Build zoo model ``name`` (with ``overrides``) and import the checkpoint; returns the model (eval mode) and
    the import report."""
    known = list_models()
    if name not in known:
        raise UserError(f"unknown model {name!r}; the release's models: {', '.join(known)}")
    bundle = TensorBundle(checkpoint_prefix)  # open (and check the files) before building a large model
    try:
        model = build_model(name, **overrides)
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot build {name!r} with {overrides}: {exc}") from exc
    report = import_release_weights(model, bundle)
    return model.eval(), report


def load_release_checkpoint(name: str, checkpoint_prefix: str | os.PathLike, **overrides: Any) -> ConvRNN:
    """The zoo model ``name`` with the release's trained weights from ``checkpoint_prefix`` (``DIR/model.ckpt``).

    ``overrides`` are ``build_model``'s (times, image_off, presentation, unroll, ...; width_multiplier,
    input_size and num_classes must match the checkpoint's shapes). Returns the model in eval mode.
    """
    return load_release_model(name, checkpoint_prefix, **overrides)[0]
