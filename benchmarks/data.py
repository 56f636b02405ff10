"""Decode + augment throughput per core: webdataset shards (ShardDataModule) vs torchvision ImageFolder.

    python benchmarks/data.py                  # 400 photos, sizes 224 and 128, best of 3
    python benchmarks/data.py --n 800 --repeats 5
    python benchmarks/data.py --stages         # also: where the time goes, and the JPEG decoders side by side

The benchmark generates photo-like JPEGs (~400x350, quality 90, 60-95 KB) in ImageNet layout and writes
shards from them with the project's converter. Both pipelines then run on the same JPEGs, in one process
(num_workers=0, torch.set_num_threads(1)), so the figures are per core:

- ImageFolder: PIL loader + transforms.v2 RandomResizedCrop(antialias) + RandomHorizontalFlip + ToImage +
  ToDtype(float32, scale) + Normalize, batched by a DataLoader;
- shards: ShardDataModule's training pipeline (tar reading, shuffle buffer, the same augmentation,
  batching) with reduced-size JPEG decoding off and on (the default). A last row shows the same pipeline
  with normalize_on_device=True, which yields uint8 batches and leaves normalising to the GPU.

All but that last row produce the same thing: normalised float32 [B, 3, S, S] batches and int64 labels. The
timed passes are interleaved, so load from other processes hits all pipelines alike. The table reports
the best pass of each, in process CPU time (the per-core cost, robust on a shared machine) and in wall
clock.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import PIL
import simplejpeg
import torch
from PIL import Image, features
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos import write_photo_folder  # noqa: E402  (benchmarks/photos.py)

from convrnn.data.datamodule import ShardDataModule  # noqa: E402
from convrnn.data.imagenet import convert_imagenet  # noqa: E402
from convrnn.data.pipelines import collate_batch  # noqa: E402
from convrnn.data.skips import SkipRecorder, read_shards  # noqa: E402
from convrnn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize, TrainTransform  # noqa: E402


def imagefolder_pass(root: Path, size: int, batch: int) -> Callable[[], Iterable]:
    tf = v2.Compose(
        [
            v2.RandomResizedCrop(size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    loader = DataLoader(ImageFolder(str(root / "train"), transform=tf), batch_size=batch, shuffle=True)
    return lambda: loader


def shard_pass(
    shards: Path, size: int, batch: int, n: int, draft: bool, on_device: bool = False
) -> Callable[[], Iterable]:
    dm = ShardDataModule(
        train_shards=str(shards),
        batch_size=batch,
        num_workers=0,
        image_size=size,
        train_samples_per_epoch=n,
        draft_decode=draft,
        shuffle_buffer=1000,
        normalize_on_device=on_device,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    return lambda: loader


def time_pass(make: Callable[[], Iterable], size: int) -> tuple[float, float, int]:
    """One epoch: (CPU seconds of this process, wall seconds, samples)."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = 0
    for x, y in make():
        assert x.dtype in (torch.float32, torch.uint8) and x.shape[1:] == (3, size, size) and y.dtype == torch.int64
        n += len(y)
    return time.process_time() - c0, time.perf_counter() - t0, n


def best_per_item(fn: Callable[[], int], repeats: int) -> float:
    """Best over ``repeats`` calls of the process CPU seconds per item (``fn`` returns how many it handled)."""
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        n = fn()
        best = min(best, (time.process_time() - c0) / n)
    return best


