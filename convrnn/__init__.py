"""convrnn: recurrent models of the primate ventral visual stream (Nayebi et al. 2018, 2022)."""

from convrnn.checkpoint import load_model_checkpoint, save_model_checkpoint
from convrnn.graph.model import ConvRNN, ModelOutput
from convrnn.zoo import build_model, list_models, model_config

__version__ = "0.1.0"
__all__ = ["ConvRNN", "ModelOutput", "build_model", "list_models", "load_model_checkpoint", "load_release_checkpoint",
           "model_config", "save_model_checkpoint"]


def load_release_checkpoint(name: str, checkpoint_prefix: str, **overrides: object) -> ConvRNN:
    """The release's trained TensorFlow checkpoint ``checkpoint_prefix`` (``DIR/model.ckpt-NNN``) of zoo model
    ``name``, read without TensorFlow (see ``convrnn.release`` and docs/pretrained.md)."""
    from convrnn.release import load_release_checkpoint as load

    return load(name, checkpoint_prefix, **overrides)
