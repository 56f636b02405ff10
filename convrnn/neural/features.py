"""Model features for neural fits: extraction, streamed to disk one batch at a time, and the stores that the fit
stage reads (the :class:`FeatureSource` protocol, :class:`ArrayFeatures` in memory, :class:`MemmapFeatures` on disk).

Each (layer, step) becomes one ``.npy`` file ``[n_stimuli, n_features]`` that ``MemmapFeatures`` opens with mmap, so
memory stays bounded by one batch of one model run, never by all layers x steps x stimuli. Files are written
under a temporary name (``step_<t>.npy.partial``) and renamed when complete, and ``stimulus_ids.txt`` is written
last, so an interrupted run never leaves a truncated array that looks finished.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from numpy.lib.format import open_memmap

from convrnn.graph.model import ConvRNN
from convrnn.io import atomic_open, atomic_write_text
from convrnn.neural.stimuli import load_image
from convrnn.presentation import IMAGENET_MEAN, IMAGENET_STD, normalise
from convrnn.threads import torch_threads

__all__ = ["ArrayFeatures", "FeatureSource", "MemmapFeatures", "extract_features", "fit_pca", "image_batches",
           "image_tensor"]

logger = logging.getLogger(__name__)

PCA = dict[str, tuple[torch.Tensor, torch.Tensor]]


# ----------------------------------------------------------------------------------------------------------------
# feature stores: what the fit stage reads


@runtime_checkable
class FeatureSource(Protocol):
    """What the scoring loop needs from model features: rows are stimuli in ``stimulus_ids`` order.

    ``get`` may return a numpy array, a numpy memmap or a torch tensor of shape ``[n_stimuli, n_features]``; it is
    called once per (layer, step) per scoring run, so disk-backed sources are read once.
    """

    @property
    def stimulus_ids(self) -> Sequence[str]: ...

    @property
    def layers(self) -> Sequence[str]: ...

    def steps(self, layer: str) -> Sequence[int]: ...

    def get(self, layer: str, step: int) -> Any: ...


class ArrayFeatures:
    """In-memory features: ``features[layer]`` is ``[steps, stimuli, units]`` (steps 0..T-1) or a mapping
    ``{step: [stimuli, units]}``."""

    def __init__(self, features: Mapping[str, Any], stimulus_ids: Sequence[Any]) -> None:
        self._features = dict(features)
        self._ids = [str(s) for s in stimulus_ids]

    @property
    def stimulus_ids(self) -> Sequence[str]:
        return self._ids

    @property
    def layers(self) -> Sequence[str]:
        return list(self._features)

    def steps(self, layer: str) -> Sequence[int]:
        value = self._features[layer]
        return sorted(value) if isinstance(value, Mapping) else list(range(len(value)))

    def get(self, layer: str, step: int) -> Any:
        return self._features[layer][step]


class MemmapFeatures:
    """Disk-backed features: ``root/stimulus_ids.txt`` and ``root/<layer>/step_<t>.npy`` (opened with mmap).

    Why: a 26-step recurrent model with 10^5-unit layers does not fit in memory; each (layer, step) is read once.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._ids = (self.root / "stimulus_ids.txt").read_text().split("\n")
        self._ids = [s for s in self._ids if s]

    @staticmethod
    def write(root: str | os.PathLike, layer: str, step: int, array: Any,
              stimulus_ids: Sequence[Any] | None = None) -> Path:
        """Store one (layer, step) array; ``stimulus_ids`` writes the row labels (needed once)."""
        root = Path(root)
        (root / layer).mkdir(parents=True, exist_ok=True)
        if stimulus_ids is not None:
            atomic_write_text(root / "stimulus_ids.txt", "\n".join(str(s) for s in stimulus_ids) + "\n")
        path = root / layer / f"step_{int(step)}.npy"
        with atomic_open(path, "wb") as handle:
            np.save(handle, np.asarray(array))
        return path

    @property
    def stimulus_ids(self) -> Sequence[str]:
        return self._ids

    @property
    def layers(self) -> Sequence[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def steps(self, layer: str) -> Sequence[int]:
        return sorted(int(p.stem.split("_", 1)[1]) for p in (self.root / layer).glob("step_*.npy"))

    def get(self, layer: str, step: int) -> Any:
        return np.load(self.root / layer / f"step_{int(step)}.npy", mmap_mode="r")



# ----------------------------------------------------------------------------------------------------------------
# extraction


def image_tensor(path: str | os.PathLike, size: int, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """An image (a file, or ``"<zip>::<member>"`` from ``load_stimulus_set``) -> normalised ``[3, size, size]``.

    Resized with bilinear filtering (a no-op at the native size) and normalised like the training input
    (:func:`convrnn.presentation.normalise`: per-channel ``(x - mean) / std`` on [0, 1] pixels).
    """
    img = load_image(str(path))  # decoded with Pillow (convrnn.neural.stimuli), then sized and normalised here
    if img.size != (size, size):
        img = img.resize((size, size), resample=2)  # PIL.Image.BILINEAR
    pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return normalise(pixels, mean, std)


def image_batches(paths: Sequence[str | os.PathLike], size: int, batch_size: int,
                  mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
                  ) -> Iterator[torch.Tensor]:
    """Consecutive batches ``[B, 3, size, size]`` of :func:`image_tensor` results, in ``paths`` order."""
    for start in range(0, len(paths), batch_size):
        yield torch.stack([image_tensor(p, size, mean, std) for p in paths[start:start + batch_size]])


def _flat(features: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] -> [B, C*H*W] float32 (channel-major, like a flattened NCHW array)."""
    return features.detach().float().reshape(features.shape[0], -1).cpu().numpy()


def _check_layers(model: ConvRNN, layers: Sequence[str]) -> None:
    unknown = [layer for layer in layers if layer not in model.layer_names]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; the model has {model.layer_names}")


@torch.no_grad()
def fit_pca(model: ConvRNN, paths: Sequence[str | os.PathLike], layers: Sequence[str], n_components: int, *,
            times: int = 26, image_off: int | None = 10, batch_size: int = 32,
            device: str | torch.device = "cpu", mean: Sequence[float] = IMAGENET_MEAN,
            std: Sequence[float] = IMAGENET_STD, threads: int | None = 1,
            progress: Callable[[int], None] | None = None) -> PCA:
    """Per layer, a PCA ``(mean [D], components [D, k])`` fit on a *separate* image set (Brain-Score's convention).

    The fit pools the layer's image-driven steps (t >= its first image step), so one basis serves every step.
    Layers with at most ``n_components`` units are left out (used unprojected, as Brain-Score skips them). It holds
    the PCA set's features of one layer in memory: keep that set modest (Brain-Score uses 1,000 images).
    ``threads``: torch threads for the model runs (see :func:`convrnn.threads.torch_threads`). ``progress(n)`` is
    called after each batch of ``n`` images (the caller draws any bar).
    """
    _check_layers(model, layers)
    model.eval().to(device)
    pooled: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    with torch_threads(threads):
        for batch in image_batches(paths, model.input_size, batch_size, mean, std):
            out = model(batch.to(device), times=times, image_off=image_off, return_features=list(layers))
            for layer in layers:
                for t in range(model.first_image_step(layer), times):
                    pooled[layer].append(_flat(out.features[layer][t]))
            if progress is not None:
                progress(len(batch))
    result: PCA = {}
    for layer in layers:
        X = torch.from_numpy(np.concatenate(pooled.pop(layer))).double()
        if X.shape[1] <= n_components:
            logger.info("PCA: %s has %d units <= %d components; left unprojected", layer, X.shape[1], n_components)
            continue
        center = X.mean(dim=0)
        k = min(n_components, X.shape[0] - 1)
        Xc = X - center
        if min(Xc.shape) <= 2048:
            _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
            V = Vh[:k].T
        else:  # randomised SVD: the top k directions of a large matrix at a fraction of the cost
            _, _, V = torch.svd_lowrank(Xc, q=min(k + 20, min(Xc.shape)), niter=6)
            V = V[:, :k]
        result[layer] = (center.float(), V.contiguous().float())
    return result


def _clear(out_dir: Path) -> None:
    """Remove a previous run's feature files so stale layers or steps cannot mix with new ones."""
    marker = out_dir / "stimulus_ids.txt"
    if marker.exists():
        marker.unlink()
    for sub in out_dir.iterdir():
        if not sub.is_dir():
            continue
        files = list(sub.iterdir())
        if files and all(f.name.startswith("step_") and (f.suffix == ".npy" or f.name.endswith(".npy.partial"))
                         for f in files):
            for f in files:
                f.unlink()
            sub.rmdir()


@torch.no_grad()
def extract_features(model: ConvRNN, image_paths: Sequence[str | os.PathLike], stimulus_ids: Sequence[Any],
                     layers: Sequence[str], out_dir: str | os.PathLike, *, times: int = 26,
                     image_off: int | None = 10, steps: Sequence[int] | None = None, batch_size: int = 32,
                     device: str | torch.device = "cpu", pca: PCA | None = None,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     threads: int | None = 1, progress: Callable[[int], None] | None = None) -> MemmapFeatures:
    """Run ``model`` on the stimuli with the neural presentation and store every (layer, step) on disk.

    Defaults: T = 26 steps, the image for 10 steps then blank (the 100 ms on / gray protocol).
    ``steps`` keeps only those steps (default all ``times``). ``pca`` (from :func:`fit_pca`) projects each layer
    it covers onto its k components before writing. Feature files of an earlier run in ``out_dir`` are removed
    first. ``threads``: torch threads for the model runs (default 1, see :func:`convrnn.threads.torch_threads`; None
    keeps torch's setting, e.g. for a GPU or an idle many-core machine). ``progress(n)`` is called after each batch
    of ``n`` images (the caller draws any bar, e.g. ``tqdm(...).update``). Returns the :class:`MemmapFeatures` view
    (rows in ``stimulus_ids`` order).
    """
    if len(image_paths) != len(stimulus_ids):
        raise ValueError(f"{len(image_paths)} images but {len(stimulus_ids)} stimulus ids")
    if len(set(map(str, stimulus_ids))) != len(stimulus_ids):
        raise ValueError("stimulus ids must be unique")
    _check_layers(model, layers)
    keep = list(range(times)) if steps is None else sorted({int(t) for t in steps})
    bad = [t for t in keep if not 0 <= t < times]
    if bad:
        raise ValueError(f"steps {bad} outside [0, {times})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    model.eval().to(device)
    n = len(image_paths)
    arrays: dict[tuple[str, int], np.memmap] = {}
    position = 0
    for batch in image_batches(image_paths, model.input_size, batch_size, mean, std):
        with torch_threads(threads):
            out = model(batch.to(device), times=times, image_off=image_off, return_features=list(layers))
        for layer in layers:
            for t in keep:
                rows = _flat(out.features[layer][t])
                if pca is not None and layer in pca:
                    center, components = pca[layer]
                    rows = ((torch.from_numpy(rows) - center) @ components).numpy()
                key = (layer, t)
                if key not in arrays:
                    (out_dir / layer).mkdir(exist_ok=True)
                    arrays[key] = open_memmap(out_dir / layer / f"step_{t}.npy.partial", mode="w+",
                                              dtype=np.float32, shape=(n, rows.shape[1]))
                arrays[key][position:position + len(rows)] = rows
        del out
        position += len(batch)
        if progress is not None:
            progress(len(batch))
    for (layer, t), array in list(arrays.items()):
        array.flush()
        del arrays[(layer, t)], array
        os.replace(out_dir / layer / f"step_{t}.npy.partial", out_dir / layer / f"step_{t}.npy")
    atomic_write_text(out_dir / "stimulus_ids.txt", "\n".join(str(s) for s in stimulus_ids) + "\n")
    return MemmapFeatures(out_dir)
