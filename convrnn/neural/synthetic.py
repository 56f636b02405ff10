"""Synthetic time-binned V4/IT recordings with a known ground truth: the embedded default data and the test oracle.

Why: the real HvM 10 ms data are private, yet the pipeline needs data of the same shape, and its tests
need data whose correct scores are known in advance.

**Stimuli.** HvM-shaped images from :class:`convrnn.data.synthetic_objects.SyntheticObjects`: 8 categories x 8
objects at variation levels 0/3/6, ``images_per_object_per_level`` images each (default 2 -> 384 images; 4 -> 768;
HvM itself has 5,760). Written as a brainio stimulus set: ``stimuli/stimulus_set.csv`` (``stimulus_id``,
``filename``, ``object_name``, ``category_name``, ``variation``, pose) plus one PNG per stimulus.

**Sites.** V4 and IT sites; IT sites carry ``subregion`` pIT/cIT/aIT. Neuroid coordinates follow MajajHong2015:
``neuroid_id`` (``animal_hemisphere_arr_row_col``), ``region``, ``subregion`` (``"V4"`` for V4 sites), ``animal``
(two), ``hemisphere``, ``arr`` (our assignment: V4 -> P, pIT -> M, cIT/aIT -> A), ``row``, ``col``, ``x``, ``y``;
plus the ground truth ``teacher_layer`` and ``target_ceiling``. Responses are ``[repetition, stimulus, site, bin]``
with ``repetitions`` trials (default 20) in 10 ms bins 70-260 ms (19 bins, ``time_bin_start``/``time_bin_end``).

**Responses = a known linear readout of a hidden teacher + trial noise.** The teacher is a zoo ConvRNN with fixed
random weights (default ``rgc_intermediate``, 64 px, width 0.125, ``torch.manual_seed(teacher_seed)``) run with the
neural presentation (26 steps, image off at 10), on the written PNGs through the same loader that scores models
(:func:`convrnn.neural.features.extract_features`), so scoring the teacher itself sees bit-identical features.
Site n of teacher layer L reads ``signal[s, n, b] = X_{L, t_b}[s] . w_n`` with one weight vector w_n over the units
of L, a Gaussian mix of the layer's top ``readout_rank`` (default 8) principal axes, shared by every bin, scaled
so the site's signal has unit variance averaged over bins. Step t_b is
:func:`convrnn.neural.areas.default_bin_steps` (``bin_start // 10 + offset``, offset 0: steps 7..25), the
bin -> step rule that ``score_model`` uses by default. Layer per area (Nayebi's best layers for intermediate models;
docs/neural.md, "Synthetic ventral-stream data"): V4 -> conv5/conv6, pIT -> conv7/conv8, cIT -> conv9,
aIT -> conv10 (sites alternate between the two V4 / pIT layers).

**Noise and the analytic ceiling.** Trial noise is Gaussian with variance sigma^2 per (site, bin). With signal
variance s^2 across stimuli and R trials, the mean of a half (R/2 trials) has noise variance 2 sigma^2 / R, so the
split-half correlation is ``r_half = s^2 / (s^2 + 2 sigma^2 / R)`` and the Spearman-Brown ceiling of the full mean
is ``c = 2 r_half / (1 + r_half) = s^2 / (s^2 + sigma^2 / R)``. Each site gets a target ceiling c (per region,
``ceilings``, default V4 0.90 and IT 0.82 as Brain-Score's MajajHong2015 ceilings, jittered uniformly by
``ceiling_jitter``), hence ``r_half = c / (2 - c)`` and ``sigma^2 = s^2 R (1/r_half - 1) / 2``, with s^2 measured on
these stimuli. The analytic area ceiling per bin is the median of the sites' c (Brain-Score's median over
neuroids). Bins in which a site's layer has not yet received the image (conv9 before step 8, conv10 before
step 9, i.e. the 70/80 ms bins of cIT/aIT) carry no stimulus information: those sites are pure noise there
(analytic ceiling 0), like IT sites before their response latency.

With the R^2/c convention (:data:`convrnn.neural.metrics.CONVENTIONS`) a model that predicts the signal perfectly
scores ~1: r(prediction, trial mean) = sqrt(c), so R^2 / c = 1.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from convrnn.data.synthetic_objects import SyntheticObjects
from convrnn.neural.areas import NAYEBI_AREAS, default_bin_steps
from convrnn.neural.assembly import load_assembly, save_assembly
from convrnn.neural.checkpoint import build_seeded
from convrnn.neural.features import MemmapFeatures, extract_features
from convrnn.neural.plain import from_arrays
from convrnn.neural.stimuli import load_stimulus_set
from convrnn.threads import torch_threads

__all__ = [
    "ASSEMBLY_IDENTIFIER",
    "DEFAULT_LAYERS",
    "STIMULUS_SET_IDENTIFIER",
    "SyntheticConfig",
    "SyntheticRecordings",
    "build_teacher",
    "generate",
    "load_synthetic",
    "write_pca_images",
]

logger = logging.getLogger(__name__)

ASSEMBLY_IDENTIFIER = "convrnn.SyntheticVentral10ms"
STIMULUS_SET_IDENTIFIER = "convrnn.SyntheticObjects"
ASSEMBLY_FILE = "assy_convrnn_SyntheticVentral10ms.nc"
STIMULI_DIR = "stimuli"
PARAMS_FILE = "params.json"
TEACHER_FEATURES_DIR = "teacher_features"
SITES_FILE = "sites.csv"
GROUND_TRUTH_FILE = "ground_truth.json"
FORMAT_VERSION = 2

#: Teacher layers read by each subregion (Nayebi's intermediate-model best layers); sites alternate over the list.
DEFAULT_LAYERS: dict[str, tuple[str, ...]] = {
    "V4": ("conv5", "conv6"),
    "pIT": ("conv7", "conv8"),
    "cIT": ("conv9",),
    "aIT": ("conv10",),
}
_REGION_OF = {"V4": "V4", "pIT": "IT", "cIT": "IT", "aIT": "IT"}
_ARRAY_OF = {"V4": "P", "pIT": "M", "cIT": "A", "aIT": "A"}
_ANIMALS = ("Synth1", "Synth2")


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the synthetic recordings (all outputs are a pure function of it).

    Sizes: ``images_per_object_per_level`` x 64 objects x 3 levels stimuli (2 -> 384), ``sites`` per subregion,
    ``repetitions`` trials (even, so split halves are equal). ``ceilings`` are target Spearman-Brown ceilings per
    region, jittered per site by +-``ceiling_jitter``.
    """

    teacher: str = "rgc_intermediate"
    input_size: int = 64
    width_multiplier: float = 0.125
    teacher_seed: int = 0
    images_per_object_per_level: int = 2
    n_categories: int = 8
    objects_per_category: int = 8
    levels: tuple[int, ...] = (0, 3, 6)
    stimulus_seed: int = 0
    split_seed: int = 0
    sites: Mapping[str, int] = field(default_factory=lambda: {"V4": 32, "pIT": 16, "cIT": 16, "aIT": 16})
    layers: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(DEFAULT_LAYERS))
    repetitions: int = 20
    ceilings: Mapping[str, float] = field(default_factory=lambda: {"V4": 0.90, "IT": 0.82})
    ceiling_jitter: float = 0.05
    bin_start: int = 70
    bin_end: int = 260
    bin_width: int = 10
    offset: int = 0
    times: int = 26
    image_off: int = 10
    readout_rank: int = 8
    noise_seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.repetitions < 2:
            raise ValueError(f"repetitions must be >= 2 for split-half ceilings, got {self.repetitions}")
        unknown = set(self.sites) - set(_REGION_OF)
        if unknown:
            raise ValueError(f"unknown subregions {sorted(unknown)}; use {sorted(_REGION_OF)}")
        missing = [s for s, n in self.sites.items() if n > 0 and not self.layers.get(s)]
        if missing:
            raise ValueError(f"no teacher layer given for subregions {missing}")
        for region in {_REGION_OF[s] for s, n in self.sites.items() if n > 0}:
            c = self.ceilings.get(region)
            if c is None or not (c - self.ceiling_jitter > 0 and c + self.ceiling_jitter < 1):
                raise ValueError(f"ceilings[{region!r}]={c} +- {self.ceiling_jitter} must lie inside (0, 1)")
        if self.readout_rank < 1:
            raise ValueError(f"readout_rank must be >= 1, got {self.readout_rank}")
        if (self.bin_end - self.bin_start) % self.bin_width:
            raise ValueError("bin_end - bin_start must be a multiple of bin_width")

    @property
    def bins(self) -> np.ndarray:
        """``[B, 2]`` (start, end) ms."""
        starts = np.arange(self.bin_start, self.bin_end, self.bin_width)
        return np.stack([starts, starts + self.bin_width], axis=1)

    @property
    def steps(self) -> list[int]:
        """Teacher step per bin (``score_model``'s default mapping)."""
        return default_bin_steps(self.bins, step_ms=10.0, offset=self.offset)

    @property
    def n_stimuli(self) -> int:
        return self.images_per_object_per_level * self.n_categories * self.objects_per_category * len(self.levels)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["sites"] = dict(self.sites)
        d["layers"] = {k: list(v) for k, v in self.layers.items()}
        d["ceilings"] = dict(self.ceilings)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SyntheticConfig:
        d = dict(d)
        d["levels"] = tuple(d["levels"])
        d["layers"] = {k: tuple(v) for k, v in d["layers"].items()}
        return cls(**d)


