"""``convrnn-brainscore-plugin``: write a Brain-Score vision model plugin for any ConvRNN, ready to zip and submit.

The folder (``--out``) holds what Brain-Score's plugin loader expects (brainscore_vision/models/<plugin>/):
``__init__.py`` (one ``model_registry['<identifier>'] = ...`` line, which is how Brain-Score finds a model),
``model.py`` (builds a :class:`convrnn.brainscore.adapter.ConvRNNBrainModel`), ``test.py`` (Brain-Score's
plugin test), ``requirements.txt`` and, for a YAML graph, the graph itself (``graph.yaml``). Weights are referenced,
never copied: ``--weights`` is a path or an http(s)/file URL that ``model.py`` fetches into a cache the first time
it builds the model (checked against ``--sha256`` when given). The model, its layers and the region map are
checked before anything is written, and the folder is written to a temporary sibling and renamed, so a failed
run leaves nothing behind (with ``--force``, the old folder as it was). Needs no Brain-Score install.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convrnn.errors import UserError
from convrnn.io import atomic_path, fsync_dir, temp_path

from .regions import RegionLayerMap, check_layers, parse_regions, regions_from_best_layers

__all__ = ["build_plugin_model", "fetch_weights", "main", "write_plugin"]

URL_SCHEMES = ("http", "https", "file")
CACHE_ENV = "CONVRNN_BRAINSCORE_CACHE"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _is_url(value: str) -> bool:
    return urllib.parse.urlparse(value).scheme in URL_SCHEMES


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_weights(location: str, sha256: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local path as it is, or a URL downloaded once into the cache (``$CONVRNN_BRAINSCORE_CACHE``, default
    ``~/.cache/convrnn/brainscore``), written atomically; a ``sha256`` that does not match is an error."""
    if not _is_url(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise UserError(f"weights: {path} does not exist")
    else:
        cache = Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "convrnn" / "brainscore")
        name = Path(urllib.parse.urlparse(location).path).name or "weights"
        path = cache / hashlib.sha256(location.encode()).hexdigest()[:16] / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, tmp.open("wb") as out, \
                    urllib.request.urlopen(location) as response:  # noqa: S310
                shutil.copyfileobj(response, out)
    if sha256 and _sha256(path) != sha256.lower():
        raise UserError(f"weights: {location} has SHA-256 {_sha256(path)}, expected {sha256}")
    return path


def build_plugin_model(identifier: str, model: str, region_layer_map: RegionLayerMap, *, weights: str | None = None,
                       sha256: str | None = None, plugin_dir: str | os.PathLike | None = None,
                       **settings: Any) -> Any:
    """What a generated ``model.py`` calls: the :class:`ConvRNNBrainModel` of ``model`` (a zoo name, a YAML file
    in the plugin folder, ``release:NAME`` or a checkpoint), with ``weights`` fetched by :func:`fetch_weights`.
    A checkpoint model given by URL is fetched the same way."""
    from .adapter import ConvRNNBrainModel

    spec = model
    if plugin_dir is not None and model.endswith((".yaml", ".yml")) and not Path(model).is_absolute():
        spec = str(Path(plugin_dir) / model)
    if _is_url(spec):
        spec = str(fetch_weights(spec, sha256))
        sha256 = None
    local_weights = None
    if weights is not None:
        local_weights = weights if spec.startswith("release:") else str(fetch_weights(weights, sha256))
    return ConvRNNBrainModel.from_spec(spec, region_layer_map, identifier=identifier, weights=local_weights,
                                       **settings)


# ---------------------------------------------------------------------------------------------- file templates

_INIT = '''"""Brain-Score plugin {identifier!r}: a ConvRNN (convrnn) registered as a temporal BrainModel."""
from brainscore_vision import model_registry

from .model import get_model

model_registry[{identifier!r}] = lambda: get_model({identifier!r})
'''

_MODEL = '''"""{identifier}: {model_label} as a Brain-Score BrainModel (written by convrnn-brainscore-plugin).

Regions -> layers and time bins -> steps (10 ms per step: step t covers [10(t - offset), 10(t - offset + 1)) ms
after image onset; the image is shown for image_off steps of the times-step presentation, then a blank).
"""
from pathlib import Path

from convrnn.brainscore.plugin import build_plugin_model

MODEL_IDENTIFIER = {identifier!r}
MODEL = {model!r}
WEIGHTS = {weights!r}
WEIGHTS_SHA256 = {sha256!r}
REGION_LAYER_MAP = {regions}
SETTINGS = {settings}


def get_model(identifier=MODEL_IDENTIFIER):
    assert identifier == MODEL_IDENTIFIER, identifier
    return build_plugin_model(MODEL_IDENTIFIER, MODEL, REGION_LAYER_MAP, weights=WEIGHTS, sha256=WEIGHTS_SHA256,
                              plugin_dir=Path(__file__).parent, **SETTINGS)


def get_layers(identifier=MODEL_IDENTIFIER):
    return sorted({{layer for layers in REGION_LAYER_MAP.values() for layer in layers}})


def get_bibtex(identifier=MODEL_IDENTIFIER):
    return {bibtex!r}
'''

