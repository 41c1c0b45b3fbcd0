"""Rate-distortion of the learned codec (aebook.codecs.conv) against JPEG on the held-out photos.

Every point is a real file: the codec's bits per pixel are the size of the whole
``.aeb`` file (header, Huffman table, payload, CRC) and JPEG's the size of Pillow's
file with ``optimize=True``; PSNR and SSIM are measured on the decoded images. The
images are the grayscale :data:`aebook.data.HELD_OUT_PHOTOS`, which no model trains on
(``--quick``: their 128x128 centre crops).

Usage::

    python benchmarks/codec_rd.py RUN_DIR --json                 # a codec saved by save_codec
    python benchmarks/codec_rd.py --train-minutes 3 --save /tmp/codec --quick --json
    python benchmarks/codec_rd.py --epochs 40 --n-patches 40000 --device cuda --save runs/codec --json

``--train-minutes`` times a short trial run first and picks the number of epochs that
fits the budget (the learning-rate schedule needs it in advance). The last line of
``--json`` output is one JSON object with both curves and PSNR at 0.25/0.5/1 bpp.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from aebook.baselines import jpeg_rate_distortion
from aebook.codecs.coding import load_codec, rate_distortion, save_codec
from aebook.codecs.conv import QUALITY_STEPS
from aebook.codecs.training import train_codec
from aebook.metrics import value_at_bpp
from aebook.data import HELD_OUT_PHOTOS, load_photo
from aebook.train import TrainConfig, fit

TARGET_BPP = (0.25, 0.5, 1.0)
JPEG_QUALITIES = (2, 5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 95)


def held_out_images(quick: bool) -> list[np.ndarray]:
    """Grayscale held-out photos; centre 128x128 crops when ``quick``."""
    images = []
    for name in HELD_OUT_PHOTOS:
        img = load_photo(name, gray=True)
        if quick:
            y, x = (img.shape[0] - 128) // 2, (img.shape[1] - 128) // 2
            img = img[y : y + 128, x : x + 128]
        images.append(np.ascontiguousarray(img))
    return images


def epochs_for_budget(args: argparse.Namespace) -> int:
    """Time a short trial (its second epoch: the first pays start-up costs), then return
    how many epochs of ``n_patches`` fit the remaining budget."""
    from aebook.codecs.conv import ConvCodec

    trial = torch.rand(256, 1, args.patch_size, args.patch_size)
    codec = ConvCodec(1, args.latent_channels, args.widths, args.lmbda, args.entropy_model)
    cfg = TrainConfig(epochs=2, batch_size=args.batch_size, device=args.device, progress=False)
    start = time.perf_counter()
    per_patch = fit(codec, trial, cfg).seconds[-1] / len(trial)
    budget = 60 * args.train_minutes - (time.perf_counter() - start)
    return max(1, int(budget / (per_patch * args.n_patches)))


def _finite(obj):
    """Replace NaN by None so that the output is strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and obj != obj else obj


def table(title: str, curve: list[dict], columns: tuple[str, ...]) -> str:
    lines = [title, "  ".join(f"{c:>8}" for c in columns)]
    for p in curve:
        lines.append("  ".join(f"{p[c]:8.4g}" if isinstance(p[c], float) else f"{p[c]:>8}" for c in columns))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?", help="codec run folder written by save_codec (omit to train one)")
    parser.add_argument("--train-minutes", type=float, default=None, help="train for about this long (default: off)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs when training without --train-minutes (default: 10)")
    parser.add_argument("--n-patches", type=int, default=8000, help="training patches (default: 8000)")
    parser.add_argument("--patch-size", type=int, default=32, help="training patch size (default: 32)")
    parser.add_argument("--latent-channels", type=int, default=8, help="latent channels (default: 8)")
    parser.add_argument("--widths", type=int, nargs=3, default=(32, 48, 64), help="stage widths (default: 32 48 64)")
    parser.add_argument("--lmbda", type=float, default=0.004, help="rate-proxy weight (default: 0.004)")
    parser.add_argument("--entropy-model", choices=("proxy", "factorized"), default="proxy",
                        help="training rate term: the fixed proxy or a learned factorized prior (default: proxy)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--save", default=None, help="write the trained codec to this run folder")
    parser.add_argument("--quick", action="store_true", help="evaluate on 128x128 centre crops")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.run_dir is None) == (args.train_minutes is None and args.save is None):
        parser.error("give either RUN_DIR or training options (--train-minutes and/or --save)")

    info: dict = {}
    if args.run_dir:
        codec, config = load_codec(args.run_dir)
        info = {"run_dir": args.run_dir, "train": config.get("train", {})}
    else:
        epochs = epochs_for_budget(args) if args.train_minutes else args.epochs
        start = time.perf_counter()
        codec, history = train_codec(args.n_patches, args.patch_size, epochs, args.latent_channels, args.lmbda,
                                     args.seed, args.device, args.widths, args.batch_size, args.lr,
                                     entropy_model=args.entropy_model)
        seconds = time.perf_counter() - start
        train = {"entropy_model": args.entropy_model, "n_patches": args.n_patches, "patch_size": args.patch_size, "epochs": epochs,
                 "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "seconds": round(seconds, 1),
                 "threads": torch.get_num_threads(), "final_mse": history.stats[-1]["mse"],
                 "final_bpp_proxy": history.stats[-1]["bpp_proxy"]}
        info = {"train": train}
        print(f"trained {epochs} epochs on {args.n_patches} patches of {args.patch_size}px in {seconds:.0f} s")
        if args.save:
            save_codec(args.save, codec.cpu(), history.to_dict(), train)
            info["run_dir"] = args.save
    codec = codec.cpu().eval()

    images = held_out_images(args.quick)
    start = time.perf_counter()
    ours = rate_distortion(codec, images, tuple(QUALITY_STEPS))
    jpeg = jpeg_rate_distortion(images, JPEG_QUALITIES)
    seconds = time.perf_counter() - start
    print(table(f"learned codec ({codec.model_id}, {len(images)} held-out photos)", ours,
                ("quality", "step", "bpp", "psnr", "ssim")))
    print(table("JPEG (Pillow, optimize=True)", jpeg, ("quality", "bpp", "psnr", "ssim")))
    at = {f"{b:g}": {"codec_psnr": value_at_bpp(ours, b), "jpeg_psnr": value_at_bpp(jpeg, b),
                     "codec_ssim": value_at_bpp(ours, b, "ssim"), "jpeg_ssim": value_at_bpp(jpeg, b, "ssim")}
          for b in TARGET_BPP}
    print("PSNR (dB) at equal rate (nan = outside the curve's range):")
    for b, v in at.items():
        print(f"  {b:>5} bpp: codec {v['codec_psnr']:6.2f}   JPEG {v['jpeg_psnr']:6.2f}")
    print(f"evaluation took {seconds:.1f} s")
    if args.json:
        result = {"quick": args.quick, "model_id": codec.model_id, "config": codec.config, **info,
                  "codec": ours, "jpeg": jpeg, "at_bpp": at}
        print(json.dumps(_finite(result)))


if __name__ == "__main__":
    main()
