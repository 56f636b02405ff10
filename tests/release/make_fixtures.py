"""Write the release-format fixture checkpoints in tests/release/fixtures/ with real TensorFlow.

Run it with a TensorFlow venv kept outside the repository (the tests themselves never need TensorFlow):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfvenv/bin/python tests/release/make_fixtures.py

Each fixture is a TF1-style name-based checkpoint (``tf.compat.v1.train.Saver``, the format of the release's
TensorFlow 1.13 files) of a reduced-width variant of a released model, with random values. The variable names
and shapes are written out here from the release's graph code (neuroailab/convrnns ``models/*.json``,
``models/model_func.py``, ``utils/{main,cells,median_rgcell,cell_utils,model_tool,decoders}.py``), on purpose
independently of ``convrnn.release.names``, so that the tests compare two derivations. Beside each checkpoint:

- ``manifest.json``: the model and its overrides, and for every tensor the dtype, shape and SHA-256 of the bytes
  that TensorFlow's own reader (``tf.train.load_checkpoint``) returns;
- ``ops.npz`` + the manifest's ``ops``: inputs and outputs of TensorFlow ops (conv, depthwise-separable conv,
  fully connected) computed with the checkpoint's weights, for the op-level comparison.

Then run ``make_release_outputs.py`` (it needs the release's source; see its docstring): it runs the release's
own graph code on these checkpoints and stores its outputs beside them (rewriting the fixtures here deletes them).

The fixtures also hold what the importer must skip or check: ``*/Momentum`` slots and ``global_step``
(rgc_intermediate_tmaxconf), the constant ``memory_decay`` of nodes without a cell, the tmaxconf β and the
decoders' diagnostic β's, and the dthresh decoder's constants.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
OUT = Path(__file__).resolve().parent / "fixtures"
S = "tnn_model"


def ch(c: int, w: float) -> int:
    return max(1, round(c * w))


def pooled(h: int) -> int:  # 2×2/2 max-pool, SAME
    return math.ceil(h / 2)


class Spec:
    """The release's variables for one model: name → (shape, kind); kind: rand, const0, const1, const09, beta."""

    def __init__(self) -> None:
        self.vars: dict[str, tuple[tuple[int, ...], str]] = {}

    def add(self, name: str, shape: tuple[int, ...], kind: str = "rand") -> None:
        assert name not in self.vars, name
        self.vars[name] = (tuple(int(s) for s in shape), kind)


# ------------------------------------------------------------------------------------------------ cells
def simple_cells(spec: Spec, node: str, cell: str, cin: int, c: int, h: int, *, k: int = 3, ln: bool = False,
                 peep: bool = False) -> None:
    """The standard cells (cells.py): ConvLSTMCell, ConvGRUCell, ConvUGRNNCell, ConvIntersectionRNNCell,
    ConvNormBasicCell, each scoped by its class name under the node."""
    p = f"{S}/{node}"
    if cell == "lstm":
        spec.add(f"{p}/ConvLSTMCell/weights", (k, k, cin + c, 4 * c))
        spec.add(f"{p}/ConvLSTMCell/bias", (4 * c,))
        if ln:
            for scope in ("input", "transform", "forget", "output", "state"):
                spec.add(f"{p}/ConvLSTMCell/{scope}/gamma", (c,))
                spec.add(f"{p}/ConvLSTMCell/{scope}/beta", (c,))
        if peep:
            for g in ("f", "i", "o"):
                spec.add(f"{p}/ConvLSTMCell/peepholes/w_{g}_diag", (h, h, c))
    elif cell == "gru":
        spec.add(f"{p}/ConvGRUCell/gates/weights", (k, k, cin + c, 2 * c))
        spec.add(f"{p}/ConvGRUCell/gates/bias", (2 * c,))
        spec.add(f"{p}/ConvGRUCell/candidates/weights", (k, k, cin + c, c))
        spec.add(f"{p}/ConvGRUCell/candidates/bias", (c,))
    elif cell == "ugrnn":
        spec.add(f"{p}/ConvUGRNNCell/weights", (k, k, cin + c, 2 * c))
        spec.add(f"{p}/ConvUGRNNCell/bias", (2 * c,))
    elif cell == "intersectionrnn":
        spec.add(f"{p}/ConvIntersectionRNNCell/weights", (k, k, cin + c, 4 * c))
        spec.add(f"{p}/ConvIntersectionRNNCell/bias", (4 * c,))
    elif cell == "simplernn":
        spec.add(f"{p}/ConvNormBasicCell/s/weights", (k, k, c, c))
        spec.add(f"{p}/ConvNormBasicCell/s/bias", (c,))
        spec.add(f"{p}/ConvNormBasicCell/i/weights", (k, k, cin, c))
        spec.add(f"{p}/ConvNormBasicCell/i/bias", (c,))
        if ln:
            spec.add(f"{p}/ConvNormBasicCell/layer_norm/gamma", (c,))
            spec.add(f"{p}/ConvNormBasicCell/layer_norm/beta", (c,))
    elif cell == "timedecay":
        spec.add(f"{p}/memory_decay", (1,))  # the tnn memory, trainable
    else:
        raise ValueError(cell)


