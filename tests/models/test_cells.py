"""Every cell against an independent step-by-step computation of its equations (docs/models.md, 'Cells').

The references below use only F.conv2d with explicit TF-SAME pads (written out in PAD), hand-written layer
norm, ELU and sigmoid, and the cell's own parameter tensors (never its forward code). Biases, peepholes and LN
affines are randomised so that they matter; all runs are float64 over several steps from the zero state.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from convrnn.cells import (
    GRUCell,
    IntersectionRNNCell,
    LSTMCell,
    SimpleRNNCell,
    TimeDecayCell,
    UGRNNCell,
    build_cell,
)
from convrnn.cells.rgc import build_rgc

B = 2
STEPS = 4
# TF "SAME" at stride 1: (before, after) for each kernel size (docs/models.md, 'Conventions'), written out
PAD = {1: (0, 0), 2: (0, 1), 3: (1, 1), 4: (1, 2), 5: (2, 2), 7: (3, 3), 8: (3, 4)}
MEDIAN_TAU = 0.9219348064291611  # docs/models.md, 'Cells': o_τ = −k_τ
MEDIAN_GATE = 0.7006566684988862  # o_g = −k_g


# ------------------------------------------------------------------------ reference building blocks
def conv(x, weight, bias=None, groups=1):
    kh, kw = weight.shape[-2:]
    (top, bottom), (left, right) = PAD[kh], PAD[kw]
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, groups=groups)


def sep(x, module):
    """Depthwise (multiplier 1, no bias) then pointwise 1×1 with bias, nothing in between."""
    dw = conv(x, module.depthwise.weight, groups=x.shape[1])
    return conv(dw, module.pointwise.weight, module.pointwise.bias)


def sigmoid(z):
    return 1.0 / (1.0 + torch.exp(-z))


def elu(z):
    return torch.where(z > 0, z, torch.exp(torch.clamp(z, max=0)) - 1.0)


def tf_layer_norm(z, gamma, beta, eps=1e-12):
    """TF-contrib layer norm: stats over (C, H, W) of each sample, per-channel affine
    (docs/models.md, 'Conventions')."""
    mean = z.mean(dim=(1, 2, 3), keepdim=True)
    var = ((z - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    return (z - mean) / torch.sqrt(var + eps) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def rand(*shape, gen):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def run_and_compare(
    cell, reference, ref_state, in_ch, size, residual_ch=0, feedback_ch=0, steps=STEPS, seed=0
):
    """Step the cell and the reference on the same random inputs; compare outputs and every state tensor."""
    gen = torch.Generator().manual_seed(seed)
    state = cell.initial_state(B, torch.device("cpu"), torch.float64)
    assert len(state) == len(ref_state)
    for s, r in zip(state, ref_state, strict=True):
        assert s.shape == r.shape
        assert torch.all(s == 0)
    outputs = []
    for _ in range(steps):
        a = rand(B, in_ch, *size, gen=gen)
        x = rand(B, residual_ch, *size, gen=gen) if residual_ch else None
        fb = rand(B, feedback_ch, *size, gen=gen) if feedback_ch else None
        out, state = cell(a, state, feedback=fb, residual=x)
        ref_out, ref_state = reference(a, ref_state, x, fb)
        torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
        assert len(state) == len(ref_state)
        for s, r in zip(state, ref_state, strict=True):
            torch.testing.assert_close(s, r, rtol=1e-10, atol=1e-10)
        outputs.append(out)
    # non-vacuous: the recurrence changes the output (state actually feeds back)
    assert (outputs[-1] - outputs[-2]).abs().max() > 1e-3
    return outputs


@pytest.fixture
def prepared(randomize):
    def prep(cell, seed=0):
        return randomize(cell.double(), seed=seed, scale=0.5)

    return prep


# ---------------------------------------------------------------------------------------- SimpleRNN
@pytest.mark.parametrize("layer_norm", [False, True])
def test_simplernn(prepared, layer_norm):
    C_in, C, size = 3, 4, (5, 5)
    cell = prepared(SimpleRNNCell(C_in, C, size, layer_norm=layer_norm))
    assert cell.state_shapes() == [(C, 5, 5)]
    Wx, bx = cell.input_conv.weight, cell.input_conv.bias
    Wh, bh = cell.recurrent_conv.weight, cell.recurrent_conv.bias
    assert Wx.shape == (C, C_in, 3, 3) and Wh.shape == (C, C, 3, 3)
    if layer_norm:
        gamma, beta = cell.norm.weight, cell.norm.bias
        assert not torch.allclose(gamma, torch.ones_like(gamma))

    def ref(a, state, x, fb):
        (h,) = state
        z = conv(a, Wx, bx) + conv(h, Wh, bh)
        if layer_norm:
            z = tf_layer_norm(z, gamma, beta)
        h = elu(z)
        return h, (h,)

    run_and_compare(cell, ref, (torch.zeros(B, C, *size, dtype=torch.float64),), C_in, size)


def test_tf_layer_norm_is_not_per_position_channel_norm(prepared):
    """Guard the reference itself: TF LN (over C,H,W) differs from nn.LayerNorm over channels per pixel."""
    gen = torch.Generator().manual_seed(0)
    z = rand(2, 4, 5, 5, gen=gen)
    g, b = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    ours = tf_layer_norm(z, g, b)
    per_pixel = F.layer_norm(z.permute(0, 2, 3, 1), (4,), eps=1e-12).permute(0, 3, 1, 2)
    assert (ours - per_pixel).abs().max() > 0.1
    cell = prepared(SimpleRNNCell(4, 4, (5, 5), layer_norm=True))
    torch.testing.assert_close(cell.norm(z), tf_layer_norm(z, cell.norm.weight, cell.norm.bias))
    assert cell.norm.eps == 1e-12


# --------------------------------------------------------------------------------------------- LSTM
LSTM_CASES = {
    # lstm_intermediate: k=3, forget bias 1, no peepholes, no LN
    "intermediate": dict(kernel_size=3, forget_bias=1.0, bias_init=0.0, peepholes=False, layer_norm=False),
    # lstm_shallow conv3/conv4/conv5 settings (docs/models.md, 'Choices where the release is silent'), small depths
    "shallow_conv3": dict(
        kernel_size=2, forget_bias=1.3562, bias_init=1.6428, peepholes=False, layer_norm=True
    ),
    "shallow_conv4": dict(
        kernel_size=3, forget_bias=0.9780, bias_init=-1.1660, peepholes=True, layer_norm=True
    ),
    "shallow_conv5": dict(
        kernel_size=4, forget_bias=0.9249, bias_init=-1.3495, peepholes=False, layer_norm=True
    ),
    "peepholes_no_ln": dict(kernel_size=3, forget_bias=1.0, bias_init=0.0, peepholes=True, layer_norm=False),
}


@pytest.mark.parametrize("case", list(LSTM_CASES))
def test_lstm(prepared, case):
    opts = LSTM_CASES[case]
    C_in, C, size = 3, 4, (5, 5)
    cell = LSTMCell(C_in, C, size, **opts)
    k = opts["kernel_size"]
    assert cell.conv.weight.shape == (4 * C, C_in + C, k, k)
    torch.testing.assert_close(cell.conv.bias, torch.full((4 * C,), opts["bias_init"]))
    cell = prepared(cell)
    W, b = cell.conv.weight, cell.conv.bias
    forget_bias = opts["forget_bias"]
    if opts["peepholes"]:
        p_i, p_f, p_o = cell.peep_i, cell.peep_f, cell.peep_o
        assert p_i.shape == (C, *size)  # spatially varying
    norms = cell.norms

    def ref(a, state, x, fb):
        c, h = state
        z = conv(torch.cat([a, h], 1), W, b)
        i, j, f, o = z[:, :C], z[:, C : 2 * C], z[:, 2 * C : 3 * C], z[:, 3 * C :]
        if opts["layer_norm"]:
            i, j, f, o = (
                tf_layer_norm(v, n.weight, n.bias) for v, n in zip((i, j, f, o), norms[:4], strict=True)
            )
        if opts["peepholes"]:  # every peephole multiplies the OLD c
            i, f, o = i + p_i * c, f + p_f * c, o + p_o * c
        c_new = c * sigmoid(f + forget_bias) + sigmoid(i) * torch.tanh(j)
        if opts["layer_norm"]:
            c_new = tf_layer_norm(c_new, norms[4].weight, norms[4].bias)
        h_new = torch.tanh(c_new) * sigmoid(o)
        return h_new, (c_new, h_new)

    zeros = torch.zeros(B, C, *size, dtype=torch.float64)
    assert cell.state_shapes() == [(C, *size), (C, *size)]
    run_and_compare(cell, ref, (zeros, zeros), C_in, size)


def test_lstm_output_peephole_uses_old_memory(prepared):
    """With only p_o nonzero, h_t must equal tanh(c_t)·σ(o + p_o·c_{t−1}), not σ(o + p_o·c_t)."""
    cell = prepared(LSTMCell(2, 2, (3, 3), peepholes=True))
    with torch.no_grad():
        cell.peep_i.zero_()
        cell.peep_f.zero_()
        cell.peep_o.fill_(3.0)
    gen = torch.Generator().manual_seed(5)
    state = cell.initial_state(1, torch.device("cpu"), torch.float64)
    _, state = cell(rand(1, 2, 3, 3, gen=gen), state)
    c_old, h_old = state
    a = rand(1, 2, 3, 3, gen=gen)
    h, (c_new, _) = cell(a, state)
    o = conv(torch.cat([a, h_old], 1), cell.conv.weight, cell.conv.bias)[:, 6:]
    torch.testing.assert_close(h, torch.tanh(c_new) * sigmoid(o + 3.0 * c_old))
    assert (h - torch.tanh(c_new) * sigmoid(o + 3.0 * c_new)).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------- GRU
def test_gru(prepared):
    C_in, C, size = 3, 4, (5, 5)
    cell = GRUCell(C_in, C, size)
    torch.testing.assert_close(cell.gate_conv.bias, torch.ones(2 * C))  # b_g initialised to 1.0
    torch.testing.assert_close(cell.candidate_conv.bias, torch.zeros(C))
    cell = prepared(cell)
    Wg, bg = cell.gate_conv.weight, cell.gate_conv.bias
    Wc, bc = cell.candidate_conv.weight, cell.candidate_conv.bias

    def ref(a, state, x, fb):
        (h,) = state
        g = conv(torch.cat([a, h], 1), Wg, bg)
        r = sigmoid(g[:, :C] + 1.0)  # the release's +1 goes to the reset gate
        u = sigmoid(g[:, C:])
        cand = torch.tanh(conv(torch.cat([a, r * h], 1), Wc, bc))
        h = u * h + (1 - u) * cand
        return h, (h,)

    run_and_compare(cell, ref, (torch.zeros(B, C, *size, dtype=torch.float64),), C_in, size)


# -------------------------------------------------------------------------------------------- UGRNN
def test_ugrnn(prepared):
    C_in, C, size = 3, 4, (5, 5)
    cell = prepared(UGRNNCell(C_in, C, size))
    W, b = cell.conv.weight, cell.conv.bias
    assert W.shape == (2 * C, C_in + C, 3, 3)

    def ref(a, state, x, fb):
        (h,) = state
        z = conv(torch.cat([a, h], 1), W, b)
        g = sigmoid(z[:, :C] + 1.0)  # gate first
        h = g * h + (1 - g) * torch.tanh(z[:, C:])
        return h, (h,)

    run_and_compare(cell, ref, (torch.zeros(B, C, *size, dtype=torch.float64),), C_in, size)


# ---------------------------------------------------------------------------------- IntersectionRNN
def test_intersection_rnn(prepared):
    C, size = 4, (5, 5)
    cell = prepared(IntersectionRNNCell(C, C, size))
    W, b = cell.conv.weight, cell.conv.bias
    assert W.shape == (4 * C, 2 * C, 3, 3)

    def ref(a, state, x, fb):
        (h,) = state
        z = conv(torch.cat([a, h], 1), W, b)
        gh_, hh, gy_, yy = z[:, :C], z[:, C : 2 * C], z[:, 2 * C : 3 * C], z[:, 3 * C :]
        g_h, g_y = sigmoid(gh_ + 1), sigmoid(gy_ + 1)
        h_new = g_h * h + (1 - g_h) * torch.tanh(hh)
        y = g_y * a + (1 - g_y) * torch.clamp(yy, min=0)
        return y, (h_new,)  # y goes up, h is carried

    run_and_compare(cell, ref, (torch.zeros(B, C, *size, dtype=torch.float64),), C, size)


# ---------------------------------------------------------------------------------------- TimeDecay
def test_time_decay(prepared):
    C, size = 4, (5, 5)
    cell = TimeDecayCell(C, C, size)
    assert cell.decay.item() == 0.0  # purely feed-forward at initialisation
    assert sum(p.numel() for p in cell.parameters()) == 1  # one scalar per layer
    cell = prepared(cell)
    m = cell.decay.item()
    assert m != 0.0

    def ref(a, state, x, fb):
        (h,) = state
        h = m * h + a
        return h, (h,)

    run_and_compare(cell, ref, (torch.zeros(B, C, *size, dtype=torch.float64),), C, size)


# --------------------------------------------------------------------------------- RGC: rgc_shallow
@pytest.mark.parametrize("size", [(5, 5), (2, 2)])
def test_rgc_shallow(prepared, size):
    """docs/models.md, 'Cells'; on a 2×2 map the 3×3 kernels are clipped to 2×2 (pads 0 before, 1 after)."""
    C, Cx = 4, 3
    cell = prepared(build_rgc(C, C, size, residual_channels=Cx, preset="rgc_shallow"))
    k = min(3, size[0])
    W_ac = cell.input_to_cell.weight
    W_cc, W_hc = cell.cell_tau.weight, cell.cell_gate.weight
    W_hh, W_ch = cell.out_tau.weight, cell.out_gate.weight
    W_xh = cell.residual_terms["out_gate"].weight
    for w, shape in [
        (W_ac, (C, C)),
        (W_cc, (C, C)),
        (W_hc, (C, C)),
        (W_hh, (C, C)),
        (W_ch, (C, C)),
        (W_xh, (C, Cx)),
    ]:
        assert w.shape == (*shape, k, k)
    # no biases anywhere in this cell
    assert not [n for n, _ in cell.named_parameters() if n.endswith("bias")]
    assert sum(p.numel() for p in cell.parameters()) == 5 * C * C * k * k + C * Cx * k * k

    def ref(a, state, x, fb):
        c, h = state
        U_c = conv(a, W_ac)
        c_new = elu((1 - sigmoid(conv(c, W_cc))) * c + (1 - sigmoid(conv(h, W_hc))) * U_c)
        G_h = conv(c, W_ch) + conv(x, W_xh)
        h_new = elu((1 - sigmoid(conv(h, W_hh))) * h + (1 - sigmoid(G_h)) * a)  # U_h = a
        return h_new, (c_new, h_new)

    zeros = torch.zeros(B, C, *size, dtype=torch.float64)
    assert cell.state_shapes() == [(C, *size), (C, *size)]
    run_and_compare(cell, ref, (zeros, zeros), C, size, residual_ch=Cx)


# -------------------------------------------------------------------------------------- RGC: median
def median_reference(cell, Cc, entry="out", search_feedback=False):
    """The median cell with the release's feedback (docs/models.md, 'Cells', 'Feedback') written out."""
    W_ac, b_ac = cell.input_to_cell.weight, cell.input_to_cell.bias
    W_ah, b_ah = cell.input_to_out.weight, cell.input_to_out.bias
    proj = cell.residual_projection

    def feedback_term(fb):
        if search_feedback:  # depthwise-separable 8×8 + ELU (the median config before the release override)
            return elu(sep(fb, cell.feedback[0]))
        return conv(fb, cell.feedback[0].weight, cell.feedback[0].bias)  # 1×1 + bias, identity

    def ref(a_in, state, x, fb):
        c, h = state
        fterm = feedback_term(fb) if fb is not None else 0.0
        a = elu(a_in + fterm) if entry == "input" else elu(a_in)
        U_c = conv(a, W_ac, b_ac)
        if entry == "cell":
            U_c = U_c + fterm
        c_new = elu(
            MEDIAN_TAU * (1 - sigmoid(sep(c, cell.cell_tau))) * c
            + MEDIAN_GATE * (1 - torch.tanh(sep(h, cell.cell_gate))) * U_c
        )
        S = x if proj is None else conv(x, proj.weight)
        U_h = conv(a, W_ah, b_ah) + S
        if entry == "out":
            U_h = U_h + fterm
        h_new = elu(
            MEDIAN_TAU * (1 - sigmoid(sep(h, cell.out_tau))) * h
            + MEDIAN_GATE * (1 - torch.tanh(sep(c, cell.out_gate))) * U_h
        )
        return h_new, (c_new, h_new)

    return ref


