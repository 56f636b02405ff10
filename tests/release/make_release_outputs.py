"""Run the release's own TensorFlow graph code on the fixture checkpoints and store its outputs (TensorFlow needed).

    /tmp/tfvenv/bin/pip install tensorflow-cpu numpy "networkx==1.11"
    git clone https://github.com/neuroailab/convrnns /tmp/convrnns_src     # the release (read, never copied)
    /tmp/tfvenv/bin/python tests/release/make_release_outputs.py /tmp/convrnns_src
    /tmp/tfvenv/bin/python tests/release/make_release_outputs.py /tmp/convrnns_src --full-size /tmp/full  # optional

Why: the fixture script writes the release's variable names from our reading of its code. Here the release's
``models/model_func.py`` builds its graph (biological unrolling, cells, harbors, decoders) at the fixtures'
reduced widths and input sizes, restores the fixture checkpoint with the release's own loader
(``utils/loader.get_restore_vars``, which refuses checkpoint variables the graph does not have), checks that every
graph variable was restored, and runs fixed inputs. The outputs (logits and some layers' features at every
step, and the decoder's output) go to ``release_outputs.npz`` beside the checkpoint; the tests compare our
imported model with them, so names, layouts and the whole forward pass are checked against the release itself.

The release targets TensorFlow 1.13 and networkx 1.11. We run it unchanged under ``tf.compat.v1`` with a few
stand-ins for what TF 2 removed (``tf.contrib.layers.{l2_regularizer, xavier_initializer, layer_norm, flatten}``,
``tf.contrib.rnn``), written from TF 1.13's documented behaviour, and reduce widths by editing copies of the
model JSONs, the median-cell config and ``lstm_shallow.npz`` in a temporary folder.
"""

from __future__ import annotations

import collections
import collections.abc
import copy
import fractions
import json
import math
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as real_tf  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
tf1 = real_tf.compat.v1


# ------------------------------------------------------------------------------ TF 1.13 / networkx 1.11 shims
def _install_shims() -> None:
    fractions.gcd = math.gcd  # networkx 1.11 on Python ≥ 3.9
    for name in ("Mapping", "MutableMapping", "Iterable", "Sequence", "Set", "Callable"):
        setattr(collections, name, getattr(collections.abc, name))

    def l2_regularizer(scale, scope=None):
        if not scale:
            return lambda weights: None
        return lambda weights: tf1.multiply(scale, tf1.nn.l2_loss(weights), name="l2_regularizer")

    def xavier_initializer(uniform=True, seed=None, dtype=tf1.float32):
        return (tf1.glorot_uniform_initializer if uniform else tf1.glorot_normal_initializer)(seed=seed, dtype=dtype)

    def layer_norm(inputs, center=True, scale=True, activation_fn=None, reuse=None, variables_collections=None,
                   outputs_collections=None, trainable=True, begin_norm_axis=1, begin_params_axis=-1, scope=None):
        # TF 1.13 contrib: moments over axes begin_norm_axis.., params over the last axis, epsilon 1e-12
        with tf1.variable_scope(scope, "LayerNorm", [inputs], reuse=reuse):
            shape = inputs.shape[begin_params_axis:]
            beta = tf1.get_variable("beta", shape=shape, initializer=tf1.zeros_initializer()) if center else None
            gamma = tf1.get_variable("gamma", shape=shape, initializer=tf1.ones_initializer()) if scale else None
            axes = list(range(begin_norm_axis % inputs.shape.ndims, inputs.shape.ndims))
            mean, variance = tf1.nn.moments(inputs, axes, keep_dims=True)
            out = tf1.nn.batch_normalization(inputs, mean, variance, offset=beta, scale=gamma,
                                             variance_epsilon=1e-12)
            return activation_fn(out) if activation_fn is not None else out

    def flatten(inputs, scope=None):
        return tf1.reshape(inputs, [inputs.shape.as_list()[0], -1])

    class RNNCell:  # the release only subclasses it
        pass

    layers = types.SimpleNamespace(l2_regularizer=l2_regularizer, xavier_initializer=xavier_initializer,
                                   layer_norm=layer_norm, flatten=flatten)
    rnn = types.ModuleType("tensorflow.contrib.rnn")
    rnn.LSTMStateTuple = collections.namedtuple("LSTMStateTuple", ("c", "h"))
    rnn.RNNCell = RNNCell
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers, contrib.rnn = layers, rnn

    class Shim(types.ModuleType):
        def __getattr__(self, name):
            for source in (tf1, real_tf):
                if hasattr(source, name):
                    return getattr(source, name)
            raise AttributeError(name)

    shim = Shim("tensorflow")
    shim.contrib = contrib
    shim.layers = types.SimpleNamespace(BatchNormalization=object)  # only a base class at import time here
    shim.__version__ = "1.13.1"
    tpu_ops = types.ModuleType("tensorflow.contrib.tpu.python.ops")
    tpu_ops.tpu_ops = None
    tpu_tpu = types.ModuleType("tensorflow.contrib.tpu.python.tpu")
    tpu_tpu.tpu_function = None
    sys.modules.update({"tensorflow": shim, "tensorflow.contrib": contrib, "tensorflow.contrib.rnn": rnn,
                        "tensorflow.contrib.tpu": types.ModuleType("tensorflow.contrib.tpu"),
                        "tensorflow.contrib.tpu.python": types.ModuleType("tensorflow.contrib.tpu.python"),
                        "tensorflow.contrib.tpu.python.ops": tpu_ops,
                        "tensorflow.contrib.tpu.python.tpu": tpu_tpu})