def rgc_shallow_cell(spec: Spec, node: str, xin: int, c: int, h: int) -> None:
    """cells.py ReciprocalGateCell as rgc_shallow.json sets it: 3×3 full convs without biases, residual→out gate."""
    p = f"{S}/{node}/ReciprocalGateCell"
    k = min(3, h)
    spec.add(f"{p}/cell/input_to_cell/weights", (k, k, c, c))
    spec.add(f"{p}/cell/tau/weights", (k, k, c, c))
    spec.add(f"{p}/cell/gate/weights", (k, k, c, c))
    spec.add(f"{p}/out/tau/weights", (k, k, c, c))
    spec.add(f"{p}/out/gate/weights", (k, k, c, c))
    spec.add(f"{p}/out/residual_to_out_gate/weights", (k, k, xin, c))


def median_cell(spec: Spec, node: str, xin: int, c: int, cc: int, h: int, fb: int) -> None:
    """median_rgcell.py with the release's settings and its feedback override (1×1 full conv into the output)."""
    p = f"{S}/{node}/ReciprocalGateCell"
    k = min(7, h)  # separable kernels are clipped to the map
    spec.add(f"{p}/cell/input_to_cell_weights", (2, 2, c, cc))
    spec.add(f"{p}/cell/input_to_cell_bias", (cc,))
    for scope, cin, cout in (("cell/tau", cc, cc), ("cell/out_to_cell", c, cc), ("out/tau", c, c),
                             ("out/gate", cc, c)):
        spec.add(f"{p}/{scope}/depthwise_weights", (k, k, cin, 1))
        spec.add(f"{p}/{scope}/pointwise_weights", (1, 1, cin, cout))
        spec.add(f"{p}/{scope}/bias", (cout,))
    spec.add(f"{p}/out/input_to_out_weights", (3, 3, c, c))
    spec.add(f"{p}/out/input_to_out_bias", (c,))
    if xin != c:
        spec.add(f"{p}/out/residual_add_weights", (1, 1, xin, c))
    if fb:
        spec.add(f"{p}/out/feedback_to_out_weights", (1, 1, fb, c))
        spec.add(f"{p}/out/feedback_to_out_bias", (c,))


# ----------------------------------------------------------------------------------------------- graphs
def shallow(cell: str, w: float, size: int, classes: int) -> Spec:
    spec = Spec()
    depths = {"simplernn": (128, 256, 256), "lstm": (128, 256, 256)}.get(cell, (256, 256, 512))
    lstm_k, lstm_peep = {"conv3": 2, "conv4": 3, "conv5": 4}, {"conv4"}  # lstm_shallow.npz
    h = pooled(math.ceil(size / 2))  # after conv1 (7×7/2) and its pool
    spec.add(f"{S}/conv1/pre_0/weights_basenet", (7, 7, 3, ch(64, w)))
    spec.add(f"{S}/conv1/pre_0/bias", (ch(64, w),))
    spec.add(f"{S}/conv1/memory_decay", (1,), "const0")
    spec.add(f"{S}/conv2/pre_0/weights_basenet", (3, 3, ch(64, w), ch(128, w)))
    spec.add(f"{S}/conv2/pre_0/bias", (ch(128, w),))
    spec.add(f"{S}/conv2/memory_decay", (1,), "const0")
    h = pooled(h)
    cin = ch(128, w)
    for node, pre, depth in zip(("conv3", "conv4", "conv5"), (256, 256, 512), depths, strict=True):
        pre, depth = ch(pre, w), ch(depth, w)
        spec.add(f"{S}/{node}/pre_0/weights_basenet", (3, 3, cin, pre))
        spec.add(f"{S}/{node}/pre_0/bias", (pre,))
        if cell == "rgc":
            rgc_shallow_cell(spec, node, cin, pre, h)
        elif cell == "lstm":
            simple_cells(spec, node, "lstm", pre, depth, h, k=lstm_k[node], ln=True, peep=node in lstm_peep)
        else:
            simple_cells(spec, node, cell, pre, depth if cell != "timedecay" else pre, h,
                         ln=cell == "simplernn")
        cin = depth if cell not in ("timedecay", "rgc") else pre
        h = pooled(h)
    spec.add(f"{S}/imnetds/pre_1/weights", (2, 2, cin, classes))
    spec.add(f"{S}/imnetds/pre_1/bias", (classes,))
    spec.add(f"{S}/imnetds/memory_decay", (1,), "const0")
    return spec