@dataclass
class SyntheticRecordings:
    """A written synthetic dataset and its ground truth.

    * ``assembly``: (presentation, neuroid, time_bin) DataArray (trials, not averaged), as :func:`load_assembly`
      returns it; ``stimulus_set``: the stimulus table with ``image_path`` (:func:`load_stimulus_set`).
    * ``sites``: one row per neuroid (``neuroid_id``, region, subregion, ``teacher_layer``, ``target_ceiling``,
      ``r_half`` = target split-half r).
    * ``steps``: the teacher step of each bin (same for every site); ``bins``: ``[B, 2]`` ms.
    * ``site_ceiling``: ``[site, bin]`` analytic Spearman-Brown ceiling (0 where the layer has no image yet).
    * paths: ``root``, ``assembly_path``, ``stimuli_csv``, ``images_dir``.
    """

    config: SyntheticConfig
    root: Path
    assembly: xr.DataArray
    stimulus_set: pd.DataFrame
    sites: pd.DataFrame
    steps: list[int]
    bins: np.ndarray
    site_ceiling: np.ndarray

    @property
    def assembly_path(self) -> Path:
        return self.root / ASSEMBLY_FILE

    @property
    def stimuli_csv(self) -> Path:
        return self.root / STIMULI_DIR / "stimulus_set.csv"

    @property
    def images_dir(self) -> Path:
        return self.root / STIMULI_DIR

    def teacher_features(self) -> MemmapFeatures | None:
        """The teacher's features (layers read by the sites, the bins' steps) if generated with
        ``keep_teacher_features``; else None (run :func:`build_teacher` through ``extract_features``)."""
        folder = self.root / TEACHER_FEATURES_DIR
        return MemmapFeatures(folder) if (folder / "stimulus_ids.txt").exists() else None

    def true_layer(self, neuroid_id: str) -> str:
        """The teacher layer that drives a site."""
        return str(self.sites.set_index("neuroid_id").loc[neuroid_id, "teacher_layer"])

    def analytic_ceilings(self, areas: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
        """Per (area, bin): the median over the area's sites of the analytic ceiling (what Brain-Score's
        split-half procedure estimates). ``areas`` as in ``score_model`` (default :data:`NAYEBI_AREAS`)."""
        areas = NAYEBI_AREAS if areas is None else areas
        rows = []
        for name, selector in areas.items():
            mask = np.ones(len(self.sites), dtype=bool)
            for coord, wanted in selector.items():
                values = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Sequence) else list(wanted)
                mask &= self.sites[coord].astype(str).isin([str(v) for v in values]).to_numpy()
            if not mask.any():
                continue
            med = np.median(self.site_ceiling[mask], axis=0)
            for b, (start, end) in enumerate(self.bins):
                rows.append(dict(area=name, bin=int(start), bin_end=int(end), analytic_ceiling=float(med[b]),
                                 n_neuroids=int(mask.sum())))
        return pd.DataFrame(rows)

    def true_layers(self) -> pd.DataFrame:
        """Per subregion: the teacher layers and how many sites read each."""
        return (self.sites.groupby(["subregion", "teacher_layer"]).size().rename("n_sites").reset_index())


