"""Denoisers side by side on the held-out photos: PSNR at several noise levels, one pass.

The comparison behind chapter 4.4's goal, as a script for deciding between weights (e.g. the
output of a GPU training stage against the shipped ones) without building the chapter. Every
method sees the same noise (chapter 4.4's seeds: image ``i`` gets seed ``i``), on the whole
grayscale :data:`aebook.data.HELD_OUT_PHOTOS` (``--crop``: their centre crops).

Usage::

    python benchmarks/denoise_eval.py                               # the shipped denoiser
    python benchmarks/denoise_eval.py denoise /tmp/gpu/denoise --json   # shipped vs a run folder
    python benchmarks/denoise_eval.py denoise --bm3d --ensemble --json  # with BM3D and the self-ensemble

Each MODEL is a shipped restorer's name or a run folder. ``--bm3d`` adds BM3D (the ``bm3d``
package, slow: about 10 s per 512x512 image) as the reference; ``--ensemble`` adds each
network's 8-fold self-ensemble. The last line of ``--json`` output is one JSON object:
``{"psnr": {method: {sigma: mean dB}}, "per_image": {method: {sigma: {image: dB}}},
"gain_over_bm3d": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from aebook.zoo import resolve
from aebook.restoration.inference import restore_image
from aebook.restoration.nets import load_restorer
from aebook.restoration.evaluate import evaluate_methods, load_held_out, make_damage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["denoise"], help="shipped names or run folders")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15.0, 25.0, 50.0])
    parser.add_argument("--bm3d", action="store_true", help="add BM3D (slow) as the reference")
    parser.add_argument("--ensemble", action="store_true", help="add each network's 8-fold self-ensemble")
    parser.add_argument("--crop", type=int, default=None, help="centre crops of this size (default: whole photos)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = {}
    try:
        for name in args.models:
            model, _, _ = load_restorer(resolve(name), device=args.device, task="denoise")
            methods[name] = (lambda d, m=model: restore_image(m, "denoise", d.damaged, sigma=d.sigma))
            if args.ensemble:
                methods[f"{name} (8-fold ensemble)"] = (
                    lambda d, m=model: restore_image(m, "denoise", d.damaged, sigma=d.sigma, ensemble=True))
        if args.bm3d:
            from aebook.restoration.classical import denoise_bm3d

            methods["BM3D"] = lambda d: denoise_bm3d(d.damaged, d.sigma)
        photos = load_held_out(gray=True, crop=args.crop)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"denoise_eval: error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    psnr: dict[str, dict[str, float]] = {m: {} for m in methods}
    per_image: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    for sigma in args.sigmas:
        ev = evaluate_methods(photos, make_damage("noise", sigma=sigma), methods, score_damaged=False)
        means, images = ev.means(), ev.per_image("psnr")
        for m in methods:
            psnr[m][f"{sigma:g}"] = round(means[m]["psnr"], 4)
            per_image[m][f"{sigma:g}"] = {n: round(v, 4) for n, v in images[m].items()}
        print(f"sigma {sigma:g}: " + "  ".join(f"{m} {means[m]['psnr']:.3f}" for m in methods), flush=True)
    result = {"benchmark": "denoise_eval", "images": list(photos), "crop": args.crop, "psnr": psnr,
              "per_image": per_image, "seconds": round(time.perf_counter() - start, 1)}
    if args.bm3d:
        result["gain_over_bm3d"] = {m: {s: round(v - psnr["BM3D"][s], 4) for s, v in row.items()}
                                    for m, row in psnr.items() if m != "BM3D"}
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
