"""Any ConvRNN as a Brain-Score vision ``BrainModel`` with a temporal commitment.

Brain-Score's benchmarks talk to a model through four calls: ``start_recording(region, time_bins)`` or
``start_task(task, ...)``, then ``look_at(stimuli)``. :class:`ConvRNNBrainModel` answers them for a ConvRNN:

* **Recording.** The stimuli (a ``StimulusSet``: its ``stimulus_id`` rows, files from ``get_stimulus``, or a list
  of paths) are resized and normalised as ``fit_neural.py`` does (:func:`convrnn.neural.features.image_batches`),
  and shown with the neural presentation: ``times`` = 26 steps of 10 ms, the image for the first ``image_off`` =
  10 steps, then the blank. Each requested bin reads the steps it covers (:mod:`convrnn.brainscore.timebins`:
  step t = ``[10(t - offset), 10(t - offset + 1))`` ms, as in ``fit_neural.py``) from the region's layer(s).
  Batches stream through the model and only the bins' averages are kept, so memory is one batch of one model
  run plus the returned assembly. The result is a ``NeuroidAssembly`` with dims ``(presentation, neuroid,
  time_bin)``: every StimulusSet column on ``presentation``, ``neuroid_id``/``layer``/``region``/``channel``/
  ``channel_x``/``channel_y`` on ``neuroid``, ``time_bin_start``/``time_bin_end`` on ``time_bin``.
* **Tasks.** ``label`` (``'imagenet'``: the synset of the top decoded logit; a list of labels: Brain-Score's
  ImageNet-index groups, mean (or max) softmax probability per label) and ``probabilities`` (Brain-Score's logistic
  readout fit on ``fitting_stimuli``' ``image_label``) all use the model's decoded ImageNet logits: the model is
  run with the schedule it was trained with and its own decoder (``last``, ``tmaxconf``, ...) picks the answer.
* ``visual_degrees()``: 8 by default (the visual angle of the MajajHong2015 images; Brain-Score then shows
  every benchmark's stimuli at that size).

The model is deterministic, so ``number_of_trials`` is accepted and ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

try:
    from brainscore_core.supported_data_standards.brainio.assemblies import BehavioralAssembly, NeuroidAssembly
    from brainscore_vision.model_interface import BrainModel
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("convrnn.brainscore.adapter needs Brain-Score vision (brainscore-vision==2.4.2) in a separate "
                      "environment: `make brainscore-env` (see docs/brainscore.md)") from exc

from convrnn.errors import UserError
from convrnn.graph.model import ConvRNN
from convrnn.neural.features import image_batches
from convrnn.presentation import IMAGENET_MEAN, IMAGENET_STD
from convrnn.threads import torch_threads

from .regions import RegionLayerMap, check_layers, normalise_map
from .timebins import STEP_MS, bin_step_weights, normalise_bins

__all__ = ["DEFAULT_VISUAL_DEGREES", "ConvRNNBrainModel"]

logger = logging.getLogger(__name__)

#: how a label pools the probabilities of its ImageNet classes (Brain-Score's ``aggregation``)
_AGGREGATIONS = {"mean": np.mean, "max": np.max}

#: degrees of visual angle the model's input spans (MajajHong2015's images; Brain-Score's usual default)
DEFAULT_VISUAL_DEGREES = 8


class ConvRNNBrainModel(BrainModel):
    """A ConvRNN behind Brain-Score's ``BrainModel`` interface (see the module doc).

    ``region_layer_map``: ``{"V4": "conv5", "IT": ["conv9", "conv10"]}`` (or ``"conv9+conv10"``); build it with
    :func:`convrnn.brainscore.regions.parse_regions` or from a ``fit_neural.py`` run with
    :func:`~convrnn.brainscore.regions.regions_from_best_layers`. ``times``/``image_off``/``offset``/``step_ms``:
    the neural presentation and the step <-> time rule of ``fit_neural.py``. ``task_times``/``task_image_off``:
    the presentation for the classification tasks (None: the model's own schedule). ``mean``/``std``: the input
    normalisation (a checkpoint's saved values, ImageNet's by default). ``threads``: torch threads while the
    model runs (1: its small convolutions lose to OpenMP overhead).
    """

    def __init__(self, model: ConvRNN, identifier: str, region_layer_map: Mapping[str, str | Sequence[str]], *,
                 visual_degrees: float = DEFAULT_VISUAL_DEGREES, times: int = 26, image_off: int | None = 10,
                 offset: int = 0, step_ms: float = STEP_MS, task_times: int | None = None,
                 task_image_off: int | None = None, batch_size: int = 32, device: str | torch.device = "cpu",
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 threads: int | None = 1, progress: bool = True) -> None:
        if not identifier:
            raise UserError("identifier must be a non-empty string")
        if not visual_degrees > 0:
            raise UserError(f"visual_degrees must be > 0, got {visual_degrees}")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.region_layer_map: RegionLayerMap = normalise_map(region_layer_map)
        check_layers(self.region_layer_map, model.layer_names, repr(model.name))
        self.model = model.eval().to(device)
        self._identifier = str(identifier)
        self._visual_degrees = visual_degrees
        self.times, self.image_off, self.offset, self.step_ms = int(times), image_off, int(offset), float(step_ms)
        self.task_times, self.task_image_off = task_times, task_image_off
        self.batch_size, self.device, self.threads, self.progress = int(batch_size), device, threads, progress
        self.mean, self.std = tuple(mean), tuple(std)
        self.current_task: str | None = None
        self.recording: tuple[str, list[tuple[Any, Any]], list[dict[int, float]]] | None = None
        self._choice_labels: Any = None
        self._aggregation = "mean"
        self._classifier: Any = None

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_spec(cls, spec: str | os.PathLike, region_layer_map: Mapping[str, str | Sequence[str]], *,
                  identifier: str | None = None, weights: str | os.PathLike | None = None,
                  input_size: int | None = None, width_multiplier: float | None = None, seed: int | None = None,
                  trusted: bool = False, **kwargs: Any) -> ConvRNNBrainModel:
        """Build from anything ``fit_neural.py --model`` takes: a zoo name or YAML graph (``weights``: a state dict
        or checkpoint; none = random weights from ``seed``), a ``train.py``/model checkpoint (an imported release
        model included), or ``release:NAME`` with ``weights`` = the TensorFlow checkpoint prefix.
        ``kwargs`` go to the constructor. The identifier defaults to ``convrnn-<model name>``."""
        from convrnn.neural.checkpoint import DEFAULT_ZOO_SEED, load_model

        loaded = load_model(str(spec), weights=weights, input_size=input_size, width_multiplier=width_multiplier,
                            seed=DEFAULT_ZOO_SEED if seed is None else seed, trusted=trusted)
        kwargs.setdefault("mean", loaded.mean)
        kwargs.setdefault("std", loaded.std)
        if loaded.kind in ("zoo", "yaml", "release"):  # built with the neural presentation; tasks use the trained one
            import convrnn

            arch = loaded.info.get("arch") if loaded.kind == "release" else str(spec)
            trained = convrnn.model_config(arch, input_size=loaded.model.input_size)
            kwargs.setdefault("task_times", trained["times"])
            kwargs.setdefault("task_image_off", trained.get("image_off"))
        return cls(loaded.model, identifier or f"convrnn-{loaded.name}", region_layer_map, **kwargs)

    # ------------------------------------------------------------------------------------------ BrainModel API
    @property
    def identifier(self) -> str:
        return self._identifier

    def visual_degrees(self) -> float:
        return self._visual_degrees

    def start_recording(self, recording_target: str, time_bins: Sequence[Sequence[float]]) -> None:
        """Record from ``recording_target``'s layer(s) in ``time_bins`` (``[(start_ms, end_ms), ...]``) from now on.

        A region without a layer, or a bin outside the ``times`` steps, is a :class:`UserError` naming it."""
        region = str(recording_target)
        if region not in self.region_layer_map:
            raise UserError(f"region {region!r} has no layer in {self.identifier}'s region_layer_map "
                            f"({sorted(self.region_layer_map)})")
        bins = normalise_bins(time_bins)
        weights = bin_step_weights(bins, times=self.times, step_ms=self.step_ms, offset=self.offset)
        self.recording = (region, bins, weights)
        self.current_task = None

    def start_task(self, task: str, fitting_stimuli: Any = None, *, aggregation: str = "mean",
                   number_of_trials: int = 1, require_variance: bool = False) -> None:
        """``passive``; ``label`` with ``'imagenet'`` or a list of labels (``aggregation``: how a label pools its
        ImageNet classes' probabilities, ``'mean'`` or ``'max'``, as Brain-Score's benchmarks ask); ``probabilities``
        with a StimulusSet of fitting stimuli that has an ``image_label`` column (a logistic readout of the decoded
        logits). ``number_of_trials``/``require_variance`` are accepted and ignored (deterministic model)."""
        del number_of_trials, require_variance
        if aggregation not in _AGGREGATIONS:
            raise UserError(f"aggregation must be one of {sorted(_AGGREGATIONS)}, got {aggregation!r}")
        self._aggregation = aggregation
        self.recording = None
        if task == BrainModel.Task.passive:
            self.current_task = task
            return
        if task == BrainModel.Task.label:
            if fitting_stimuli is None:
                raise UserError("start_task('label', ...) needs 'imagenet' or a list of labels")
            if isinstance(fitting_stimuli, str) and fitting_stimuli != "imagenet":
                raise UserError(f"label task: give 'imagenet' or a list of labels, not {fitting_stimuli!r}")
            if isinstance(fitting_stimuli, str) and self.model.num_classes != 1000:
                raise UserError(f"label task 'imagenet' needs a 1000-way ImageNet readout; {self.model.name} has "
                                f"{self.model.num_classes} classes")
            self._choice_labels = fitting_stimuli
            self.current_task = task
            return
        if task == BrainModel.Task.probabilities:
            from brainscore_vision.model_helpers.brain_transformation.behavior import ProbabilitiesMapping

            if fitting_stimuli is None or "image_label" not in fitting_stimuli.columns:
                raise UserError("start_task('probabilities', fitting_stimuli): the StimulusSet needs an "
                                "'image_label' column")
            features = self._logits_assembly(fitting_stimuli)
            classifier = ProbabilitiesMapping.ProbabilitiesClassifier()
            classifier.fit(features, features["image_label"])
            self._classifier = classifier
            self.current_task = task
            return
        raise UserError(f"task {task!r} is not supported by a ConvRNN classifier (use 'passive', 'label' or "
                        "'probabilities')")

    def look_at(self, stimuli: Any, number_of_trials: int = 1, require_variance: bool = False) -> Any:
        """The recording (``NeuroidAssembly``) or the task's answer (``BehavioralAssembly``) for ``stimuli``."""
        del number_of_trials, require_variance  # deterministic model: every trial is the same
        if self.recording is not None:
            return self._record(stimuli)
        if self.current_task == BrainModel.Task.passive:
            return None
        if self.current_task == BrainModel.Task.label:
            return self._labels(stimuli)
        if self.current_task == BrainModel.Task.probabilities:
            features = self._logits_assembly(stimuli)
            return self._classifier.predict_proba(features)
        raise UserError("look_at: call start_recording(region, time_bins) or start_task(task, ...) first")

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _stimulus_table(stimuli: Any) -> tuple[list[str], dict[str, tuple[str, np.ndarray]]]:
        """(image paths, presentation coordinates) of a StimulusSet or a list of paths."""
        if hasattr(stimuli, "get_stimulus") and "stimulus_id" in getattr(stimuli, "columns", ()):
            ids = list(stimuli["stimulus_id"])
            paths = [str(stimuli.get_stimulus(sid)) for sid in ids]
            coords = {col: ("presentation", stimuli[col].to_numpy()) for col in stimuli.columns}
        else:
            paths = [str(p) for p in stimuli]
            coords = {"stimulus_id": ("presentation", np.asarray(paths, dtype=object))}
        if not paths:
            raise UserError("look_at: no stimuli")
        missing = [p for p in paths if "::" not in p and not os.path.isfile(p)]
        if missing:
            raise UserError(f"look_at: {len(missing)} stimulus file(s) do not exist, e.g. {missing[:3]}")
        coords.setdefault("stimulus_path", ("presentation", np.asarray(paths, dtype=object)))
        return paths, coords

    def _batches(self, paths: Sequence[str], desc: str) -> Any:
        bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not self.progress)
        for batch in image_batches(paths, self.model.input_size, self.batch_size, self.mean, self.std):
            yield batch.to(self.device)
            bar.update(len(batch))
        bar.close()

    @torch.no_grad()
    def _record(self, stimuli: Any) -> NeuroidAssembly:
        assert self.recording is not None
        region, bins, weights = self.recording
        layers = self.region_layer_map[region]
        paths, coords = self._stimulus_table(stimuli)
        n = len(paths)
        data: np.ndarray | None = None
        neuroid_coords: dict[str, tuple[str, np.ndarray]] = {}
        position = 0
        with torch_threads(self.threads):
            for batch in self._batches(paths, f"{self.identifier} {region}"):
                out = self.model(batch, times=self.times, image_off=self.image_off, return_features=layers)
                blocks = []
                for layer in layers:
                    feats = out.features[layer]  # [T, B, C, H, W]
                    binned = [sum(w * feats[t].double() for t, w in bin_weights.items())
                              for bin_weights in weights]
                    blocks.append(torch.stack(binned, dim=-1).reshape(len(batch), -1, len(bins)))
                block = torch.cat(blocks, dim=1).float().cpu().numpy()
                if data is None:
                    data = np.empty((n, block.shape[1], len(bins)), dtype=np.float32)
                    neuroid_coords = self._neuroid_coords(out.features, layers, region)
                data[position:position + len(batch)] = block
                position += len(batch)
                del out
        assert data is not None
        coords.update(neuroid_coords)
        coords["time_bin_start"] = ("time_bin", np.asarray([b[0] for b in bins]))
        coords["time_bin_end"] = ("time_bin", np.asarray([b[1] for b in bins]))
        assembly = NeuroidAssembly(data, coords=coords, dims=["presentation", "neuroid", "time_bin"])
        assembly.attrs["model_identifier"] = self.identifier
        return assembly

    def _neuroid_coords(self, features: Mapping[str, torch.Tensor], layers: Sequence[str],
                        region: str) -> dict[str, tuple[str, np.ndarray]]:
        names, nums, channel, xs, ys, layer_of = [], [], [], [], [], []
        for layer in layers:
            shape = tuple(features[layer].shape[2:])  # [C, H, W] or [C]
            c, h, w = (shape + (1, 1))[:3] if len(shape) == 1 else shape
            grid = np.indices((c, h, w)).reshape(3, -1)
            nums.append(np.arange(grid.shape[1]))
            names.extend(f"{layer}.{i}" for i in range(grid.shape[1]))
            channel.append(grid[0])
            ys.append(grid[1])
            xs.append(grid[2])
            layer_of.extend([layer] * grid.shape[1])
        size = len(names)
        return {"neuroid_id": ("neuroid", np.asarray(names, dtype=object)),
                "neuroid_num": ("neuroid", np.concatenate(nums)),
                "layer": ("neuroid", np.asarray(layer_of, dtype=object)),
                "region": ("neuroid", np.asarray([region] * size, dtype=object)),
                "channel": ("neuroid", np.concatenate(channel)),
                "channel_x": ("neuroid", np.concatenate(xs)),
                "channel_y": ("neuroid", np.concatenate(ys))}

    @torch.no_grad()
    def decoded_logits(self, paths: Sequence[str]) -> np.ndarray:
        """``[N, num_classes]``: the model's decoder applied to its logits over the task presentation."""
        rows = []
        with torch_threads(self.threads):
            for batch in self._batches(paths, f"{self.identifier} logits"):
                out = self.model(batch, times=self.task_times, image_off=self.task_image_off)
                rows.append(self.model.decode(out.logits).float().cpu().numpy())
        return np.concatenate(rows)

    def _logits_assembly(self, stimuli: Any) -> NeuroidAssembly:
        paths, coords = self._stimulus_table(stimuli)
        logits = self.decoded_logits(paths)
        coords["neuroid_id"] = ("neuroid", np.asarray([f"logits.{i}" for i in range(logits.shape[1])], dtype=object))
        coords["neuroid_num"] = ("neuroid", np.arange(logits.shape[1]))
        return NeuroidAssembly(logits, coords=coords, dims=["presentation", "neuroid"])

    def _labels(self, stimuli: Any) -> BehavioralAssembly:
        paths, coords = self._stimulus_table(stimuli)
        logits = self.decoded_logits(paths)
        extra: dict[str, tuple[str, Any]] = {}
        if isinstance(self._choice_labels, str) and self._choice_labels == "imagenet":
            synsets = imagenet_synsets()
            index = logits.argmax(axis=1)
            choices = [synsets[i] for i in index]
            extra = {"synset": ("presentation", np.asarray(choices, dtype=object)), "logit": ("presentation", index)}
        else:
            from brainscore_vision.model_helpers.brain_transformation.behavior import LabelToImagenetIndices

            if logits.shape[1] != 1000:
                raise UserError(f"label task: Brain-Score maps labels onto the 1000 ImageNet classes; "
                                f"{self.model.name} has {logits.shape[1]}")
            shifted = logits - logits.max(axis=1, keepdims=True)
            probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
            try:
                pool = _AGGREGATIONS[self._aggregation]
                per_label = np.stack([pool(probabilities[:, LabelToImagenetIndices.label_to_indices(label)], axis=1)
                                      for label in self._choice_labels], axis=1)
            except AttributeError as exc:
                raise UserError(f"label task: Brain-Score has no ImageNet classes for a label ({exc})") from None
            choices = [self._choice_labels[i] for i in per_label.argmax(axis=1)]
        coords.update({"label": ("presentation", np.asarray(choices, dtype=object)), **extra})
        return BehavioralAssembly([choices], coords=coords, dims=["choice", "presentation"])


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet synsets in class-index order (Brain-Score's own list, shipped with brainscore-vision)."""
    text = (resources.files("brainscore_vision.model_helpers.brain_transformation") / "imagenet_classes.txt")
    return text.read_text().splitlines()