_TEST = '''import pytest

import brainscore_vision


@pytest.mark.travis_slow
def test_has_identifier():
    model = brainscore_vision.load_model({identifier!r})
    assert model.identifier == {identifier!r}


@pytest.mark.travis_slow
def test_records_committed_regions():
    model = brainscore_vision.load_model({identifier!r})
    for region in {regions!r}:
        model.start_recording(region, [(70, 80), (80, 90)])
'''

BIBTEX = """@article{nayebi2022recurrent,
  title={Recurrent connections in the primate ventral visual stream mediate a trade-off between task performance
         and network size during core object recognition},
  author={Nayebi, Aran and Sagastuy-Brena, Javier and Bear, Daniel M and Kar, Kohitij and Kubilius, Jonas and
          Ganguli, Surya and Sussillo, David and DiCarlo, James J and Yamins, Daniel LK},
  journal={Neural Computation}, volume={34}, number={8}, pages={1652--1675}, year={2022}
}"""


def _check_model(model: str, weights: str | None, settings: dict[str, Any], regions: RegionLayerMap,
                 trusted: bool) -> str:
    """Build the model now (with local weights, architecture only for a URL) so that a bad --model, --weights or
    layer fails before anything is written; returns the model's name."""
    from convrnn.neural.checkpoint import load_model

    spec = model
    if _is_url(model):
        if weights is not None:
            raise UserError("--weights: a checkpoint given by URL carries its own weights")
        return Path(urllib.parse.urlparse(model).path).stem
    if model.startswith("release:") and weights is not None and _is_url(weights):
        raise UserError("--weights: a release TensorFlow checkpoint must be local; convert it with "
                        "convrnn-import-release and give the .pt (by path or URL) with --model instead")
    local = weights if weights is not None and not _is_url(weights) else None
    if weights is not None and not model.startswith("release:") and local is not None and not Path(local).is_file():
        raise UserError(f"--weights: {local} does not exist")
    try:
        loaded = load_model(spec, weights=local, input_size=settings.get("input_size"),
                            width_multiplier=settings.get("width_multiplier"), trusted=trusted,
                            **({"seed": settings["seed"]} if "seed" in settings else {}))
    except FileNotFoundError as exc:
        raise UserError(f"--model: {exc}") from None
    except ValueError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"--model {model}: {exc}") from None
    check_layers(regions, loaded.model.layer_names, repr(loaded.name))
    return loaded.name


