"""The validation sample-count check: every val sample seen once, or the difference explained per shard."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch

from convrnn.data.datamodule import ShardDataModule
from convrnn.data.skips import per_shard

log = logging.getLogger(__name__)


class ValSampleCountCheck(pl.Callback):
    """After each full validation epoch, check the samples seen against ``dataset.json``, per shard.

    Summed over ranks: samples seen + corrupt ones skipped + those that damaged shards lacked must equal the
    val split size. Damaged shards are named in a warning (validation then covers only what could be read;
    ``data/val_skipped`` says how much is missing). If the sum is off, something unexplained happened
    (a shard holds more samples than the index says, or a sample was seen twice): raise (``strict``) or
    warn, naming each shard whose read count differs from the index. Skipped during the sanity check and
    when ``limit_val_batches`` truncates validation.
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.seen = 0
        self.last_total: int | None = None
        self.last_short: list[str] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen = 0

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.seen += len(batch[1])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if trainer.sanity_checking or not isinstance(dm, ShardDataModule) or dm.val_num_samples is None:
            return
        limit = trainer.limit_val_batches
        if not (limit is None or (isinstance(limit, float) and limit == 1.0)):
            return
        assert dm.val_list is not None and dm.val_list.counts is not None
        urls, counts = dm.val_list.urls, dm.val_list.counts
        skips = dm.val_skips
        read, lost = per_shard(skips, urls)
        local = [self.seen, skips.total_corrupt, skips.total_lost, *read, *lost]
        t = torch.tensor(local, dtype=torch.long, device=pl_module.device)
        total = [int(v) for v in trainer.strategy.reduce(t, reduce_op="sum")]
        seen, corrupt, lost_total = total[:3]
        read, lost = total[3 : 3 + len(urls)], total[3 + len(urls) :]
        self.last_total = seen + corrupt + lost_total
        expected = dm.val_num_samples
        self.last_short = [u for u, r, c in zip(urls, read, counts, strict=True) if r < c]
        off = [f"{u}: read {r} of {c}" for u, r, c in zip(urls, read, counts, strict=True) if r != c]
        if lost_total and trainer.is_global_zero:
            log.warning(
                "validation is missing %d of %d samples: damaged shard(s) came up short: %s",
                lost_total,
                expected,
                "; ".join(off),
            )
        if self.last_total != expected:
            msg = (
                f"validation saw {seen} samples (+{corrupt} corrupt skipped, +{lost_total} missing from damaged "
                f"shards) over {trainer.world_size} rank(s), but the val set has {expected}; "
                + (
                    f"shards whose count differs from the index: {'; '.join(off)}"
                    if off
                    else "every shard gave the number of samples the index lists, so some were seen twice"
                )
            )
            if self.strict:
                raise RuntimeError(msg)
            log.warning(msg)
