"""Checkpoints that describe their own model, and that never run code from a stranger's file.

Why one module: every path that reads a checkpoint (``build_model``, ``fit_neural.py --model``, ``train.py
--ckpt_path`` and fine-tuning, imported release weights, search trials) goes through ``read_checkpoint`` here,
so the safety rule and the format live in one place.

Two file layouts, both plain types (str, int, float, bool, None, list, dict) and tensors, so that they load with
``torch.load(weights_only=True)``:

- a *model checkpoint* (``save_model_checkpoint``; ``.pt``)::

      {"format": "convrnn.model", "version": 1, "graph": <resolved graph>, "state_dict": {...}, "meta": {...}}

- a *training checkpoint* (``train.py``; ``.ckpt``): Lightning's dict, with ``"convrnn": {"format":
  "convrnn.lightning", "version": 1, "graph": <resolved graph>}`` added by ``ConvRNNModule`` and the model's
  weights under ``state_dict`` with a ``model.`` prefix.

The resolved graph (``ConvRNN.config``) is the whole architecture: a checkpoint rebuilds its model even when
the YAML it came from was edited, moved or deleted. Training checkpoints written before the graph was stored are
rebuilt from their ``hyper_parameters`` (``arch``, ``overrides``) with a warning.

Loading a file whose pickle needs more than plain types stops with ``UntrustedCheckpointError`` unless the caller
opts in (``trusted=True``; ``--trust-checkpoint`` on the commands): full unpickling can run any code.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from convrnn.errors import UserError
from convrnn.graph.model import ConvRNN
from convrnn.graph.spec import rebuild_config
from convrnn.io import atomic_open

__all__ = ["CHECKPOINT_SUFFIXES", "UntrustedCheckpointError", "graph_of", "is_checkpoint_path",
           "load_model_checkpoint", "model_from_checkpoint", "model_state_dict", "read_checkpoint",
           "save_model_checkpoint"]

logger = logging.getLogger(__name__)

MODEL_FORMAT = "convrnn.model"
LIGHTNING_FORMAT = "convrnn.lightning"
FORMAT_VERSION = 1
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
TRUST_HINT = "pass --trust-checkpoint on the command line (trusted=True in Python)"


class UntrustedCheckpointError(UserError):
    """A checkpoint needs full unpickling (which can run code) and the user has not said they trust it."""


def is_checkpoint_path(path: str | os.PathLike) -> bool:
    """Whether a model argument names a checkpoint file (by suffix) rather than a zoo name or a YAML graph."""
    return Path(str(path)).suffix in CHECKPOINT_SUFFIXES


def _blocked_type(error: Exception) -> str:
    """The type the safe unpickler refused, from torch's message ('... GLOBAL posix.system ...')."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else str(error).strip().splitlines()[-1][:200]


def read_checkpoint(path: str | os.PathLike, *, trusted: bool = False) -> dict[str, Any]:
    """``torch.load`` a checkpoint on the CPU with the safe unpickler; full unpickling only when ``trusted``.

    Raises ``UserError`` naming the file when it is missing or damaged, and ``UntrustedCheckpointError`` naming
    the file and the type that would need full unpickling (nothing from the file has run at that point).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exn:
        if not trusted:
            raise UntrustedCheckpointError(
                f"{path} holds a Python object of type {_blocked_type(exn)}, which only full unpickling can "
                f"create, and full unpickling can run any code the file contains. Nothing was loaded. If you "
                f"trust where this file came from, {TRUST_HINT}.") from None
        logger.warning("loading %s with full unpickling (trusted by the user)", path)
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exn:
        raise UserError(f"{path} is damaged or not a PyTorch checkpoint ({str(exn).splitlines()[0][:200]})") from None
    if not isinstance(payload, Mapping):
        raise UserError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return dict(payload)


def graph_of(checkpoint: Mapping[str, Any], source: str = "<checkpoint>") -> dict[str, Any]:
    """The resolved graph stored in a checkpoint (either layout), or rebuilt from an older training checkpoint."""
    if checkpoint.get("format") == MODEL_FORMAT:
        return copy.deepcopy(dict(checkpoint["graph"]))
    section = checkpoint.get("convrnn")
    if isinstance(section, Mapping) and section.get("format") == LIGHTNING_FORMAT:
        return copy.deepcopy(dict(section["graph"]))
    hparams = checkpoint.get("hyper_parameters") or {}
    if "arch" in hparams:  # written before checkpoints stored their graph: rebuild from the zoo/YAML
        from convrnn.zoo import model_config

        logger.warning("%s stores no graph (an older train.py checkpoint); rebuilding %r from its YAML", source,
                       hparams["arch"])
        return model_config(hparams["arch"], **dict(hparams.get("overrides") or {}))
    raise UserError(f"{source} is not a convrnn checkpoint: it stores no model graph (no 'graph', no 'convrnn' "
                    f"section, no hyper_parameters['arch'])")


def model_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The ConvRNN's own weights: ``state_dict`` without a LightningModule's ``model.`` or compile's prefix."""
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return state


def load_weights(model: ConvRNN, state: Mapping[str, torch.Tensor], source: str = "<weights>") -> None:
    """Load ``state`` into ``model`` strictly; a mismatch names the missing and unexpected keys."""
    missing, unexpected = model.load_state_dict(dict(state), strict=False)
    if missing or unexpected:
        def show(keys: list[str]) -> str:
            return f"{keys[:8]}{' ...' if len(keys) > 8 else ''}"
        raise UserError(f"{source}: weights do not match the model {model.name!r}: missing {show(list(missing))}, "
                        f"unexpected {show(list(unexpected))}")


def load_model_checkpoint(path: str | os.PathLike, *, trusted: bool = False, **overrides: Any) -> ConvRNN:
    """The ConvRNN stored in a checkpoint (either layout), with its weights, in eval mode.

    ``overrides`` change how the model runs (input_size, times, image_off, presentation, decoder, unroll, blank,
    decoder_window_start), never its weights' shapes (width_multiplier, num_classes, in_channels).
    """
    return model_from_checkpoint(read_checkpoint(path, trusted=trusted), str(path), **overrides)


def model_from_checkpoint(checkpoint: Mapping[str, Any], source: str = "<checkpoint>", **overrides: Any) -> ConvRNN:
    """The ConvRNN of an already-read checkpoint dict (its stored graph, its weights), in eval mode; for callers
    that also need the checkpoint's other fields (``fit_neural`` reads the data's normalisation from it)."""
    model = ConvRNN(rebuild_config(graph_of(checkpoint, source), **overrides))
    load_weights(model, model_state_dict(checkpoint), source)
    return model.eval()


def save_model_checkpoint(model: ConvRNN, path: str | os.PathLike, *, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (graph + weights + ``meta``) atomically; the file loads with ``weights_only=True``."""
    path = Path(path)
    payload = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "graph": copy.deepcopy(model.config),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "meta": dict(meta or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def lightning_section(model: ConvRNN) -> dict[str, Any]:
    """What ``ConvRNNModule`` adds to each training checkpoint under ``"convrnn"``."""
    return {"format": LIGHTNING_FORMAT, "version": FORMAT_VERSION, "graph": copy.deepcopy(model.config)}
