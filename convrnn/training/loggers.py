"""Loggers: CSV and TensorBoard always, Weights & Biases when installed, never fatal without a network.

Why ``auto``: compute nodes often have no network and no W&B login. ``auto`` logs online when an API key is
configured (``WANDB_API_KEY`` or a netrc entry for the W&B host) and offline otherwise (``wandb sync`` the
``wandb/offline-run-*`` folder later). ``WANDB_MODE=disabled`` in the environment always wins, so tests and
CI never touch wandb. If an online run cannot start (no network, bad key), the run goes on offline.
"""

from __future__ import annotations

import importlib.util
import logging
import netrc
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

log = logging.getLogger(__name__)

WandbMode = Literal["auto", "online", "offline", "disabled"]
DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def wandb_installed() -> bool:
    """True if the ``wandb`` package can be imported (it is an optional dependency)."""
    return importlib.util.find_spec("wandb") is not None


def _netrc_path() -> Path:
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    home = Path.home()
    for name in (".netrc", "_netrc"):
        if (home / name).exists():
            return home / name
    return home / ".netrc"


def wandb_api_key_configured() -> bool:
    """True if W&B could authenticate without a prompt: an API key in the env or in netrc for its host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", DEFAULT_WANDB_HOST)).netloc
    try:
        creds = netrc.netrc(str(_netrc_path())).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(creds and creds[2])


def resolve_wandb_mode(requested: WandbMode = "auto") -> Literal["online", "offline", "disabled"]:
    """The mode wandb will run in. ``WANDB_MODE=disabled`` wins; ``auto`` → the env's mode, else online if a
    key is configured, else offline; ``online`` without a key falls back to offline (with a warning)."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "disabled" or requested == "disabled":
        return "disabled"
    if requested == "auto" and env in ("online", "offline", "dryrun"):
        requested = "offline" if env == "dryrun" else env  # type: ignore[assignment]
    if requested == "offline":
        return "offline"
    if wandb_api_key_configured():
        return "online"
    if requested == "online":
        rank_zero_warn("wandb mode 'online' but no API key is configured (WANDB_API_KEY or netrc): logging "
                       "offline instead; run `wandb sync` on the offline-run folder later")
    return "offline"


def _safe_wandb_logger_class() -> type[Logger]:
    from lightning.pytorch.loggers import WandbLogger

    class SafeWandbLogger(WandbLogger):
        """A ``WandbLogger`` whose run falls back to offline if it cannot start online."""

        @property
        @rank_zero_experiment
        def experiment(self) -> Any:
            if self._experiment is not None:
                return self._experiment
            try:
                return WandbLogger.experiment.fget.__wrapped__(self)  # type: ignore[attr-defined]
            except Exception as exn:  # wandb raises many types (CommError, UsageError, timeouts)
                if self._wandb_init.get("mode") == "offline":
                    raise
                rank_zero_warn(f"wandb could not start online ({type(exn).__name__}: {exn}); logging offline")
                import wandb

                if wandb.run is not None:
                    wandb.finish(exit_code=1)
                self._wandb_init["mode"] = "offline"
                self._experiment = None
                return WandbLogger.experiment.fget.__wrapped__(self)  # type: ignore[attr-defined]

    return SafeWandbLogger


def build_loggers(save_dir: str | os.PathLike, wandb_mode: WandbMode = "auto", project: str = "convrnn",
                  name: str | None = None, entity: str | None = None, group: str | None = None,
                  tags: list[str] | None = None, wandb_id: str | None = None) -> list[Logger]:
    """TensorBoard (first: it sets ``trainer.log_dir``), CSV, and wandb unless disabled or not installed.

    Layout under ``save_dir``: ``tb/version_N/`` (events, hparams, the resolved config.yaml),
    ``csv/version_N/metrics.csv`` and ``wandb/`` (W&B's own folder).
    """
    save_dir = Path(save_dir)
    loggers: list[Logger] = [TensorBoardLogger(save_dir=str(save_dir), name="tb", default_hp_metric=False),
                             CSVLogger(save_dir=str(save_dir), name="csv")]
    mode = resolve_wandb_mode(wandb_mode)
    if mode == "disabled":
        return loggers
    if not wandb_installed():
        if wandb_mode not in ("auto", "disabled"):
            rank_zero_warn(f"wandb mode {wandb_mode!r} requested but wandb is not installed "
                           "(pip install 'convrnn[wandb]'); logging to CSV and TensorBoard only")
        return loggers
    (save_dir / "wandb").mkdir(parents=True, exist_ok=True)
    logger_cls = _safe_wandb_logger_class()
    loggers.append(logger_cls(save_dir=str(save_dir), project=project, name=name, entity=entity, group=group,
                              tags=tags, id=wandb_id, mode=mode))
    return loggers
