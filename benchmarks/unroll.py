"""Training-step throughput of ConvRNNs next to torchvision ResNets, per image and per FLOP.

    python benchmarks/unroll.py                      # CPU, 128 px
    python benchmarks/unroll.py --device cuda --size 224 --batch 64 --amp

For every model it times forward+backward (+ zero_grad) on random data and counts FLOPs with
torch.utils.flop_counter. "executed" FLOPs are what actually ran (the optimised unroll skips work); "naive"
FLOPs are what the naive unroll runs (every node, every step, full batch), i.e. the model's nominal cost.
Per-FLOP throughput = achieved FLOP/s; ratios are against ResNet-34 in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import convrnn


class Candidate:
    def __init__(self, label: str, model: torch.nn.Module, loss_fn, naive_flops_fn=None) -> None:
        self.label, self.model, self.loss_fn, self.naive_flops_fn = label, model, loss_fn, naive_flops_fn


def resnet(name: str) -> Candidate:
    model = getattr(torchvision.models, name)(weights=None, num_classes=1000)
    return Candidate(name, model, lambda m, x, y: F.cross_entropy(m(x), y))


def convrnn_candidate(name: str, size: int, optimize: bool) -> Candidate:
    model = convrnn.build_model(name, input_size=size)

    def loss(m, x, y):
        out = m(x, optimize=optimize)
        return F.cross_entropy(m.decode(out.logits), y)

    label = f"{name}{'' if optimize else ' (naive unroll)'}"
    return Candidate(label, model, loss)


def train_flops(candidate: Candidate, x: torch.Tensor, y: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        candidate.loss_fn(candidate.model, x, y).backward()
    candidate.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_steps(candidate: Candidate, x, y, steps: int, warmup: int, amp: bool, device: str) -> float:
    model = candidate.model

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            loss = candidate.loss_fn(model, x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--models", default="resnet18,resnet34,rgc_shallow,rgc_intermediate")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive-unroll reference rows")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    y = torch.randint(0, 1000, (args.batch,), device=args.device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    candidates = []
    for name in args.models.split(","):
        if name.startswith("resnet"):
            candidates.append(resnet(name))
        else:
            candidates.append(convrnn_candidate(name, args.size, optimize=True))
            if not args.no_naive:
                candidates.append(convrnn_candidate(name, args.size, optimize=False))
    rows = []
    naive_flops: dict[str, int] = {}
    for cand in candidates:
        cand.model.to(args.device).train()
        if args.channels_last:
            cand.model.to(memory_format=torch.channels_last)
        flops = train_flops(cand, x, y)
        base = cand.label.split(" ")[0]
        if cand.label.endswith("(naive unroll)") or base.startswith("resnet"):
            naive_flops[base] = flops
        seconds = time_steps(cand, x, y, args.steps, args.warmup, args.amp, args.device)
        rows.append((cand.label, base, args.batch / seconds, flops / args.batch, flops / seconds))
        cand.model.cpu()
        print(f"  measured {cand.label}: {args.batch / seconds:.1f} img/s", flush=True)

    ref = next((r for r in rows if r[0] == "resnet34"), rows[0])
    print(f"\ndevice={args.device} size={args.size} batch={args.batch} steps={args.steps} amp={args.amp} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    header = (f"{'model':34s} {'img/s':>8s} {'GFLOP/img exec':>15s} {'GFLOP/img naive':>16s} "
              f"{'GFLOP/s':>8s} {'per-FLOP vs R34':>16s} {'naive-FLOP/s vs R34':>20s}")
    print(header)
    print("-" * len(header))
    for label, base, ips, fpi, fps in rows:
        nominal = naive_flops.get(base, fpi * args.batch) / args.batch
        print(f"{label:34s} {ips:8.1f} {fpi / 1e9:15.2f} {nominal / 1e9:16.2f} {fps / 1e9:8.1f} "
              f"{fps / ref[4]:16.2f} {ips * nominal / (ref[2] * ref[3]):20.2f}")


if __name__ == "__main__":
    main()
