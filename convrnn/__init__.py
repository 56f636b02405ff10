"""convrnn: recurrent models of the primate ventral visual stream (Nayebi et al. 2018, 2022)."""

from convrnn.graph.model import ConvRNN, ModelOutput
from convrnn.zoo import build_model, list_models, model_config

__version__ = "0.1.0"
__all__ = ["ConvRNN", "ModelOutput", "build_model", "list_models", "model_config"]
