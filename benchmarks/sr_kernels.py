"""x2 super-resolution networks on held-out photos shrunk in several ways, each told each kernel.

How a small photo was made changes what a super-resolution network must add: block means
(``area``, the recipes' default), antialiased bicubic (image editors, PIL, MATLAB),
Lanczos, antialiased bilinear, scikit-image's Gaussian-filtered ``rescale``, or bicubic without
antialiasing (aliased). For each way, the mean PSNR gain over bicubic interpolation of each
network on the held-out photos (grayscale, whole, saved to 8 bits as the CLI reads them, with the
commands' two views). A kernel-conditioned network (``kernel_condition``) is run once per kernel
it can be told (``MODEL:area``, ``MODEL:bicubic``); others ignore the kernel. Usage::

    python benchmarks/sr_kernels.py upscale2 runs/upscale2:area runs/upscale2:bicubic --threads 2

The last line of ``--json`` output is ``{shrink: {model: dB over bicubic}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.transform import rescale

from aebook.metrics import psnr
from aebook.restoration.classical import upscale_bicubic
from aebook.restoration.damage import DOWNSCALE_KERNELS, as_eight_bit, crop_to_multiple, downsample
from aebook.restoration.evaluate import load_held_out
from aebook.restoration.inference import DEFAULT_VIEWS, restore_image
from aebook.restoration.nets import load_restorer
from aebook.zoo import resolve


def _pil(img: np.ndarray, resample: int) -> np.ndarray:
    small = Image.fromarray(img.astype(np.float32), mode="F").resize((img.shape[1] // 2, img.shape[0] // 2), resample)
    return np.asarray(small, dtype=np.float32)


#: The ways of shrinking a photo by 2, by name.
SHRINKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "block means (area)": lambda x: downsample(x, 2),
    "antialiased bicubic": lambda x: downsample(x, 2, "bicubic"),
    "PIL bicubic": lambda x: _pil(x, Image.BICUBIC),
    "PIL Lanczos": lambda x: _pil(x, Image.LANCZOS),
    "PIL bilinear (antialiased)": lambda x: _pil(x, Image.BILINEAR),
    "skimage rescale (antialiased)": lambda x: rescale(x, 0.5, anti_aliasing=True).astype(np.float32),
    "bicubic, no antialiasing": lambda x: F.interpolate(torch.from_numpy(x)[None, None], scale_factor=0.5,
                                                        mode="bicubic", align_corners=False)[0, 0].numpy(),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL[:KERNEL]",
                        help="x2 networks (shipped names or run folders), with the kernel to tell them")
    parser.add_argument("--crop", type=int, default=None, help="centre crops of this size (default: whole photos)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    nets = {}
    try:
        for spec in args.models:
            name, _, told = spec.partition(":")
            if told and told not in DOWNSCALE_KERNELS:
                raise ValueError(f"{spec}: the kernel must be one of {', '.join(DOWNSCALE_KERNELS)}, got {told!r}")
            model, _, _ = load_restorer(resolve(name), task="upscale2")
            nets[spec] = (model.eval(), told or None)
    except (FileNotFoundError, ValueError) as err:
        print(f"sr_kernels: error: {err}", file=sys.stderr)
        return 2
    photos = load_held_out(gray=True, crop=args.crop)
    result: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for shrink_name, shrink in SHRINKS.items():
            gains: dict[str, list[float]] = {spec: [] for spec in nets}
            for img in photos.values():
                clean = crop_to_multiple(img, 2)
                small = as_eight_bit(np.clip(shrink(clean), 0, 1))
                base = psnr(clean, upscale_bicubic(small, 2))
                for spec, (model, told) in nets.items():
                    out = restore_image(model, "upscale2", small, views=DEFAULT_VIEWS, kernel=told)
                    gains[spec].append(psnr(clean, out) - base)
            result[shrink_name] = {spec: round(float(np.mean(g)), 3) for spec, g in gains.items()}
            print(f"{shrink_name}: " + "  ".join(f"{s} {g:+.3f}" for s, g in result[shrink_name].items()), flush=True)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