# ------------------------------------------------------------------------------------- reduced-size configs
def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 NHWC → the release's input (run_model.normalize_ims), in float32; the tests repeat this exactly."""
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return (pixels.astype(np.float32) / np.float32(255.0) - mean) / std


def _scaled_json(source: Path, target: Path, width: float, sizes: dict[int, int], input_size: int,
                 classes: int) -> None:
    """A copy of a release model JSON with every depth scaled, the readout at ``classes`` and smaller maps."""
    graph = json.loads(source.read_text())
    for node in graph["nodes"]:
        if "shape" in node:
            node["shape"] = [input_size, input_size, node["shape"][2]]
        for fn in node["pre_memory"] + node["post_memory"] + [node["memory"]]:
            if "out_depth" in fn:
                fn["out_depth"] = classes if node["name"] == "imnetds" else max(1, round(fn["out_depth"] * width))
            if "cell_depth" in fn:
                fn["cell_depth"] = max(1, round(fn["cell_depth"] * width))
            if "shape" in fn:
                fn["shape"] = [sizes[s] for s in fn["shape"]]
    target.write_text(json.dumps(graph))


def release_outputs(src: Path, fixture: str, base: str, width: float, input_size: int, classes: int,
                    layers: list[str], seed: int = 0) -> None:
    info = json.loads((FIXTURES / fixture / "manifest.json").read_text())
    assert info["overrides"] == {"width_multiplier": width, "input_size": input_size, "num_classes": classes}
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from convrnns.configs import median_rgcell_cfg
    from convrnns.models import model_func as mf
    from convrnns.utils.loader import MODEL_TO_KWARGS, get_restore_vars

    shallow = "shallow" in base
    full = [224 // 2 // 2 // 2 ** k for k in range(4)]  # 56, 28, 14, 7
    small = [math.ceil(math.ceil(input_size / 2) / 2)]
    for _ in range(3):
        small.append(math.ceil(small[-1] / 2))
    sizes = dict(zip(full, small, strict=True)) if not shallow else dict(zip(full[1:], small[1:], strict=True))
    work = Path(tempfile.mkdtemp(prefix="release_"))
    (work / "convrnns" / "configs").mkdir(parents=True)
    json_path = work / f"{base}.json"
    _scaled_json(src / "convrnns" / "models" / f"{base}.json", json_path, width, sizes, input_size, classes)
    npz = np.load(src / "convrnns" / "configs" / "lstm_shallow.npz", allow_pickle=True)["arr_0"][()]
    npz = copy.deepcopy(npz)
    for params in npz["model_params"]["layer_params"].values():
        cell = params.get("cell_params")
        if cell:
            cell["out_depth"] = max(1, round(cell["out_depth"] * width))
    np.savez(work / "convrnns" / "configs" / "lstm_shallow.npz", npz)
    saved_depth = median_rgcell_cfg.median_config_dict["model_params"]["cell_params"]["cell_depth"]
    mf.median_config_dict["model_params"]["cell_params"]["cell_depth"] = max(1, round(64 * width))
    kwargs = dict(MODEL_TO_KWARGS[fixture])
    kwargs["base_name"] = str(json_path)
    cwd = os.getcwd()
    os.chdir(work)  # model_func reads ./convrnns/configs/lstm_shallow.npz
    try:
        graph = tf1.Graph()
        with graph.as_default():
            pixels = np.random.default_rng(seed).integers(0, 256, (2, input_size, input_size, 3), dtype=np.uint8)
            x = normalise(pixels)
            inputs = tf1.placeholder(tf1.float32, shape=x.shape)
            out = mf.model_func(inputs=inputs, out_layers=layers, include_all_times=True, include_logits=True,
                                **kwargs)
            prefix = str(FIXTURES / fixture / info["checkpoint"])
            restore = get_restore_vars(prefix)  # raises on checkpoint variables the graph lacks
            graph_vars = {v.op.name for v in tf1.global_variables()}
            unrestored = sorted(graph_vars - set(restore))
            if unrestored:
                raise SystemExit(f"{fixture}: graph variables missing from the fixture: {unrestored}")
            with tf1.Session(graph=graph) as sess:
                tf1.train.Saver(var_list=restore).restore(sess, prefix)
                result = sess.run(out, feed_dict={inputs: x})
    finally:
        os.chdir(cwd)
        mf.median_config_dict["model_params"]["cell_params"]["cell_depth"] = saved_depth
    arrays = {"pixels": pixels, "decoded": np.asarray(result["logits"], dtype=np.float32)}
    for layer in layers:
        steps = result[layer]
        arrays[f"features:{layer}"] = np.stack([steps[t] for t in sorted(steps)]).astype(np.float32)
    np.savez_compressed(FIXTURES / fixture / "release_outputs.npz", **arrays)
    print(f"{fixture}: release graph restored {len(restore)} variables; outputs of {layers} at "
          f"{arrays[f'features:{layers[0]}'].shape[0]} steps -> release_outputs.npz")


def full_size(src: Path, out: Path) -> None:
    """Full-size random checkpoints of rgc_intermediate and lstm_shallow (about 220 MB, kept out of the repository)
    with the release's outputs, for ``CONVRNN_RELEASE_FULL=OUT pytest tests/release/test_release_forward.py``."""
    global FIXTURES
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", Path(__file__).with_name("make_fixtures.py"))
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    fixtures.OUT, FIXTURES = out, out
    full = {"width_multiplier": 1.0, "input_size": 224, "num_classes": 1000}
    fixtures.write("rgc_intermediate", fixtures.rgc_intermediate(1.0, 224, 1000, "last"), full, seed=11,
                   momentum=True, global_step=123456)
    fixtures.write("lstm_shallow", fixtures.shallow("lstm", 1.0, 224, 1000), full, seed=12)
    release_outputs(src, "rgc_intermediate", "rgc_intermediate", 1.0, 224, 1000,
                    ["conv4", "conv7", "conv10", "imnetds"])
    release_outputs(src, "lstm_shallow", "lstm_shallow", 1.0, 224, 1000, ["conv3", "conv4", "conv5", "imnetds"])


def main() -> None:
    src = Path(sys.argv[1]).resolve()
    _install_shims()
    if len(sys.argv) > 3 and sys.argv[2] == "--full-size":
        full_size(src, Path(sys.argv[3]).resolve())
        return
    for folder in sorted(FIXTURES.iterdir()):
        if not (folder / "manifest.json").is_file():
            continue
        info = json.loads((folder / "manifest.json").read_text())
        name, o = info["model"], info["overrides"]
        base = name.replace("_tmaxconf", "").replace("_dthresh", "")
        layers = (["conv3", "conv4", "conv5", "imnetds"] if "shallow" in name
                  else ["conv4", "conv7", "conv10", "imnetds"])
        release_outputs(src, name, base, o["width_multiplier"], o["input_size"], o["num_classes"], layers)


if __name__ == "__main__":
    main()