# ----------------------------------------------------------------------------------------------------------------
# teacher


def build_teacher(config: SyntheticConfig | None = None) -> torch.nn.Module:
    """The hidden teacher ConvRNN: a zoo model with weights fixed by ``teacher_seed`` (global RNG untouched)."""
    config = config or SyntheticConfig()
    return build_seeded(config.teacher, config.teacher_seed, input_size=config.input_size,
                        width_multiplier=config.width_multiplier, presentation="neural")


# ----------------------------------------------------------------------------------------------------------------
# generation


def _site_table(config: SyntheticConfig, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for sub, n in config.sites.items():
        layers = list(config.layers[sub])
        region = _REGION_OF[sub]
        for i in range(int(n)):
            animal = _ANIMALS[i % len(_ANIMALS)]
            arr = _ARRAY_OF[sub]
            row, col = divmod(i // len(_ANIMALS), 10)
            c = config.ceilings[region] + rng.uniform(-config.ceiling_jitter, config.ceiling_jitter)
            rows.append(dict(
                neuroid_id=f"{animal}_L_{arr}_{sub}_{row}_{col}",
                region=region, subregion=sub, animal=animal, hemisphere="L", arr=arr,
                row=row, col=col, x=float(col) * 0.4, y=float(row) * 0.4,
                teacher_layer=layers[i % len(layers)], target_ceiling=float(c),
            ))
    sites = pd.DataFrame(rows)
    if sites.empty:
        raise ValueError("no sites requested")
    sites["r_half"] = sites["target_ceiling"] / (2.0 - sites["target_ceiling"])
    return sites


def _readout_basis(xs: Sequence[np.ndarray], rank: int) -> np.ndarray:
    """``[units, rank]``: the layer's top principal axes, pooled over the bins' steps.

    Each step is centred and scaled to unit total variance first, so late steps with large activity do not
    dominate; steps without stimulus variance are skipped. Axes come from an eigendecomposition of the pooled
    ``units x units`` covariance (cheaper than an SVD of the tall data) and get a fixed sign (largest entry > 0).
    """
    units = xs[0].shape[1]
    cov = torch.zeros(units, units, dtype=torch.float64)
    for x in xs:
        xc = torch.from_numpy(np.asarray(x, dtype=np.float64))
        xc = xc - xc.mean(dim=0)
        total = float((xc**2).sum())
        if total > 0:
            cov += xc.T @ xc / total
    if not torch.any(cov != 0):
        return np.zeros((units, rank))
    _, vectors = torch.linalg.eigh(cov)
    basis = vectors.flip(-1)[:, :rank].numpy()
    basis = basis * np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(basis.shape[1])])
    if basis.shape[1] < rank:
        basis = np.pad(basis, ((0, 0), (0, rank - basis.shape[1])))
    return basis


