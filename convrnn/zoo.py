"""The model zoo: released architectures by their release names, each a YAML graph in the package
(``convrnn/configs/models/``, also reachable as ``configs/models/`` in a clone)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from convrnn.graph.model import ConvRNN
from convrnn.graph.spec import load_yaml_graph, resolve_graph

#: The zoo's YAML graphs: package data, so that an installed wheel has them (read through importlib.resources;
#: the package is installed as plain files, so the folder is a real path and ``extends:`` resolves in it).
CONFIG_DIR = Path(str(resources.files("convrnn") / "configs" / "models"))
#: Configs shipped with the package: the demo's training config (``configs/demo.yaml`` in a clone).
DEMO_CONFIG = Path(str(resources.files("convrnn") / "configs" / "demo.yaml"))

# Small, documented overrides for CPU demos and tests (not copies of the configs).
SMALL = {"input_size": 64, "width_multiplier": 0.125, "num_classes": 10}


def list_models() -> list[str]:
    """Names of the registered architectures (the release's names, docs/models.md, 'The zoo')."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def model_config(name_or_path: str | Path, **overrides: Any) -> dict[str, Any]:
    """The resolved graph config of a zoo name or a YAML path, with overrides applied."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"model YAML not found: {path}")
        raw = load_yaml_graph(path)
        raw.setdefault("name", path.stem)
    else:
        known = list_models()
        if str(name_or_path) not in known:
            raise ValueError(f"unknown model {str(name_or_path)!r}; known models: {', '.join(known)}")
        raw = load_yaml_graph(CONFIG_DIR / f"{name_or_path}.yaml")
    return resolve_graph(raw, **overrides)


def build_model(name_or_path: str | Path, **overrides: Any) -> ConvRNN:
    """Build a zoo model by name, any YAML graph by path, or the model stored in a checkpoint (with its weights).

    A checkpoint (``.pt``/``.ckpt``/``.pth``: ``train.py``'s, ``save_model_checkpoint``'s or an imported release
    model) is read with the safe unpickler; see ``convrnn.checkpoint.load_model_checkpoint`` for untrusted files
    and for which overrides it takes.

    Overrides: input_size, width_multiplier, times, image_off, num_classes, presentation ("default",
    "constant" or "neural"), decoder, unroll ("biological" or "engineering"), blank, decoder_window_start.
    """
    from convrnn.checkpoint import is_checkpoint_path, load_model_checkpoint

    if is_checkpoint_path(name_or_path):
        return load_model_checkpoint(name_or_path, **overrides)
    return ConvRNN(model_config(name_or_path, **overrides))
