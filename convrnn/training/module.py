"""The LightningModule that trains any zoo model or YAML graph on image classification.

Why these choices (docs/training.md, 'Hyperparameters: what the release says and what we chose'):
- the loss is cross-entropy on the decoder output by default (the release's "last step" for plain models),
  or on every step of a window / a weighted sum over steps, because losses over time are a common variant;
- validation counts correct answers per time step, since accuracy over time is what this field looks at;
  counts are summed over ranks, so DDP metrics are exact even when ranks see different numbers of samples;
- a non-finite loss or gradient stops training at once, naming the step and the batch's sample keys, before
  the optimiser can write NaNs into the weights (and so into a checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from convrnn.checkpoint import CHECKPOINT_SUFFIXES, graph_of, lightning_section, load_model_checkpoint
from convrnn.errors import UserConfigError
from convrnn.training.optim import (
    OptimizerName,
    ScheduleName,
    StepSchedule,
    build_optimizer,
    decay_groups,
)
from convrnn.zoo import build_model

LossOver = Literal["decoder", "last", "window", "weighted"]


class InvalidTrainingConfig(UserConfigError):
    """A training setting is wrong; the message starts with its config key (``model.lr``, ``run.name``)."""

    def __init__(self, key: str, message: str, section: str = "model") -> None:
        super().__init__(f"{section}.{key}", message)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient. The message names the step and the samples."""


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """(images, labels, keys or None) from a tuple/list batch or a webdataset-style dict batch."""
    if isinstance(batch, dict):
        images = next((batch[k] for k in ("image", "images", "jpg", "x") if k in batch), None)
        labels = next((batch[k] for k in ("label", "labels", "cls", "y") if k in batch), None)
        keys = next((batch[k] for k in ("__key__", "key", "keys") if k in batch), None)
        if images is None or labels is None:
            raise ValueError(f"a dict batch needs images and labels; got keys {sorted(batch)}")
        return images, labels, list(keys) if keys is not None else None
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        keys = list(batch[2]) if len(batch) == 3 and batch[2] is not None else None
        return batch[0], batch[1], keys
    raise ValueError(f"expected a batch (images, labels[, keys]) or a dict, got {type(batch).__name__}")


def _model_error_key(arch: str, message: str) -> str:
    """Which init argument a model-building error is about, so the CLI can name the config key."""
    if "override" in message:
        return "overrides"
    if "unknown model" in message or "not found" in message or Path(str(arch)).suffix in (
            ".yaml", ".yml", *CHECKPOINT_SUFFIXES):
        return "arch"  # a bad name, a missing file, or a problem inside the user's own graph file
    return "overrides"


