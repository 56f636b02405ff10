"""The release's trained TensorFlow checkpoints (neuroailab/convrnns) in our models, read without TensorFlow.

``load_release_checkpoint(name, "DIR/model.ckpt")`` builds the zoo model and fills it; the command
``convrnn-import-release`` writes it as a checkpoint that ``convrnn.build_model`` and the scripts read.
See docs/pretrained.md.
"""

from convrnn.release.importer import ImportReport, import_release_weights, load_release_checkpoint, load_release_model
from convrnn.release.tensorbundle import BundleEntry, TensorBundle

__all__ = ["BundleEntry", "ImportReport", "TensorBundle", "import_release_weights", "load_release_checkpoint",
           "load_release_model"]
