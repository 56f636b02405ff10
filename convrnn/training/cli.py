"""``python train.py fit|validate|test --config configs/….yaml``: a LightningCLI for ConvRNNs.

Why a subclass of LightningCLI rather than the bare one: every run should get the same run folder, loggers
and callbacks without a long YAML. A ``run:`` section (``RunOptions``) sets them:

    runs/<run.name>/checkpoints/   step*.ckpt (the newest run.keep_checkpoints), last.ckpt, best-*.ckpt
    runs/<run.name>/tb/version_N/  TensorBoard events and the resolved config.yaml of that launch
    runs/<run.name>/csv/version_N/ metrics.csv
    runs/<run.name>/wandb/         W&B files (online, offline or none; see convrnn.training.loggers)

``--trainer.default_root_dir DIR`` puts the whole run folder at DIR instead of ``runs/<run.name>``.
``--ckpt_path last`` resumes from ``<run folder>/checkpoints/last.ckpt`` (or starts fresh if there is none,
which makes requeued SLURM jobs simple). Checkpoints are read with the safe unpickler; a file that needs more
is refused unless ``--trust-checkpoint`` is given (see ``convrnn.checkpoint``). Precision defaults to
bf16-mixed on a bf16-capable GPU and 32-true elsewhere. Bad values stop with an error that names the config key.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from convrnn.checkpoint import read_checkpoint
from convrnn.data.skip_metrics import SkippedSamplesLogger
from convrnn.errors import UserConfigError, UserError
from convrnn.training.callbacks import DistributedAudit, FiniteModelCheckpoint, TrainSpeedMonitor
from convrnn.training.data import TrainingDataModule
from convrnn.training.loggers import WandbMode, build_loggers
from convrnn.training.module import ConvRNNModule, InvalidTrainingConfig


@dataclass
class RunOptions:
    """Where a run writes and what it adds to the Trainer (the ``run:`` section of a config).

    Attributes:
        root: parent folder of all runs.
        name: this run's folder under root (default: the last --config file's stem, else the model arch).
        checkpoint_every_n_steps: write step*.ckpt and last.ckpt every this many optimiser steps (and at the
            end of training).
        keep_checkpoints: how many periodic step*.ckpt to keep (newest first); last.ckpt is extra.
        save_best: also keep best-*.ckpt by val/top1 (when there is validation data).
        wandb: auto | online | offline | disabled (WANDB_MODE=disabled in the environment always wins).
        wandb_project, wandb_entity, wandb_group, wandb_tags: passed to wandb.init.
        progress_bar: rich | tqdm | none.
        speed_log_every_n_steps: log perf/images_per_sec and perf/wait_fraction this often.
        audit_dir: if set, each rank writes the sample keys it saw and its weight digest there.
        torch_threads: intra-op CPU threads per process (torch.set_num_threads); None keeps torch's default.
            On small CPU machines 1 is often fastest: small convs gain little from a second thread, and
            OpenMP threads that wait on each other slow down badly when the data worker or another process
            takes a core.
    """

    root: str = "runs"
    name: str | None = None
    checkpoint_every_n_steps: int = 500
    keep_checkpoints: int = 2
    save_best: bool = True
    wandb: WandbMode = "auto"
    wandb_project: str = "convrnn"
    wandb_entity: str | None = None
    wandb_group: str | None = None
    wandb_tags: list[str] = field(default_factory=list)
    progress_bar: Literal["rich", "tqdm", "none"] = "rich"
    speed_log_every_n_steps: int = 50
    audit_dir: str | None = None
    torch_threads: int | None = None


def default_precision(accelerator: Any = "auto") -> str:
    """bf16-mixed on a CUDA GPU that supports bf16 (unless the CPU was asked for), else 32-true."""
    wants_cpu = isinstance(accelerator, str) and accelerator == "cpu"
    if not wants_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class ConfigSavingCallback(SaveConfigCallback):
    """Saves config.yaml into the run's log dir (overwriting on resume) and sends the resolved config to W&B."""

    def save_config(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                config = self.parser.dump(self.config, skip_none=False, format="yaml")
                logger.experiment.config.update({"cli_config": config}, allow_val_change=True)


class ConvRNNCLI(LightningCLI):
    """LightningCLI with ``ConvRNNModule``, ``TrainingDataModule`` and the ``run:`` section (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", ConfigSavingCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(ConvRNNModule, TrainingDataModule, *args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "test": {"model", "dataloaders", "datamodule"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run", fail_untyped=True)
        parser.add_argument("--trust-checkpoint", "--trust_checkpoint", dest="trust_checkpoint",
                            action="store_true", help="the --ckpt_path / model.arch checkpoint comes from a source "
                            "you trust: allow full unpickling, which can run code (our checkpoints never need it)")
        parser.link_arguments("trust_checkpoint", "model.trust_checkpoint")

    # ----------------------------------------------------------------------------------- checkpoints
    def _trusted(self) -> bool:
        subcommand = self.config.get("subcommand")
        section = self.config.get(subcommand, self.config) if subcommand else self.config
        return bool(section.get("trust_checkpoint", False))

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` with our safe reader before Lightning reads its hyper-parameters from it.

        Lightning's own reader (the overridden method) uses the safe unpickler too, but fails with a traceback
        and offers no opt-in; ours names the file and the type and says how to trust it.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            read_checkpoint(ckpt_path, trusted=self._trusted())
            self._checked_ckpt = str(ckpt_path)  # before_<subcommand> need not read it again
            if not self._trusted():
                super()._parse_ckpt_path()

    def _check_checkpoint(self, subcommand: str) -> None:
        """Before fit/validate/test: refuse an untrusted ``--ckpt_path`` (``last`` included) before anything runs,
        and make Lightning load it with the safe unpickler unless the user trusts it."""
        config = self.config_init[subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            ckpt_path = str(self._run_dir() / "checkpoints" / "last.ckpt")
        already_checked = str(ckpt_path) == getattr(self, "_checked_ckpt", None)
        if ckpt_path and not already_checked and "://" not in str(ckpt_path) and Path(ckpt_path).is_file():
            read_checkpoint(ckpt_path, trusted=self._trusted())
        config["weights_only"] = not self._trusted()

    def before_fit(self) -> None:
        self._check_checkpoint("fit")

    def before_validate(self) -> None:
        self._check_checkpoint("validate")

    def before_test(self) -> None:
        self._check_checkpoint("test")

    # ------------------------------------------------------------------------------------- the trainer
    def _run_name(self, run: RunOptions) -> str:
        if run.name:
            return run.name
        configs = self._get(self.config, "config") or []
        if configs:
            return Path(str(configs[-1])).stem
        return Path(str(self._get(self.config, "model").arch)).stem

    def _run_dir(self) -> Path:
        """This run's folder: ``trainer.default_root_dir`` when given, else ``run.root/run.name``."""
        run: RunOptions = self._get(self.config_init, "run")
        trainer_cfg: dict[str, Any] = dict(self._get(self.config_init, "trainer", default={}))
        if trainer_cfg.get("default_root_dir"):
            return Path(str(trainer_cfg["default_root_dir"]))
        return Path(run.root) / self._run_name(run)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Add the run folder, loggers, checkpointing and progress bar to the configured Trainer."""
        run: RunOptions = self._get(self.config_init, "run")
        trainer_cfg: dict[str, Any] = dict(self._get(self.config_init, "trainer", default={}))
        if run.checkpoint_every_n_steps < 1:
            raise InvalidTrainingConfig("checkpoint_every_n_steps", "must be >= 1", section="run")
        if run.keep_checkpoints < 1:
            raise InvalidTrainingConfig("keep_checkpoints", "must be >= 1", section="run")
        if run.torch_threads is not None:
            if run.torch_threads < 1:
                raise InvalidTrainingConfig("torch_threads", "must be >= 1", section="run")
            torch.set_num_threads(run.torch_threads)
        run_dir = self._run_dir()
        kwargs["default_root_dir"] = str(run_dir)
        if trainer_cfg.get("precision") is None:
            kwargs["precision"] = default_precision(trainer_cfg.get("accelerator", "auto"))

        logger_cfg = trainer_cfg.get("logger")
        if logger_cfg is None or logger_cfg is True:
            kwargs["logger"] = build_loggers(run_dir, run.wandb, project=run.wandb_project,
                                             name=self._run_name(run), entity=run.wandb_entity,
                                             group=run.wandb_group, tags=list(run.wandb_tags) or None)
        has_logger = kwargs.get("logger", logger_cfg) not in (None, False, [])

        callbacks: list[Callback] = list(trainer_cfg.get("callbacks") or [])
        if trainer_cfg.get("enable_checkpointing", True) is not False:
            ckpt_dir = run_dir / "checkpoints"
            callbacks.append(FiniteModelCheckpoint(
                dirpath=ckpt_dir, filename="step{step:08d}", auto_insert_metric_name=False, monitor="step",
                mode="max", save_top_k=run.keep_checkpoints, every_n_train_steps=run.checkpoint_every_n_steps,
                save_last=True, save_on_train_epoch_end=False, save_on_train_end=True))
            if run.save_best and self._has_val_data() and trainer_cfg.get("limit_val_batches") != 0:
                callbacks.append(FiniteModelCheckpoint(
                    dirpath=ckpt_dir, filename="best-step{step:08d}", auto_insert_metric_name=False,
                    monitor="val/top1", mode="max", save_top_k=1, save_last=False))
        if has_logger:
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if trainer_cfg.get("enable_progress_bar", True) is not False and run.progress_bar != "none":
            callbacks.append(_progress_bar(run.progress_bar))
        elif run.progress_bar == "none":
            kwargs["enable_progress_bar"] = False
        callbacks.append(TrainSpeedMonitor(log_every_n_steps=run.speed_log_every_n_steps))
        callbacks.append(SkippedSamplesLogger())  # data/train_skipped, data/val_skipped as metrics
        if self._has_val_data():
            from convrnn.data.val_check import ValSampleCountCheck

            callbacks.append(ValSampleCountCheck(strict=True))
        if run.audit_dir:
            callbacks.append(DistributedAudit(run.audit_dir))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _has_val_data(self) -> bool:
        dm = self.datamodule
        return dm is not None and getattr(dm, "val_shards", None) is not None


def _progress_bar(kind: str) -> Callback:
    if kind == "rich":
        try:
            return RichProgressBar(leave=True)
        except ModuleNotFoundError:
            pass
    return TQDMProgressBar()


def run_cli(args: list[str] | None = None) -> ConvRNNCLI:
    """Run a ``train.py`` command and return the CLI (its trainer, model and datamodule). A user error (a config
    value, a file, an untrusted checkpoint) exits with status 2 and a message naming it, without a traceback."""
    try:
        return ConvRNNCLI(args=args)
    except UserConfigError as exn:
        print(f"error: invalid configuration: {exn}", file=sys.stderr)
        raise SystemExit(2) from None
    except UserError as exn:
        print(f"error: {exn}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: list[str] | None = None) -> int:
    """Entry point of ``train.py`` and ``convrnn-train``: 0 on success (errors exit as ``run_cli`` says)."""
    run_cli(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
