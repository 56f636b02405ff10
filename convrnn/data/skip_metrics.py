"""The skip counts as metrics: ``data/train_skipped`` and ``data/val_skipped`` in every logger.

Why a module of its own: :mod:`convrnn.data.skips` runs in the DataLoader workers and counts; this callback runs
in the trainer and logs those counts through ``LightningModule.log`` (TensorBoard, CSV, W&B):
``data/train_skipped`` (cumulative over the run and across resumes, summed over ranks) and ``data/val_skipped``
(per validation epoch), each with its two parts ``…_corrupt`` and ``…_shard_loss``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from convrnn.data.skips import SkipTally


class SkippedSamplesLogger(pl.Callback):
    """Log skipped-sample counts as metrics (every logger: TensorBoard, CSV, W&B).

    - ``data/train_skipped`` (+ ``_corrupt``, ``_shard_loss``): cumulative over the run, summed over ranks,
      logged every training step (one small all-reduce per step under DDP). The run's total is part of the
      checkpoint (rank 0 writes it; it is already a sum over ranks), so it continues on resume.
    - ``data/val_skipped`` (+ parts): per validation epoch, summed over ranks (not during the sanity check).

    Works with any datamodule that has ``train_skips`` / ``val_skips`` (:class:`SkipTally`), such as
    :class:`~convrnn.data.datamodule.ShardDataModule`; does nothing with others.
    """

    def __init__(self) -> None:
        self._resumed = torch.zeros(2, dtype=torch.long)  # (corrupt, lost) over all ranks, from a checkpoint
        self._earlier = torch.zeros(2, dtype=torch.long)  # this rank's counts in loaders since rebuilt
        self._tally: SkipTally | None = None
        self._last: torch.Tensor | None = None  # the last logged total over ranks (on the module's device)

    def _local_train_counts(self, trainer: pl.Trainer) -> torch.Tensor | None:
        tally = getattr(trainer.datamodule, "train_skips", None)
        if not isinstance(tally, SkipTally):
            return None
        if self._tally is not None and tally is not self._tally:  # the loader was rebuilt: keep its counts
            self._earlier += torch.tensor([self._tally.total_corrupt, self._tally.total_lost])
        self._tally = tally
        return self._earlier + torch.tensor([tally.total_corrupt, tally.total_lost])

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        local = self._local_train_counts(trainer)
        if local is None:
            return
        device = pl_module.device
        total = trainer.strategy.reduce(local.to(device), reduce_op="sum") + self._resumed.to(device)
        self._last = total
        # tensors, not Python numbers: no device-to-host copy (a GPU sync) on steps that are not written
        values = total.float()
        for key, value in _named("data/train_skipped", values[0], values[1]):
            pl_module.log(key, value, on_step=True, on_epoch=False)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        tally = getattr(trainer.datamodule, "val_skips", None)
        if trainer.sanity_checking or not isinstance(tally, SkipTally):
            return
        for key, value in _named("data/val_skipped", float(tally.total_corrupt), float(tally.total_lost)):
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="sum")

    def state_dict(self) -> dict[str, int]:
        total = self._resumed if self._last is None else self._last.cpu()
        return {"train_corrupt": int(total[0]), "train_shard_loss": int(total[1])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed = torch.tensor([int(state_dict["train_corrupt"]), int(state_dict["train_shard_loss"])])
        self._earlier.zero_()
        self._tally = self._last = None


def _named(name: str, corrupt: Any, lost: Any) -> list[tuple[str, Any]]:
    return [(name, corrupt + lost), (f"{name}_corrupt", corrupt), (f"{name}_shard_loss", lost)]
