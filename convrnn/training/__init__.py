"""Training: the LightningModule, optimiser/schedule, callbacks, loggers and the ``train.py`` CLI.

Lightning is imported from ``lightning.pytorch`` only (never ``pytorch_lightning``).
"""

from convrnn.training.module import ConvRNNModule, InvalidTrainingConfig, NonFiniteLossError, unpack_batch
from convrnn.training.optim import build_optimizer, decay_groups, lr_factor

__all__ = ["ConvRNNModule", "InvalidTrainingConfig", "NonFiniteLossError", "build_optimizer", "decay_groups",
           "lr_factor", "unpack_batch"]