def intermediate(cell: str, w: float, size: int, classes: int) -> Spec:
    spec = Spec()
    widths = dict(zip([f"conv{i}" for i in range(2, 11)], (64, 64, 128, 128, 256, 256, 512, 512, 512), strict=True))
    pools = {"conv4", "conv6", "conv7", "conv10"}
    h = pooled(math.ceil(size / 2))
    spec.add(f"{S}/conv1/pre_0/weights_basenet", (7, 7, 3, ch(64, w)))
    spec.add(f"{S}/conv1/pre_0/bias", (ch(64, w),))
    spec.add(f"{S}/conv1/memory_decay", (1,), "const0")
    cin = ch(64, w)
    for node, c in widths.items():
        c = ch(c, w)
        spec.add(f"{S}/{node}/pre_0/weights_basenet", (3, 3, cin, c))
        spec.add(f"{S}/{node}/pre_0/bias", (c,))
        if node in ("conv2", "conv3"):
            spec.add(f"{S}/{node}/memory_decay", (1,), "const0")
        else:
            simple_cells(spec, node, cell, c, c, h)
        spec.add(f"{S}/{node}/post_0/weights", (3, 3, c, c))
        spec.add(f"{S}/{node}/post_0/bias", (c,))
        if cin != c:
            spec.add(f"{S}/{node}/post_1/residual_add_weights", (1, 1, cin, c))
        cin = c
        h = pooled(h) if node in pools else h
    spec.add(f"{S}/imnetds/pre_3/weights", (cin, classes))
    spec.add(f"{S}/imnetds/pre_3/bias", (classes,))
    spec.add(f"{S}/imnetds/memory_decay", (1,), "const0")
    return spec


def rgc_intermediate(w: float, size: int, classes: int, decoder: str) -> Spec:
    spec = Spec()
    widths = {"conv2": 128, "conv3": 128, "conv4": 128, "conv5": 128, "conv6": 256, "conv7": 256, "conv8": 256,
              "conv9": 512, "conv10": 512}
    pools = {"conv4", "conv6", "conv7", "conv10"}
    feedback = {"conv5": ["conv8"], "conv6": ["conv7", "conv9"], "conv7": ["conv10"], "conv9": ["conv10"]}
    h = pooled(math.ceil(size / 2))
    spec.add(f"{S}/conv1/pre_0/weights_basenet", (7, 7, 3, ch(64, w)))
    spec.add(f"{S}/conv1/pre_0/bias", (ch(64, w),))
    spec.add(f"{S}/conv1/memory_decay", (1,), "const0")
    cin = ch(64, w)
    for node, c in widths.items():
        c = ch(c, w)
        spec.add(f"{S}/{node}/pre_0/weights_basenet", (3, 3, cin, c))
        spec.add(f"{S}/{node}/pre_0/bias", (c,))
        if node in ("conv2", "conv3"):
            spec.add(f"{S}/{node}/memory_decay", (1,), "const0")
        else:
            fb = sum(ch(widths[src], w) for src in sorted(feedback.get(node, [])))
            median_cell(spec, node, cin, c, ch(64, w), h, fb)
        cin = c
        h = pooled(h) if node in pools else h
    spec.add(f"{S}/imnetds/pre_3/weights", (cin, classes))
    spec.add(f"{S}/imnetds/pre_3/bias", (classes,))
    spec.add(f"{S}/imnetds/memory_decay", (1,), "const0")
    if decoder in ("tmaxconf", "dthresh"):  # utils/decoders.py, built inside the tnn_model scope
        spec.add(f"{S}/probs/softmax_beta", (1,), "const1")
        spec.add(f"{S}/alpha/softmax_beta", (1,), "const1")
    if decoder == "tmaxconf":
        spec.add(f"{S}/normalize/softmax_beta", (1,), "beta")
    if decoder == "dthresh":
        spec.add(f"{S}/normalize/softmax_beta", (1,), "const1")
        spec.add(f"{S}/decoder_threshold", (1,), "const09")
    return spec