def print_stages(work: Path, sizes: list[int], batch: int, repeats: int) -> None:
    """Where a shard sample's time goes, and the three full-scale JPEG decoders on the same photos."""
    urls = sorted(str(p) for p in (work / "shards").glob("*train*.tar"))
    samples = list(read_shards(iter([{"url": u} for u in urls]), recorder=SkipRecorder()))
    jpegs = [p.read_bytes() for p in sorted((work / "photos" / "train").glob("*/*"))]
    rows = [("read tar members (webdataset)", best_per_item(
        lambda: len(list(read_shards(iter([{"url": u} for u in urls]), recorder=SkipRecorder()))), repeats))]
    for size in sizes:
        tf = TrainTransform(size, rng=random.Random(0), normalize=False)
        rows.append((f"{size}: decode + crop + resize", best_per_item(lambda tf=tf: len([tf(s) for s in samples]),
                                                                      repeats)))
        out = [tf(s) for s in samples]
        norm = Normalize()

        def collate(out: list = out, norm: Normalize = norm) -> int:
            starts = range(0, len(out) - batch + 1, batch)
            for i in starts:
                collate_batch(out[i : i + batch], norm, False)
            return len(starts) * batch

        rows.append((f"{size}: collate + normalise", best_per_item(collate, repeats)))
    decoders = {
        "PIL (ImageFolder's loader)": lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB")),
        "torchvision decode_jpeg": lambda d: decode_jpeg(torch.frombuffer(bytearray(d), dtype=torch.uint8),
                                                         mode=ImageReadMode.RGB),
        "simplejpeg (shards)": lambda d: simplejpeg.decode_jpeg(d, colorspace="RGB"),
    }
    dec = dict.fromkeys(decoders, float("inf"))
    for _ in range(repeats):  # interleaved, like the pipelines
        for name, fn in decoders.items():
            dec[name] = min(dec[name], best_per_item(lambda fn=fn: len([fn(d) for d in jpegs]), 1))
    print(f"\nStages of the shard pipeline (CPU ms per sample, best of {repeats}):")
    for name, t in rows:
        print(f"  {name:<34} {1e3 * t:7.3f}")
    print(f"Full-scale JPEG decode of the {len(jpegs)} photos (CPU ms per image, best of {repeats}):")
    for name, t in dec.items():
        print(f"  {name:<34} {1e3 * t:7.3f}   {t / dec['simplejpeg (shards)']:.2f}x simplejpeg")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=400, help="number of photos")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 128], help="output sizes")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="timed passes per pipeline (best is reported)")
    p.add_argument("--workdir", default=None, help="keep the photos and shards here (default: a temp dir)")
    p.add_argument("--stages", action="store_true", help="also time each stage and the JPEG decoders")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        stats = write_photo_folder(work / "photos", args.n)
        convert_imagenet(work / "photos", work / "shards", splits=["train"], shard_size=64, progress=False)
        print(
            f"{stats['n']} photos, mean {stats['mean_wh'][0]}x{stats['mean_wh'][1]} px, JPEG q90 "
            f"{stats['mean_kb']:.0f} KB (min {stats['min_kb']:.0f}, max {stats['max_kb']:.0f}); "
            f"photos + shards made in {time.perf_counter() - t0:.1f} s"
        )
        print(
            f"torch {torch.__version__} (1 thread), Pillow {PIL.__version__}, "
            f"libjpeg-turbo {features.version('jpg')}, num_workers=0, batch {args.batch}\n"
        )
        rows = []
        for size in args.sizes:
            pipes = {
                "ImageFolder + transforms.v2": imagefolder_pass(work / "photos", size, args.batch),
                "shards, full decode": shard_pass(work / "shards", size, args.batch, args.n, draft=False),
                "shards (default)": shard_pass(work / "shards", size, args.batch, args.n, draft=True),
                "shards, uint8 out *": shard_pass(
                    work / "shards", size, args.batch, args.n, draft=True, on_device=True
                ),
            }
            cpu = dict.fromkeys(pipes, float("inf"))
            wall = dict.fromkeys(pipes, float("inf"))
            for make in pipes.values():  # warm-up: page cache, lazy initialisation
                time_pass(make, size)
            for _ in range(args.repeats):
                for name, make in pipes.items():
                    c, w, n = time_pass(make, size)
                    cpu[name], wall[name] = min(cpu[name], c / n), min(wall[name], w / n)
            base_c, base_w = cpu["ImageFolder + transforms.v2"], wall["ImageFolder + transforms.v2"]
            rows += [(size, k, cpu[k], base_c / cpu[k], wall[k], base_w / wall[k]) for k in pipes]

        print(f"{'':36}{'------ CPU time (per core) ------':<34} {'--- wall clock ---'}")
        head = f"{'size':>4}  {'pipeline':<28} {'samples/s':>10} {'ms/sample':>10} {'vs IF':>8}"
        print(f"{head}   {'samples/s':>10} {'vs IF':>8}")
        for size, name, c, rc, w, rw in rows:
            line = f"{size:>4}  {name:<28} {1 / c:>10.0f} {1e3 * c:>10.2f} {rc:>7.2f}x"
            print(f"{line}   {1 / w:>10.0f} {rw:>7.2f}x")
        print(
            "\nIF = ImageFolder. Per core = process CPU time, which excludes time lost to other processes.\n"
            "shards (default) = reduced-size JPEG decoding where it pays off (1/4, 1/8 scale) + simplejpeg's\n"
            "JPEG decoder at full scale. * normalize_on_device=True: uint8 batches, normalised later on the GPU\n"
            "(not the same output as the other rows; shown because it is the setting for GPU training)."
        )
        if args.stages:
            print_stages(work, args.sizes, args.batch, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