@pytest.mark.parametrize(
    ("residual_ch", "feedback_ch", "entry"),
    [
        (4, 0, "out"),  # identity bypass S(x) = x, no feedback (conv4, conv8, conv10)
        (3, 0, "out"),  # 1×1 bias-free projection (conv6, conv9)
        (4, 5, "out"),  # release feedback: 1×1 + bias into U_h
        (3, 5, "input"),
        (4, 5, "cell"),
    ],
)
def test_rgc_median(prepared, residual_ch, feedback_ch, entry):
    C, Cc, size = 4, 2, (9, 9)  # 9×9 so the 7×7 kernels are not clipped
    cell = prepared(
        build_rgc(
            C,
            C,
            size,
            residual_channels=residual_ch,
            feedback_channels=feedback_ch,
            preset="median",
            cell_depth=Cc,
            feedback_entry=entry,
        )
    )
    # shapes (docs/models.md, 'Cells'): 2×2 full ff conv, 3×3 full in→out conv, 7×7 depthwise-separable tau/gate convs
    assert cell.input_to_cell.weight.shape == (Cc, C, 2, 2)
    assert cell.input_to_out.weight.shape == (C, C, 3, 3)
    for module, cin, cout in [
        (cell.cell_tau, Cc, Cc),
        (cell.cell_gate, C, Cc),
        (cell.out_tau, C, C),
        (cell.out_gate, Cc, C),
    ]:
        assert module.depthwise.weight.shape == (cin, 1, 7, 7)
        assert module.depthwise.bias is None
        assert module.pointwise.weight.shape == (cout, cin, 1, 1)
        assert module.pointwise.bias is not None
    if residual_ch == C:
        assert cell.residual_projection is None
    else:
        assert cell.residual_projection.weight.shape == (C, residual_ch, 1, 1)
        assert cell.residual_projection.bias is None
    if feedback_ch:
        target = {"out": C, "input": C, "cell": Cc}[entry]
        assert cell.feedback[0].weight.shape == (target, feedback_ch, 1, 1)
        assert cell.feedback[0].bias is not None
    zeros_c = torch.zeros(B, Cc, *size, dtype=torch.float64)
    zeros_h = torch.zeros(B, C, *size, dtype=torch.float64)
    assert cell.state_shapes() == [(Cc, *size), (C, *size)]
    run_and_compare(
        cell,
        median_reference(cell, Cc, entry),
        (zeros_c, zeros_h),
        C,
        size,
        residual_ch=residual_ch,
        feedback_ch=feedback_ch,
    )