class ConvRNNModule(pl.LightningModule):
    """Train a ConvRNN (any zoo name or YAML graph) with SGD/Nesterov, per-tensor weight decay and warm-up.

    Args:
        arch: a zoo model name (``convrnn.list_models()``), a path to a YAML graph, or a checkpoint (``.pt`` from
            ``save_model_checkpoint``/the release importer, or a ``train.py`` ``.ckpt``) to fine-tune: the model
            is built from the graph stored in it and starts from its weights.
        overrides: model overrides passed to ``build_model`` (input_size, width_multiplier, times, image_off,
            num_classes, decoder, unroll, presentation, blank, decoder_window_start, in_channels).
        loss_over: what the cross-entropy sees. ``decoder``: the model's decoded logits (= the last step for
            plain models, the release's choice); ``last``: the last step; ``window``: the mean of the per-step
            losses over steps [loss_window_start, T); ``weighted``: Σ_t loss_weights[t] · CE_t.
        loss_window_start: first step of the ``window`` loss (default: the model's decoder_window_start).
        loss_weights: one weight per step for ``weighted`` (length T, used as given, not normalised).
        label_smoothing: passed to cross-entropy (0 in the release as far as is known).
        optimizer: ``sgd`` (the release's lstm_shallow: Nesterov momentum 0.9) or ``adamw``.
        lr: peak learning rate for a global batch of ``lr_reference_batch`` (or as given if that is None).
        lr_reference_batch: if set, lr is scaled linearly by global_batch / lr_reference_batch.
        momentum, nesterov: SGD momentum and the Nesterov switch.
        weight_decay_scale: global multiplier of the release's per-tensor L2 decays (0 turns decay off).
        schedule: ``cosine`` (to lr · min_lr_ratio), ``step`` (× step_gamma at step_milestones) or ``constant``.
        warmup_steps / warmup_epochs: linear warm-up length, in optimiser steps or epochs (not both).
        min_lr_ratio: the cosine floor as a fraction of the peak lr.
        step_milestones: fractions of the total optimiser steps at which the ``step`` schedule decays.
        step_gamma: the ``step`` schedule's factor.
        per_step_metrics: log val/top1_t{t} and val/top5_t{t} for every step t.
        compile: compile the backbone in place (``nn.Module.compile``), so checkpoint keys stay clean.
        compile_kwargs: passed to ``torch.compile`` (e.g. {"mode": "max-autotune", "backend": "inductor"}).
        channels_last: keep weights and inputs in channels-last memory format (faster convs on recent GPUs).
        check_finite: stop on the first non-finite loss or gradient (one tiny all-reduce per step).
        trust_checkpoint: ``arch`` is a checkpoint from a source you trust, which may be fully unpickled (it can
            run code); set by ``train.py --trust-checkpoint``. Our own checkpoints never need it.
    """

    def __init__(
        self,
        arch: str = "rgc_intermediate",
        overrides: dict[str, Any] | None = None,
        loss_over: LossOver = "decoder",
        loss_window_start: int | None = None,
        loss_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.1,
        lr_reference_batch: int | None = None,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay_scale: float = 1.0,
        schedule: ScheduleName = "cosine",
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.0,
        step_milestones: list[float] | None = None,
        step_gamma: float = 0.1,
        per_step_metrics: bool = True,
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
        channels_last: bool = False,
        check_finite: bool = True,
        trust_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._validate_hparams()
        try:
            if Path(str(arch)).suffix in CHECKPOINT_SUFFIXES:
                self.model = load_model_checkpoint(arch, trusted=trust_checkpoint, **dict(overrides or {})).train()
            else:
                self.model = build_model(arch, **dict(overrides or {}))
        except (ValueError, TypeError, FileNotFoundError) as exn:  # ConfigError is a ValueError
            raise InvalidTrainingConfig(_model_error_key(arch, str(exn)), str(exn)) from exn
        T = self.model.times
        if loss_over == "weighted":
            if loss_weights is None or len(loss_weights) != T:
                got = "none" if loss_weights is None else f"{len(loss_weights)}"
                raise InvalidTrainingConfig("loss_weights", f"loss_over='weighted' needs one weight per step "
                                                            f"(the model has times={T}), got {got}")
        elif loss_weights is not None:
            raise InvalidTrainingConfig("loss_weights", f"only used with loss_over='weighted' (got {loss_over!r})")
        start = self.model.decoder_window_start if loss_window_start is None else loss_window_start
        if loss_over == "window" and not 0 <= start < T:
            raise InvalidTrainingConfig("loss_window_start", f"must be in [0, {T}) for times={T}, got {start}")
        self.loss_window_start = start
        if loss_weights is not None:
            self.register_buffer("_loss_weights", torch.tensor(loss_weights, dtype=torch.float32),
                                 persistent=False)
        self._compiled = False
        self._val_stats: dict[str, torch.Tensor] = {}
        self._last_keys: list[str] | None = None

    # -------------------------------------------------------------------------------------- validation
    def _validate_hparams(self) -> None:
        h = self.hparams
        checks = [
            ("lr", h.lr > 0, "must be > 0"),
            ("momentum", 0 <= h.momentum < 1, "must be in [0, 1)"),
            ("weight_decay_scale", h.weight_decay_scale >= 0, "must be >= 0"),
            ("warmup_steps", h.warmup_steps >= 0, "must be >= 0"),
            ("warmup_epochs", h.warmup_epochs >= 0, "must be >= 0"),
            ("min_lr_ratio", 0 <= h.min_lr_ratio <= 1, "must be in [0, 1]"),
            ("step_gamma", 0 < h.step_gamma <= 1, "must be in (0, 1]"),
            ("label_smoothing", 0 <= h.label_smoothing < 1, "must be in [0, 1)"),
            ("lr_reference_batch", h.lr_reference_batch is None or h.lr_reference_batch > 0, "must be > 0"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise InvalidTrainingConfig(key, f"{why}, got {h[key]!r}")
        if h.warmup_steps and h.warmup_epochs:
            raise InvalidTrainingConfig("warmup_epochs", "set warmup_steps or warmup_epochs, not both")
        for m in h.step_milestones or []:
            if not 0 < m < 1:
                raise InvalidTrainingConfig("step_milestones", f"are fractions of training in (0, 1), got {m}")
        if h.overrides is not None and not isinstance(h.overrides, dict):
            raise InvalidTrainingConfig("overrides", f"must be a mapping, got {type(h.overrides).__name__}")

    # ------------------------------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Check the data's class count, then apply channels-last and in-place compile (once)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        image_size = getattr(dm, "image_size", None)
        if isinstance(image_size, int) and image_size != self.model.input_size:
            raise UserConfigError(
                "data.image_size", f"{image_size} differs from the model's input_size {self.model.input_size} "
                                   f"(model.overrides.input_size); set both to the same size")
        n_data = getattr(dm, "num_classes", None)
        if isinstance(n_data, int) and n_data > self.model.num_classes:
            raise InvalidTrainingConfig(
                "overrides", f"the data has {n_data} classes but the model outputs {self.model.num_classes}; "
                             f"set num_classes: {n_data} in model.overrides")
        if self.hparams.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self._compiled:
            # in place: the module keeps its own state-dict keys (no `_orig_mod.` prefix)
            self.model.compile(**dict(self.hparams.compile_kwargs or {}))
            self._compiled = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits over time [T, B, K]."""
        return self.model(self._prepare(images)).logits

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    # ------------------------------------------------------------------------------------------- loss
    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per sample [B] as configured by ``loss_over``."""
        mode, ls = self.hparams.loss_over, self.hparams.label_smoothing
        if mode in ("decoder", "last"):
            z = self.model.decode(logits) if mode == "decoder" else logits[-1]
            return F.cross_entropy(z.float(), labels, reduction="none", label_smoothing=ls)
        T, B, K = logits.shape
        start = self.loss_window_start if mode == "window" else 0
        window = logits[start:].float()
        steps = window.shape[0]
        ce = F.cross_entropy(window.reshape(steps * B, K), labels.repeat(steps), reduction="none",
                             label_smoothing=ls).view(steps, B)
        if mode == "window":
            return ce.mean(dim=0)
        return (self._loss_weights.to(ce.dtype)[:, None] * ce).sum(dim=0)

    # ----------------------------------------------------------------------------------------- training
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels, keys = unpack_batch(batch)
        self._last_keys = keys
        logits = self(images)
        per_sample = self.per_sample_loss(logits, labels)
        loss = per_sample.mean()
        if self.hparams.check_finite:
            self._check_finite_loss(per_sample, keys, batch_idx)
        with torch.no_grad():
            top1 = (self.model.decode(logits.detach()).argmax(-1) == labels).float().mean()
        batch_size = labels.shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        self.log("train/top1", top1, prog_bar=True, batch_size=batch_size)
        return loss

    def _check_finite_loss(self, per_sample: torch.Tensor, keys: list[str] | None, batch_idx: int) -> None:
        bad = ~torch.isfinite(per_sample.detach())
        any_bad = bool(bad.any())
        # every rank must stop together: a rank that raised alone would leave the others blocked in backward
        if not self.trainer.strategy.reduce_boolean_decision(any_bad, all=False):
            return
        detail = self._describe_bad_samples(bad, keys)
        raise NonFiniteLossError(
            f"non-finite training loss at global step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}); {detail}. Training stopped before the optimiser step, so the weights and the last "
            "checkpoint are from before this batch.")

    def _describe_bad_samples(self, bad: torch.Tensor, keys: list[str] | None) -> str:
        local = []
        if bool(bad.any()):
            idx = bad.nonzero().flatten().tolist()
            local = [keys[i] for i in idx] if keys is not None else [f"#{i}" for i in idx]
        entries = [(self.global_rank, local)]
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.trainer.world_size > 1:
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (self.global_rank, local))
            entries = gathered
        parts = [f"rank {r}: {', '.join(map(str, k))}" for r, k in entries if k]
        note = "" if keys is not None else " (the batches carry no __key__; set data.return_keys: true)"
        return "non-finite samples " + "; ".join(parts) + note

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Refuse non-finite gradients (after DDP's all-reduce, so every rank decides the same)."""
        if not self.hparams.check_finite:
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        norms = torch._foreach_norm(grads)
        if bool(torch.isfinite(torch.stack(norms)).all()):
            return
        names = [n for n, p in self.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        keys = ", ".join(self._last_keys) if self._last_keys else "(keys not in the batch)"
        raise NonFiniteLossError(
            f"non-finite gradient at global step {self.global_step} (epoch {self.current_epoch}) in "
            f"{names[:5]}{' ...' if len(names) > 5 else ''}; batch samples: {keys}. Stopped before the "
            "optimiser step; the last checkpoint is intact.")

    # ------------------------------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        self._reset_eval_stats()

    def on_test_epoch_start(self) -> None:
        self._reset_eval_stats()

    def _reset_eval_stats(self) -> None:
        T = self.model.times
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=self.device)  # noqa: E731
        self._val_stats = {"top1_t": z(T), "top5_t": z(T), "top1": z(()), "top5": z(()), "loss": z(()),
                           "count": z(())}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch)

    @torch.no_grad()
    def _eval_step(self, batch: Any) -> None:
        """Accumulate correct counts per step and for the decoder; nothing is logged (and synced) per batch,
        so ranks with different numbers of val batches never wait on each other."""
        images, labels, _ = unpack_batch(batch)
        if not self._val_stats:
            self._reset_eval_stats()
        logits = self(images)  # [T, B, K]
        k = min(5, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices  # [T, B, k]
        hit = top == labels[None, :, None]
        s = self._val_stats
        s["top1_t"] += (logits.argmax(dim=-1) == labels).sum(dim=1).double()  # argmax: ties → lowest index
        s["top5_t"] += hit.any(dim=-1).sum(dim=1).double()
        decoded = self.model.decode(logits)
        dtop = decoded.topk(k, dim=-1).indices
        s["top1"] += (decoded.argmax(dim=-1) == labels).sum().double()
        s["top5"] += (dtop == labels[:, None]).any(dim=-1).sum().double()
        s["loss"] += F.cross_entropy(decoded.float(), labels, reduction="sum").double()
        s["count"] += labels.shape[0]

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def _log_eval(self, stage: str) -> None:
        if not self._val_stats:
            self._reset_eval_stats()
        s = self._val_stats
        flat = torch.cat([s["top1_t"], s["top5_t"], torch.stack([s["top1"], s["top5"], s["loss"], s["count"]])])
        flat = self.trainer.strategy.reduce(flat, reduce_op="sum")  # exact totals over ranks
        T = self.model.times
        top1_t, top5_t = flat[:T], flat[T:2 * T]
        top1, top5, loss, count = flat[2 * T:].tolist()
        n = max(count, 1.0)
        # the values are already totals over ranks, so sync_dist's mean over ranks leaves them unchanged
        metrics = {f"{stage}/top1": top1 / n, f"{stage}/top5": top5 / n, f"{stage}/loss": loss / n,
                   f"{stage}/samples": count}
        if self.hparams.per_step_metrics:
            for t in range(T):
                metrics[f"{stage}/top1_t{t}"] = float(top1_t[t]) / n
                metrics[f"{stage}/top5_t{t}"] = float(top5_t[t]) / n
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in (f"{stage}/top1", f"{stage}/loss"), sync_dist=True)
        self._val_stats = {}

    # ------------------------------------------------------------------------------------ optimisation
    def global_batch_size(self) -> int | None:
        """Samples per optimiser step over all ranks, when the datamodule says its per-rank batch size."""
        dm = getattr(self.trainer, "datamodule", None)
        per_rank = getattr(dm, "batch_size", None)
        if not isinstance(per_rank, int):
            return None
        return per_rank * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def peak_lr(self) -> float:
        """lr, scaled linearly by global batch / lr_reference_batch when that is set."""
        ref = self.hparams.lr_reference_batch
        if ref is None:
            return float(self.hparams.lr)
        batch = self.global_batch_size()
        if batch is None:
            raise InvalidTrainingConfig("lr_reference_batch", "the datamodule has no integer batch_size, so the "
                                                              "global batch is unknown; set lr directly")
        return float(self.hparams.lr) * batch / ref

    def total_training_steps(self) -> float:
        """Optimiser steps this run will take (``inf`` if unbounded), computed without building a loader.

        Why not ``trainer.estimated_stepping_batches``: it builds the training loader when ``max_epochs`` is set,
        and it does so before Lightning restores the checkpoint, so on ``--ckpt_path`` the loader's saved position
        would never be loaded (the resumed run would replay the start of the epoch). The datamodule knows its
        epoch length (``train_batches_per_epoch``) from the shard index, so we use that, and fall back to
        Lightning's estimate only for datamodules that don't.
        """
        trainer = self.trainer
        dm = getattr(trainer, "datamodule", None)
        per_epoch = getattr(dm, "train_batches_per_epoch", None)
        if not isinstance(per_epoch, int):
            return float(trainer.estimated_stepping_batches)
        max_steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps > -1 else None
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > -1 else None
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            per_epoch = min(per_epoch, limit)
        elif limit is not None:
            per_epoch = int(per_epoch * float(limit))
        per_epoch = math.ceil(per_epoch / trainer.accumulate_grad_batches)
        by_epochs = float(per_epoch * max_epochs) if max_epochs is not None else math.inf
        return float(min(max_steps, by_epochs)) if max_steps is not None else by_epochs

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        lr = self.peak_lr()
        optimizer = build_optimizer(decay_groups(self.model, h.weight_decay_scale), h.optimizer, lr=lr,
                                    momentum=h.momentum, nesterov=h.nesterov)
        total = self.total_training_steps()
        if not math.isfinite(total):
            raise InvalidTrainingConfig("schedule", "the number of training steps is unknown (an endless "
                                                    "loader and no trainer.max_steps); set trainer.max_steps")
        total = int(total)
        warmup = int(h.warmup_steps)
        if h.warmup_epochs:
            epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else None
            if epochs is None:
                raise InvalidTrainingConfig("warmup_epochs", "needs trainer.max_epochs; use warmup_steps")
            warmup = int(round(h.warmup_epochs * total / epochs))
        milestones = h.step_milestones if h.step_milestones is not None else [0.3, 0.6, 0.9]
        schedule = StepSchedule(total, h.schedule, warmup, h.min_lr_ratio, milestones, h.step_gamma)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step",
                                                         "frequency": 1, "name": "lr"}}

    # ------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the resolved graph, so the checkpoint rebuilds its model without the YAML it came from."""
        checkpoint["convrnn"] = lightning_section(self.model)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume into an architecture other than the checkpoint's (an edited or different YAML)."""
        if "convrnn" not in checkpoint:
            return  # written before checkpoints stored their graph: the state-dict keys are the only check
        stored = graph_of(checkpoint)
        current = dict(self.model.config)
        if stored.get("nodes") != current.get("nodes") or stored.get("feedback") != current.get("feedback"):
            raise InvalidTrainingConfig(
                "arch", f"the checkpoint's graph differs from the one {self.hparams.arch!r} builds now (the YAML "
                        "was edited, or another model is configured); to continue training the checkpoint's own "
                        "model, set model.arch to the checkpoint file")


def state_digest(module: torch.nn.Module, names: Sequence[str] | None = None) -> str:
    """A SHA-256 of a module's parameters and buffers (bit-exact comparisons across ranks or runs)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if names is not None and name not in names:
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
