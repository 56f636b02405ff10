"""Unit tests: schedules, weight-decay groups, losses over time, batch unpacking, the resumable loader."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from convrnn.training import ConvRNNModule, InvalidTrainingConfig, decay_groups, lr_factor, unpack_batch
from convrnn.training.data import ResumableEpochLoader
from convrnn.training.module import state_digest
from convrnn.training.optim import build_optimizer

TINY = {"input_size": 32, "width_multiplier": 0.0625, "num_classes": 4, "times": 11}


# ------------------------------------------------------------------------------------------- schedules
def test_warmup_is_linear_then_cosine_reaches_floor() -> None:
    f = [lr_factor(s, 100, "cosine", warmup_steps=4, min_lr_ratio=0.1) for s in range(101)]
    assert f[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f[4] == pytest.approx(1.0)
    assert f[52] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine part
    assert f[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))


def test_step_schedule_decays_at_fractions() -> None:
    f = [lr_factor(s, 100, "step", milestones=[0.3, 0.6], gamma=0.1) for s in (0, 29, 30, 59, 60, 99)]
    assert f == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(50, 100, "constant", warmup_steps=10) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, "linear")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- weight decay
def test_decay_groups_follow_the_release_and_scale() -> None:
    model = ConvRNNModule(arch="rgc_intermediate", overrides={**TINY, "times": 12}).model
    release = {id(p): g["weight_decay"] for g in model.parameter_groups() for p in g["params"]}
    groups = decay_groups(model, weight_decay_scale=2.0)
    seen = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert seen.keys() == {id(p) for p in model.parameters()}
    for pid, decay in seen.items():
        assert decay == pytest.approx(2.0 * release[pid])
    assert {g["name"] for g in groups} == {"wd0", "wd0.0001", "wd0.0002034"}  # backbone and median-RGC L2
    assert next(g for g in groups if g["name"] == "wd0")["weight_decay"] == 0.0  # undecayed stay undecayed
    with pytest.raises(ValueError):
        decay_groups(model, -1.0)


def test_sgd_nesterov_matches_torch_with_coupled_l2() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = build_optimizer([{"params": [w], "weight_decay": 0.5}], "sgd", lr=0.1, momentum=0.9, nesterov=True)
    assert opt.defaults["nesterov"] and opt.param_groups[0]["weight_decay"] == 0.5
    w.grad = torch.tensor([0.0, 0.0])
    opt.step()  # the only gradient is the L2 term 0.5·w: v = 0.5w; nesterov step = g + 0.9 v = 0.95 w
    assert w.detach().tolist() == pytest.approx([1 - 0.1 * 0.95, -2 + 0.2 * 0.95])


# --------------------------------------------------------------------------------------------- losses
@pytest.fixture(scope="module")
def tiny_module() -> ConvRNNModule:
    torch.manual_seed(0)
    return ConvRNNModule(arch="ugrnn_intermediate", overrides=TINY)


def test_loss_modes(tiny_module: ConvRNNModule) -> None:
    torch.manual_seed(1)
    logits = torch.randn(11, 5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    m = tiny_module
    last = F.cross_entropy(logits[-1], y, reduction="none")
    assert torch.allclose(m.per_sample_loss(logits, y), last)  # decoder "last" = the last step
    m.hparams.loss_over = "last"
    assert torch.allclose(m.per_sample_loss(logits, y), last)
    m.hparams.loss_over, m.loss_window_start = "window", 8
    manual = torch.stack([F.cross_entropy(logits[t], y, reduction="none") for t in (8, 9, 10)]).mean(0)
    assert torch.allclose(m.per_sample_loss(logits, y), manual)
    m.hparams.loss_over = "decoder"


def test_weighted_loss_and_its_checks() -> None:
    weights = [0.0] * 10 + [1.0]
    m = ConvRNNModule(arch="ugrnn_intermediate", overrides=TINY, loss_over="weighted", loss_weights=weights)
    logits, y = torch.randn(11, 3, 4), torch.tensor([1, 2, 3])
    assert torch.allclose(m.per_sample_loss(logits, y), F.cross_entropy(logits[-1], y, reduction="none"))
    with pytest.raises(InvalidTrainingConfig, match="model.loss_weights.*times=11"):
        ConvRNNModule(arch="ugrnn_intermediate", overrides=TINY, loss_over="weighted", loss_weights=[1.0])
    with pytest.raises(InvalidTrainingConfig, match="model.loss_window_start"):
        ConvRNNModule(arch="ugrnn_intermediate", overrides=TINY, loss_over="window", loss_window_start=11)


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"lr": 0.0}, "model.lr"), ({"momentum": 1.0}, "model.momentum"), ({"step_milestones": [1.5]},
                                                                        "model.step_milestones"),
    ({"overrides": {"times": 0}}, "model.overrides"), ({"arch": "nope"}, "model.arch"),
    ({"arch": "/nowhere/graph.yaml"}, "model.arch"),
])
def test_invalid_hyperparameters_name_their_key(kwargs: dict, key: str) -> None:
    kwargs = {"arch": "ugrnn_intermediate", "overrides": TINY, **kwargs}
    with pytest.raises(InvalidTrainingConfig) as exc:
        ConvRNNModule(**kwargs)
    assert str(exc.value).startswith(key) and exc.value.key == key


def test_yaml_graph_and_eval_counts(tmp_path, tiny_module: ConvRNNModule) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text("extends: " + str(__import__("convrnn").zoo.CONFIG_DIR / "ugrnn_intermediate.yaml") + "\n")
    m = ConvRNNModule(arch=str(graph), overrides=TINY)
    assert m.model.times == 11
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])
    m._eval_step((images, labels, [f"k{i}" for i in range(6)]))
    s = m._val_stats
    logits = m(images)
    expect_t = (logits.argmax(-1) == labels).sum(1).double()
    assert torch.equal(s["top1_t"], expect_t) and s["count"] == 6
    assert bool((s["top5_t"] >= s["top1_t"]).all()) and float(s["top5"]) == 6  # 4 classes: top-5 is everything


def test_unpack_batch_forms() -> None:
    x, y = torch.zeros(2, 3, 4, 4), torch.tensor([1, 0])
    assert unpack_batch((x, y))[2] is None
    assert unpack_batch((x, y, ["a", "b"]))[2] == ["a", "b"]
    assert unpack_batch({"jpg": x, "cls": y, "__key__": ["a", "b"]})[2] == ["a", "b"]
    with pytest.raises(ValueError, match="images and labels"):
        unpack_batch({"jpg": x})


def test_state_digest_sees_one_ulp() -> None:
    a = torch.nn.Linear(3, 2)
    before = state_digest(a)
    with torch.no_grad():
        a.weight[0, 0] = torch.nextafter(a.weight[0, 0], torch.tensor(10.0))
    assert state_digest(a) != before


# ----------------------------------------------------------------------------------- resumable loader
class _FakeLoader:
    """Stands in for the shard DataLoader: a stream that is a function of its seed and of `random`."""

    num_workers = 0
    generator = None

    def __init__(self, stream: int) -> None:
        self.stream = stream

    def __iter__(self):
        i = 0
        while True:
            n = 4
            yield (torch.full((n,), float(i)), torch.tensor([random.random() for _ in range(n)]),
                   [f"s{self.stream}-{i}-{j}" for j in range(n)])
            i += 1


def _epochs(loader: ResumableEpochLoader, n: int) -> list[list[str]]:
    return [[k for b in loader for k in b[2]] for _ in range(n)]


def test_loader_epochs_truncate_and_continue_the_stream() -> None:
    loader = ResumableEpochLoader(_FakeLoader, num_samples=10, batch_size=4, seed=0, rank=0)
    assert len(loader) == 3
    e0, e1 = _epochs(loader, 2)
    assert len(e0) == len(e1) == 10
    assert e0[-1] == "s0-2-1" and e1[0] == "s0-3-0"  # the rest of batch 2 is dropped, the stream goes on


def test_loader_exact_resume_replays_the_same_stream() -> None:
    ref = ResumableEpochLoader(_FakeLoader, 10, 4, seed=0, rank=0)
    full = [b for _ in range(3) for b in ref]
    first = ResumableEpochLoader(_FakeLoader, 10, 4, seed=0, rank=0)
    taken = [*first, next(iter(first))]  # epoch 0 (3 batches) and the first batch of epoch 1
    state = first.state_dict()
    assert state["epoch_remaining"] == 6 and state["total_batches"] == 4
    random.random()  # the global RNG moves on in between: must not matter
    resumed = ResumableEpochLoader(_FakeLoader, 10, 4, seed=0, rank=0)
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)  # the rest of epoch 1, then epoch 2
    for a, b in zip(taken + rest, full, strict=True):
        assert a[2] == b[2] and torch.equal(a[1], b[1])


def test_loader_reseed_resume_is_deterministic_but_new() -> None:
    first = ResumableEpochLoader(_FakeLoader, 10, 4, seed=0, rank=0, resume="reseed")
    it = iter(first)
    for _ in range(2):
        next(it)
    state = first.state_dict()
    out = []
    for _ in range(2):
        r = ResumableEpochLoader(_FakeLoader, 10, 4, seed=0, rank=0, resume="reseed")
        r.load_state_dict(state)
        out.append([k for b in r for k in b[2]])
    assert out[0] == out[1] and len(out[0]) == 2  # the 2 samples left in the epoch
    assert out[0][0].startswith("s2-0")  # stream 2: a fresh stream, no replay
    with pytest.raises(ValueError, match="batch_size"):
        ResumableEpochLoader(_FakeLoader, 10, 8, seed=0, rank=0).load_state_dict(state)


def test_loader_isolates_the_global_random_state() -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    loader = ResumableEpochLoader(_FakeLoader, 8, 4, seed=0, rank=0)
    _epochs(loader, 1)
    assert random.random() == expected
    assert math.isfinite(expected)


def test_error_inside_a_yaml_graph_names_model_arch_and_the_file(tmp_path) -> None:
    graph = tmp_path / "mine.yaml"
    graph.write_text("input_size: 32\ntimes: 4\nnodez: {}\n")
    with pytest.raises(InvalidTrainingConfig) as exc:
        ConvRNNModule(arch=str(graph))
    assert exc.value.key == "model.arch" and "nodez" in str(exc.value) and "mine.yaml" in str(exc.value)