def test_rgc_median_search_time_feedback(prepared):
    """`median_search_feedback`: 8×8 depthwise-separable feedback (pads 3/4) with ELU, entering the input."""
    C, Cc, size = 4, 2, (9, 9)
    cell = prepared(
        build_rgc(
            C,
            C,
            size,
            residual_channels=C,
            feedback_channels=3,
            preset="median_search_feedback",
            cell_depth=Cc,
        )
    )
    assert cell.feedback[0].depthwise.weight.shape == (3, 1, 8, 8)
    assert cell.feedback[0].pointwise.weight.shape == (C, 3, 1, 1)
    zeros_c = torch.zeros(B, Cc, *size, dtype=torch.float64)
    zeros_h = torch.zeros(B, C, *size, dtype=torch.float64)
    run_and_compare(
        cell,
        median_reference(cell, Cc, "input", search_feedback=True),
        (zeros_c, zeros_h),
        C,
        size,
        residual_ch=C,
        feedback_ch=3,
    )


def test_rgc_median_defaults_and_init():
    """Memory depth 64 regardless of C; cell and feedback kernels VS(0.6393); biases 0; projection GU."""
    torch.manual_seed(0)
    C, Cx = 128, 64
    cell = build_rgc(C, C, (14, 14), residual_channels=Cx, feedback_channels=256, preset="median")
    assert cell.state_shapes() == [(64, 14, 14), (128, 14, 14)]
    state = cell.initial_state(3, torch.device("cpu"), torch.float32)
    assert [tuple(s.shape) for s in state] == [(3, 64, 14, 14), (3, 128, 14, 14)]
    assert all(torch.all(s == 0) for s in state)

    def std_ok(w, fan_in, scale=0.6393, tol=0.05):
        return abs(w.std().item() / math.sqrt(scale / fan_in) - 1) < tol

    assert std_ok(cell.input_to_out.weight, 3 * 3 * C)
    assert std_ok(cell.input_to_cell.weight, 2 * 2 * C)
    assert std_ok(cell.out_tau.depthwise.weight, 7 * 7 * C)  # TF depthwise fan-in kh·kw·C
    assert std_ok(cell.out_tau.pointwise.weight, C)
    assert std_ok(cell.feedback[0].weight, 256)
    for name, p in cell.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0), name
    limit = math.sqrt(6 / (Cx + C))  # GU on the 1×1 projection
    w = cell.residual_projection.weight
    assert w.abs().max() <= limit and w.abs().max() > 0.95 * limit