# ------------------------------------------------------------------------------------------------ write
def values(spec: Spec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, kind) in spec.vars.items():
        if kind == "rand":
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 4
            value = rng.standard_normal(shape) * (1.0 / math.sqrt(max(fan_in, 1)))
            if name.endswith(("bias", "beta")) or len(shape) == 1:
                value = 0.1 * rng.standard_normal(shape)
            if name.endswith("gamma"):
                value = 1.0 + 0.1 * rng.standard_normal(shape)
            if name.endswith("memory_decay"):
                value = rng.uniform(0.2, 0.8, shape)
        else:
            value = {"const0": np.zeros(shape), "const1": np.ones(shape), "const09": np.full(shape, 0.9),
                     "beta": rng.uniform(0.0, 1.0, shape)}[kind]
        out[name] = value.astype(np.float32)
    return out


def conv_op(x, w, b, stride, padding):
    y = tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding=padding)
    return y + b if b is not None else y


def ops_for(name: str, vals: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> tuple[list, dict]:
    """TF op outputs on fixed inputs with the checkpoint's own weights (NHWC in, NHWC out)."""
    ops, arrays = [], {}

    def record(kind: str, weights: str, bias: str | None, x: np.ndarray, y, **info) -> None:
        key = f"op{len(ops)}"
        arrays[f"{key}_x"] = x
        arrays[f"{key}_y"] = np.asarray(y, dtype=np.float32)
        ops.append({"key": key, "kind": kind, "weights": weights, "bias": bias, **info})

    def conv(weights: str, bias: str | None, h: int, stride: int = 1, padding: str = "SAME") -> None:
        w = vals[weights]
        x = rng.standard_normal((2, h, h, w.shape[2])).astype(np.float32)
        y = conv_op(x, w, vals[bias] if bias else None, stride, padding)
        record("conv", weights, bias, x, y, stride=stride, padding=padding)

    def separable(scope: str, h: int) -> None:
        dw, pw, b = vals[f"{scope}/depthwise_weights"], vals[f"{scope}/pointwise_weights"], vals[f"{scope}/bias"]
        x = rng.standard_normal((2, h, h, dw.shape[2])).astype(np.float32)
        y = tf.nn.separable_conv2d(x, dw, pw, strides=[1, 1, 1, 1], padding="SAME") + b
        record("separable", f"{scope}/depthwise_weights", f"{scope}/bias", x, y,
               pointwise=f"{scope}/pointwise_weights")

    def fc(weights: str, bias: str) -> None:
        w = vals[weights]
        x = rng.standard_normal((2, w.shape[0])).astype(np.float32)
        record("fc", weights, bias, x, tf.matmul(x, w) + vals[bias])

    if name.startswith("rgc_intermediate"):
        conv(f"{S}/conv1/pre_0/weights_basenet", f"{S}/conv1/pre_0/bias", size, stride=2)  # 7×7/2: pad 2|3
        rgc = f"{S}/conv4/ReciprocalGateCell"
        h4 = pooled(math.ceil(size / 2))
        conv(f"{rgc}/cell/input_to_cell_weights", f"{rgc}/cell/input_to_cell_bias", h4)  # 2×2: pad 0|1
        separable(f"{S}/conv6/ReciprocalGateCell/cell/out_to_cell", pooled(h4))  # 7×7 depthwise
        separable(f"{S}/conv7/ReciprocalGateCell/out/tau", pooled(pooled(h4)))  # clipped 4×4: pad 1|2
        fc(f"{S}/imnetds/pre_3/weights", f"{S}/imnetds/pre_3/bias")
    elif name == "lstm_shallow":
        conv(f"{S}/conv5/ConvLSTMCell/weights", f"{S}/conv5/ConvLSTMCell/bias", 3)  # 4×4 on 3×3: pad 1|2
        conv(f"{S}/imnetds/pre_1/weights", f"{S}/imnetds/pre_1/bias", 2, padding="VALID")
    return ops, arrays


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def write(name: str, spec: Spec, overrides: dict, *, seed: int, momentum: bool = False,
          global_step: int | None = None, filename: str = "model.ckpt") -> None:
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    vals = values(spec, seed)
    trainable = [n for n, (_, kind) in spec.vars.items() if kind in ("rand", "beta")]
    graph = tf.Graph()
    with graph.as_default():
        variables = {n: tf1.Variable(v, name=n) for n, v in vals.items()}
        if momentum:  # what MomentumOptimizer leaves for every trainable variable
            rng = np.random.default_rng(seed + 1)
            for n in trainable:
                slot = (0.01 * rng.standard_normal(vals[n].shape)).astype(np.float32)
                variables[f"{n}/Momentum"] = tf1.Variable(slot, name=f"{n}/Momentum")
        if global_step is not None:
            variables["global_step"] = tf1.Variable(np.int64(global_step), name="global_step")
        for n, v in variables.items():
            assert v.op.name == n, (n, v.op.name)
        saver = tf1.train.Saver(var_list=variables, write_version=tf1.train.SaverDef.V2)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            prefix = saver.save(sess, str(folder / filename), global_step=global_step, write_meta_graph=False,
                                write_state=False)
    reader = tf.train.load_checkpoint(prefix)  # what TensorFlow itself reads back
    dtypes = reader.get_variable_to_dtype_map()
    tensors = {}
    for n in sorted(reader.get_variable_to_shape_map()):
        value = reader.get_tensor(n)
        value = np.asarray(value)
        tensors[n] = {"dtype": dtypes[n].name, "shape": list(value.shape), "sha256": sha256(value)}
    rng = np.random.default_rng(seed + 2)
    ops, arrays = ops_for(name, vals, rng, overrides["input_size"])
    # a few raw values as TF reads them, for a direct look at the numbers
    samples = {f"value:{n}": np.asarray(reader.get_tensor(n)) for n in list(tensors)[:3]}
    np.savez_compressed(folder / "ops.npz", **arrays, **samples)
    manifest = {"model": name, "overrides": overrides, "checkpoint": Path(prefix).name, "tensors": tensors,
                "ops": ops, "samples": sorted(samples), "written_by": f"tensorflow {tf.__version__}"}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"{name}: {len(tensors)} tensors, {size / 1e6:.2f} MB -> {folder}")