def write_plugin(out: str | os.PathLike, model: str, region_layer_map: RegionLayerMap, *,
                 weights: str | None = None, identifier: str | None = None, sha256: str | None = None,
                 requirement: str | None = None, overwrite: bool = False, trusted: bool = False,
                 **settings: Any) -> Path:
    """Write the plugin folder ``out`` (see the module doc) and return it.

    ``model``: a zoo name, a YAML graph (copied into the folder), a checkpoint path or URL, or ``release:NAME``
    (``weights`` = the TensorFlow checkpoint prefix). ``settings``: :class:`ConvRNNBrainModel` options stored in
    ``model.py`` (input_size, width_multiplier, seed, visual_degrees, times, image_off, offset, batch_size).
    """
    import convrnn

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise UserError(f"--out: {out} exists and is not an empty folder (pass --force to replace it)")
    path = Path(model)
    is_yaml = path.suffix in (".yaml", ".yml") and not _is_url(model)
    if is_yaml and not path.is_file():
        raise UserError(f"--model: YAML graph {path} does not exist")
    if (path.suffix in (".ckpt", ".pt", ".pth")) and not _is_url(model) and not path.is_file():
        raise UserError(f"--model: checkpoint {path} does not exist")
    name = _check_model(model, weights, settings, region_layer_map, trusted)
    identifier = identifier or f"convrnn-{name}"
    if not _IDENTIFIER.match(identifier):
        raise UserError(f"--identifier {identifier!r}: use letters, digits and _ . + - (no spaces or quotes)")
    if sha256 is None and weights is not None and not _is_url(weights) and Path(weights).is_file():
        sha256 = _sha256(Path(weights))
    stored_model = "graph.yaml" if is_yaml else (model if _is_url(model) or model.startswith("release:") or
                                                 path.suffix not in (".ckpt", ".pt", ".pth")
                                                 else str(path.resolve()))
    stored_weights = weights if weights is None or _is_url(weights) else str(Path(weights).resolve())
    if trusted:
        settings["trusted"] = True
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        files = {
            "__init__.py": _INIT.format(identifier=identifier),
            "model.py": _MODEL.format(identifier=identifier, model_label=name, model=stored_model,
                                      weights=stored_weights, sha256=sha256,
                                      regions=json.dumps(region_layer_map), settings=repr(dict(settings)),
                                      bibtex=BIBTEX),
            "test.py": _TEST.format(identifier=identifier, regions=list(region_layer_map)),
            "requirements.txt": (requirement or f"convrnn=={convrnn.__version__}") + "\n",
        }
        for filename, text in files.items():
            (tmp / filename).write_text(text)
        if is_yaml:
            shutil.copyfile(path, tmp / "graph.yaml")
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """Put the folder ``new`` at ``out``, keeping an existing ``out`` until ``new`` is in place.

    POSIX has no atomic swap of two folders (``os.replace`` onto a non-empty folder fails), so the old one is
    renamed aside first (``.NAME.tmp.*`` beside it), the new one renamed in, and only then the old one removed:
    a crash in between leaves the old plugin under the aside name, never no plugin at all. If the second rename
    fails the old folder is put back.
    """
    if not out.exists():
        os.replace(new, out)
        return
    aside = temp_path(out)
    os.replace(out, aside)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(aside, out)
        raise
    fsync_dir(out.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convrnn-brainscore-plugin", description=(
        "Write a Brain-Score vision model plugin (folder: __init__.py, model.py, test.py, requirements.txt) for a "
        "ConvRNN. See docs/brainscore.md."))
    p.add_argument("--model", required=True, help="zoo name, YAML graph, train.py/model checkpoint (path or URL), "
                   "or release:NAME (with --weights = the TF checkpoint prefix)")
    p.add_argument("--weights", help="weights of a zoo/YAML model: a path or an http(s)/file URL (referenced, "
                   "not copied)")
    p.add_argument("--sha256", help="expected SHA-256 of the weights (computed for a local file)")
    regions = p.add_mutually_exclusive_group(required=True)
    regions.add_argument("--regions", help="region -> layer map, e.g. V4=conv5,IT=conv8 (IT=conv9+conv10 joins)")
    regions.add_argument("--best-layers", help="a fit_neural.py best_layers.csv (one layer per area)")
    p.add_argument("--best-layers-regions", nargs="+", default=None,
                   help="with --best-layers: the areas to take (default: all rows)")
    p.add_argument("--out", required=True, type=Path, help="the plugin folder to write")
    p.add_argument("--identifier", help="Brain-Score model identifier (default: convrnn-<model name>)")
    p.add_argument("--input-size", type=int, help="input size of a zoo/YAML model (default 224)")
    p.add_argument("--width", type=float, dest="width_multiplier", help="width multiplier of a zoo/YAML model")
    p.add_argument("--seed", type=int, help="seed of an untrained zoo/YAML model's weights")
    p.add_argument("--visual-degrees", type=float, default=8.0, help="degrees of visual angle of the input (8)")
    p.add_argument("--times", type=int, default=26, help="steps of the neural presentation (26)")
    p.add_argument("--image-off", type=int, default=10, help="step at which the image is replaced by blank (10)")
    p.add_argument("--offset", type=int, default=0, help="model step = bin_start // 10 + offset (0)")
    p.add_argument("--requirement", help="the requirements.txt line for convrnn (default convrnn==<version>; "
                   "e.g. a git URL or wheel)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of the checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; user errors print ``error: ...`` and exit with status 2."""
    args = _parser().parse_args(argv)
    try:
        if args.regions is not None:
            region_map = parse_regions(args.regions)
        else:
            region_map = regions_from_best_layers(args.best_layers, args.best_layers_regions)
        for flag, value, least in (("--times", args.times, 1), ("--input-size", args.input_size, 1)):
            if value is not None and value < least:
                raise UserError(f"{flag} must be >= {least}, got {value}")
        if not args.visual_degrees > 0:
            raise UserError(f"--visual-degrees must be > 0, got {args.visual_degrees}")
        settings: dict[str, Any] = dict(visual_degrees=args.visual_degrees, times=args.times,
                                        image_off=args.image_off, offset=args.offset)
        for key in ("input_size", "width_multiplier", "seed"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        out = write_plugin(args.out, args.model, region_map, weights=args.weights, identifier=args.identifier,
                           sha256=args.sha256, requirement=args.requirement, overwrite=args.force,
                           trusted=args.trust_checkpoint, **settings)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the Brain-Score plugin {out} (zip this folder to submit; see docs/brainscore.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