def test_rgc_kernel_clipping_on_small_maps():
    """On a 4×4 map the 7×7 separable kernels shrink to 4×4 (docs/models.md, 'Conventions')."""
    cell = build_rgc(8, 8, (4, 4), residual_channels=8, preset="median", cell_depth=4)
    for module in (cell.cell_tau, cell.cell_gate, cell.out_tau, cell.out_gate):
        assert module.depthwise.weight.shape[-2:] == (4, 4)
    assert cell.input_to_cell.weight.shape[-2:] == (2, 2)
    assert cell.input_to_out.weight.shape[-2:] == (3, 3)
    unclipped = build_rgc(
        8, 8, (4, 4), residual_channels=8, preset="median", cell_depth=4, clip_kernels="none"
    )
    assert unclipped.out_tau.depthwise.weight.shape[-2:] == (7, 7)


def test_rgc_median_full_convs_are_not_clipped():
    cell = build_rgc(8, 8, (2, 2), residual_channels=8, preset="median", cell_depth=4)
    assert cell.out_tau.depthwise.weight.shape[-2:] == (2, 2)  # separable: clipped
    assert cell.input_to_out.weight.shape[-2:] == (3, 3)  # full: the release does not clip it


# ---------------------------------------------------------------------------- state shapes, factory
@pytest.mark.parametrize(
    ("kind", "in_ch", "out_ch", "options", "shapes"),
    [
        ("simplernn", 8, 4, {}, [(4, 6, 7)]),
        ("lstm", 8, 4, {}, [(4, 6, 7), (4, 6, 7)]),
        ("gru", 8, 4, {}, [(4, 6, 7)]),
        ("ugrnn", 8, 4, {}, [(4, 6, 7)]),
        ("intersectionrnn", 4, 4, {}, [(4, 6, 7)]),
        ("timedecay", 4, 4, {}, [(4, 6, 7)]),
        ("rgc", 4, 4, {"preset": "rgc_shallow"}, [(4, 6, 7), (4, 6, 7)]),
        ("rgc", 4, 4, {"preset": "median", "cell_depth": 3}, [(3, 6, 7), (4, 6, 7)]),
    ],
)
def test_state_shapes_and_zero_initial_state(kind, in_ch, out_ch, options, shapes):
    cell = build_cell(kind, in_ch, out_ch, (6, 7), residual_channels=4, **options).double()
    assert cell.state_shapes() == shapes
    state = cell.initial_state(2, torch.device("cpu"), torch.float64)
    assert [tuple(s.shape) for s in state] == [(2, *s) for s in shapes]
    assert all(s.dtype == torch.float64 and torch.all(s == 0) for s in state)
    out, new_state = cell(
        torch.randn(2, in_ch, 6, 7, dtype=torch.float64),
        state,
        residual=torch.randn(2, 4, 6, 7, dtype=torch.float64),
    )
    assert out.shape == (2, out_ch, 6, 7)
    assert [tuple(s.shape) for s in new_state] == [(2, *s) for s in shapes]