def main() -> None:
    # the three named by the issue (rgc_intermediate with its tmaxconf decoder, lstm_shallow, a third cell type)
    write("rgc_intermediate_tmaxconf", rgc_intermediate(0.125, 64, 10, "tmaxconf"),
          {"width_multiplier": 0.125, "input_size": 64, "num_classes": 10}, seed=1, momentum=True,
          global_step=1000)
    write("lstm_shallow", shallow("lstm", 0.0625, 96, 10),
          {"width_multiplier": 0.0625, "input_size": 96, "num_classes": 10}, seed=2)
    write("gru_intermediate", intermediate("gru", 0.0625, 64, 10),
          {"width_multiplier": 0.0625, "input_size": 64, "num_classes": 10}, seed=3)
    # every other naming rule, at the smallest widths
    tiny = {"width_multiplier": 0.03125, "input_size": 96, "num_classes": 10}
    for seed, cell in enumerate(("rgc", "simplernn", "ugrnn", "intersectionrnn", "timedecay"), start=4):
        write(f"{cell}_shallow", shallow(cell, 0.03125, 96, 10), tiny, seed=seed)
    write("timedecay_intermediate", intermediate("timedecay", 0.03125, 64, 10),
          {"width_multiplier": 0.03125, "input_size": 64, "num_classes": 10}, seed=9)
    write("rgc_intermediate_dthresh", rgc_intermediate(0.03125, 64, 10, "dthresh"),
          {"width_multiplier": 0.03125, "input_size": 64, "num_classes": 10}, seed=10)


if __name__ == "__main__":
    main()