def _responses(config: SyntheticConfig, features: Any, sites: pd.DataFrame, n_stim: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Trials ``[R, S, N, B]`` (float32) and the analytic ceilings ``[N, B]``."""
    steps = config.steps
    n_sites, n_bins, R = len(sites), len(steps), config.repetitions
    signal = np.zeros((n_stim, n_sites, n_bins))
    by_layer = {layer: np.flatnonzero(sites["teacher_layer"].to_numpy() == layer)
                for layer in pd.unique(sites["teacher_layer"])}
    for layer, idx in by_layer.items():
        xs = [np.asarray(features.get(layer, t), dtype=np.float64) for t in steps]
        w = _readout_basis(xs, config.readout_rank) @ rng.standard_normal((config.readout_rank, len(idx)))
        sig = np.stack([x @ w for x in xs], axis=-1)  # [S, n_layer_sites, B]
        scale = np.sqrt(sig.var(axis=0).mean(axis=-1))  # unit signal variance, averaged over bins
        signal[:, idx] = sig / np.where(scale > 0, scale, 1.0)[None, :, None]
    s2 = signal.var(axis=0)  # [N, B]
    informative = s2 > 1e-10 * max(float(s2.max()), 1e-30)
    r_half = sites["r_half"].to_numpy()[:, None]
    noise_var = np.where(informative, s2 * R * (1.0 / r_half - 1.0) / 2.0, np.nan)
    site_mean = np.nanmean(np.where(informative, noise_var, np.nan), axis=1, keepdims=True)
    noise_var = np.where(informative, noise_var, np.broadcast_to(np.nan_to_num(site_mean, nan=1.0), noise_var.shape))
    signal = np.where(informative[None], signal, 0.0)  # exact zeros where the layer is stimulus-independent
    trials = np.empty((R, n_stim, n_sites, n_bins), dtype=np.float32)
    for r in range(R):
        trials[r] = signal + np.sqrt(noise_var)[None] * rng.standard_normal(signal.shape)
    ceiling = np.where(informative, sites["target_ceiling"].to_numpy()[:, None], 0.0)
    return trials, ceiling


def write_pca_images(out_dir: str | os.PathLike, config: SyntheticConfig | None = None, *,
                     images_per_object_per_level: int = 1, split_seed: int = 1) -> Path:
    """Render a separate image set (another ``split_seed``: new poses and backgrounds) for fitting a PCA.

    Returns the stimulus-set CSV path. Why: Brain-Score fits the PCA on images that are not the test stimuli.
    """
    config = config or SyntheticConfig()
    if split_seed == config.split_seed:
        raise ValueError("the PCA images need a split_seed different from the stimuli's")
    gen = SyntheticObjects(config.input_size, config.n_categories, config.objects_per_category, config.stimulus_seed)
    table = gen.sample_table(images_per_object_per_level, config.levels, split_seed=split_seed)
    return gen.write_stimulus_set(out_dir, table)


def _teacher_features(config: SyntheticConfig, stimuli: pd.DataFrame, sites: pd.DataFrame, out_dir: Path,
                      progress: Callable[[int], None] | None) -> Any:
    """The teacher's features of the bins' steps for the sites' layers, through the models' own image loader."""
    layers = sorted(pd.unique(sites["teacher_layer"]), key=lambda name: (len(name), name))
    return extract_features(build_teacher(config), stimuli["image_path"].tolist(), stimuli["stimulus_id"].tolist(),
                            layers, out_dir, times=config.times, image_off=config.image_off,
                            steps=sorted(set(config.steps)), batch_size=config.batch_size, progress=progress)


def generate(out_dir: str | os.PathLike, config: SyntheticConfig | None = None, *, overwrite: bool = False,
             keep_teacher_features: bool = False,
             progress: Callable[[int], None] | None = None) -> SyntheticRecordings:
    """Write (or reuse) the synthetic dataset in ``out_dir`` and return it with its ground truth.

    Layout: ``assy_convrnn_SyntheticVentral10ms.nc`` (brainio assembly), ``stimuli/stimulus_set.csv`` + PNGs,
    ``sites.csv``, ``ground_truth.json``, ``params.json``. Everything is written to a temporary sibling folder
    that is renamed into place, so ``out_dir`` is either absent or complete. If ``out_dir`` already holds a
    dataset with the same config it is loaded, not rewritten; another config raises unless ``overwrite``.
    ``keep_teacher_features`` keeps the teacher's features of the bins' steps in ``teacher_features/`` (a
    :class:`MemmapFeatures` folder, see :meth:`SyntheticRecordings.teacher_features`). ``progress(n)`` is called
    as the teacher runs on each batch of ``n`` images (the caller draws any bar).
    """
    config = config or SyntheticConfig()
    out = Path(out_dir)
    if (out / PARAMS_FILE).exists():
        existing = json.loads((out / PARAMS_FILE).read_text())
        if existing.get("config") == config.to_json() and existing.get("format") == FORMAT_VERSION:
            logger.info("reusing synthetic recordings in %s", out)
            rec = load_synthetic(out)
            if keep_teacher_features and rec.teacher_features() is None:
                tmp = Path(tempfile.mkdtemp(prefix=".teacher_features.", suffix=".partial", dir=out))
                try:
                    _teacher_features(config, rec.stimulus_set, rec.sites, tmp, progress)
                    os.replace(tmp, out / TEACHER_FEATURES_DIR)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            return rec
        if not overwrite:
            raise FileExistsError(f"{out} holds synthetic recordings with another config; use another directory "
                                  "(fit_neural.py: --synthetic-dir), delete this one, or pass overwrite=True")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not a synthetic-recordings folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        gen = SyntheticObjects(config.input_size, config.n_categories, config.objects_per_category,
                               config.stimulus_seed)
        table = gen.sample_table(config.images_per_object_per_level, config.levels, split_seed=config.split_seed)
        csv_path = gen.write_stimulus_set(tmp / STIMULI_DIR, table)
        stimuli = load_stimulus_set(csv_path, identifier=STIMULUS_SET_IDENTIFIER)
        rng = np.random.default_rng([config.noise_seed, 0x5EED])
        sites = _site_table(config, rng)
        feats = _teacher_features(config, stimuli, sites, tmp / TEACHER_FEATURES_DIR, progress)
        with torch_threads(1):  # small products; threads only add overhead (see torch_threads)
            trials, ceiling = _responses(config, feats, sites, len(stimuli), rng)
        del feats
        if not keep_teacher_features:
            shutil.rmtree(tmp / TEACHER_FEATURES_DIR)
        stim_coords = table.copy()
        stim_coords["filename"] = stimuli["filename"].to_numpy()
        assembly = from_arrays(trials, stim_coords, sites.drop(columns=["r_half"]), config.bins,
                               attrs={"stimulus_set_identifier": STIMULUS_SET_IDENTIFIER})
        save_assembly(assembly, tmp / ASSEMBLY_FILE, identifier=ASSEMBLY_IDENTIFIER,
                      stimulus_set_identifier=STIMULUS_SET_IDENTIFIER, complevel=1)
        sites.to_csv(tmp / SITES_FILE, index=False)
        truth = dict(steps=config.steps, bins=config.bins.tolist(), site_ceiling=ceiling.round(12).tolist(),
                     neuroid_ids=sites["neuroid_id"].tolist(),
                     note="site_ceiling[site][bin]: analytic Spearman-Brown ceiling; 0 = no stimulus signal")
        (tmp / GROUND_TRUTH_FILE).write_text(json.dumps(truth))
        (tmp / PARAMS_FILE).write_text(json.dumps(dict(format=FORMAT_VERSION, config=config.to_json()), indent=1))
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_synthetic(out)


def load_synthetic(root: str | os.PathLike) -> SyntheticRecordings:
    """Load a dataset written by :func:`generate` (assembly, stimulus set and ground truth)."""
    root = Path(root)
    params = json.loads((root / PARAMS_FILE).read_text())
    config = SyntheticConfig.from_json(params["config"])
    truth = json.loads((root / GROUND_TRUTH_FILE).read_text())
    sites = pd.read_csv(root / SITES_FILE)
    if sites["neuroid_id"].tolist() != truth["neuroid_ids"]:
        raise ValueError(f"{root}: sites.csv and ground_truth.json disagree")
    stimuli = load_stimulus_set(root / STIMULI_DIR / "stimulus_set.csv", identifier=STIMULUS_SET_IDENTIFIER)
    assembly = load_assembly(root / ASSEMBLY_FILE)
    return SyntheticRecordings(config=config, root=root, assembly=assembly, stimulus_set=stimuli, sites=sites,
                               steps=list(truth["steps"]), bins=np.asarray(truth["bins"]),
                               site_ceiling=np.asarray(truth["site_ceiling"], dtype=np.float64))
