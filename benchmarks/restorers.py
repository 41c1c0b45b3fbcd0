"""The judged restoration targets, side by side with their classical baselines, in one pass.

For each task, the networks named on the command line (shipped names or run folders) and the
classical method the book measures them against, on the held-out photos (grayscale, whole, the
chapters' damage with image ``i`` seeded by ``i``):

=========  ==========================================  ====================
task       damage                                      baseline
=========  ==========================================  ====================
denoise    Gaussian noise, sigma 25 (``--sigma``)       BM3D (``--bm3d``; slow)
inpaint    25 % of the 8 x 8 blocks missing             biharmonic inpainting
upscale2   2 x 2 block means                            bicubic interpolation
upscale4   4 x 4 block means                            bicubic interpolation
enhance    exposure and colour cast (colour photos)     histogram equalisation (global)
=========  ==========================================  ====================

and, for the denoisers, the CPU time of ``restore_image`` on a 512 x 512 photo, measured
interleaved (``time.process_time``, best of ``--repeats``), so that two networks are compared in
the same conditions. ``--eight-bit`` gives every method the damaged image as an 8-bit file holds
it (clipped to [0, 1], rounded to 256 levels), which is how ``aebook denoise`` and the other
commands receive it; without it the noise is the literature's unclipped Gaussian.
``--downscale bicubic`` shrinks the super-resolution inputs with antialiased bicubic (as image
editors and the super-resolution benchmarks do) instead of block means; a kernel-conditioned
network is told that kernel, or the one ``--tell`` names (the cost of a wrong ``aebook upscale
--kernel``). The networks run with
the commands' default views (``DEFAULT_VIEWS``: the image and its half turn, averaged); ``--views
1`` measures one pass, the network alone. ``--unseen`` measures on two more grayscale photos
that no chapter uses and no network trained on, PyWavelets' ``ascent`` and ``aero`` (512 x 512),
instead of the held-out photos: a second opinion on a change chosen with the held-out photos
(enhance, which needs colour, is refused with it). ``--patterns`` measures on repeated patterns
instead: for each held-out photo, two 256 x 256 images of a small piece of it (periods of 5 to 20
pixels) repeated along axes turned by a random angle (:func:`aebook.synthetic.repeat_tile`; fixed
seed), the stripes and tiles that BM3D denoises by stacking their repeats. Usage::

    python benchmarks/restorers.py denoise=denoise denoise=/tmp/stage/denoise --bm3d --json
    python benchmarks/restorers.py denoise=denoise --bm3d --eight-bit
    python benchmarks/restorers.py denoise=denoise --bm3d --unseen
    python benchmarks/restorers.py denoise=denoise --bm3d --patterns
    python benchmarks/restorers.py upscale2=upscale2 --downscale bicubic --eight-bit
    python benchmarks/restorers.py inpaint=inpaint upscale2=upscale2 enhance=enhance --threads 2

Each argument is ``TASK=MODEL``. The last line of ``--json`` output is one JSON object:
``{"psnr": {task: {method: mean dB}}, "ssim": {task: {method: mean SSIM}},
"gain": {task: {model: dB over the baseline}},
"cpu_seconds": {model: s}, "per_image": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from aebook.restoration.classical import denoise_bm3d, equalize_histogram, inpaint_biharmonic, upscale_bicubic
from aebook.restoration.damage import DOWNSCALE_KERNELS
from aebook.synthetic import repeat_tile
from aebook.zoo import resolve
from aebook.restoration.inference import DEFAULT_VIEWS, VIEW_COUNTS, restore_image
from aebook.restoration.nets import load_restorer
from aebook.restoration.evaluate import center_crop, evaluate_methods, load_held_out, make_damage

TASKS = ("denoise", "inpaint", "upscale2", "upscale4", "enhance")


def _network(model: torch.nn.Module, task: str, views: int = 1, tell: str | None = None):
    if task == "denoise":
        return lambda d: restore_image(model, task, d.damaged, sigma=d.sigma, views=views)
    if task == "inpaint":
        return lambda d: restore_image(model, task, d.damaged, mask=d.mask, views=views)
    if task.startswith("upscale"):  # a kernel-conditioned network is told the kernel that shrank the photo
        return lambda d: restore_image(model, task, d.damaged, views=views, kernel=tell or d.kernel)
    return lambda d: restore_image(model, task, d.damaged, views=views)


def cpu_seconds(models: dict[str, torch.nn.Module], image: np.ndarray, repeats: int = 3,
                views: int = 1) -> dict[str, float]:
    """Best-of-``repeats`` CPU time of denoising ``image`` at sigma 25 with each model, interleaved."""
    best = {name: float("inf") for name in models}
    for name, model in models.items():  # one warm-up call each
        restore_image(model, "denoise", image, sigma=25, views=views)
    for _ in range(repeats):
        for name, model in models.items():
            start = time.process_time()
            restore_image(model, "denoise", image, sigma=25, views=views)
            best[name] = min(best[name], time.process_time() - start)
    return {name: round(t, 3) for name, t in best.items()}


def unseen_photos(crop: int | None = None) -> dict[str, np.ndarray]:
    """PyWavelets' grayscale ``ascent`` and ``aero`` in [0, 1]: in no training set and no chapter."""
    import pywt  # a dependency of aebook (the noise estimate of ``--sigma auto``)

    return {name: center_crop(getattr(pywt.data, name)().astype(np.float32) / 255.0, crop)
            for name in ("ascent", "aero")}


def pattern_photos(crop: int | None = None, size: int = 256, per_photo: int = 2) -> dict[str, np.ndarray]:
    """``per_photo`` repeated-pattern images (``size`` x ``size``, in [0, 1]) of each held-out photo:
    a piece of it with periods of 5 to 20 pixels and some contrast (standard deviation at least
    0.05), repeated along axes turned by a random angle (fixed seed)."""
    rng = np.random.default_rng(2026)
    dy, dx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = {}
    for name, photo in load_held_out(gray=True).items():
        for k in range(per_photo):
            while True:
                py, px = rng.integers(5, 21, 2)
                ty, tx = rng.integers(photo.shape[0] - py + 1), rng.integers(photo.shape[1] - px + 1)
                tile = photo[ty : ty + py, tx : tx + px]
                if tile.std() >= 0.05:
                    break
            image = np.clip(repeat_tile(tile, dy, dx, rng.uniform(0, np.pi)), 0.0, 1.0)
            out[f"{name} pattern {k + 1}"] = center_crop(image, crop)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="TASK=MODEL", help="e.g. denoise=denoise inpaint=runs/inpaint")
    parser.add_argument("--sigma", type=float, default=25.0, help="denoising noise level (default: 25)")
    parser.add_argument("--bm3d", action="store_true", help="add BM3D, the denoisers' baseline (slow)")
    parser.add_argument("--eight-bit", action="store_true",
                        help="damaged inputs as an 8-bit file holds them (clipped, rounded), as the CLI reads them")
    parser.add_argument("--downscale", choices=DOWNSCALE_KERNELS, default="area",
                        help="how the super-resolution inputs are shrunk (default: area, i.e. block means)")
    parser.add_argument("--tell", choices=DOWNSCALE_KERNELS, default=None,
                        help="tell kernel-conditioned super-resolution networks this kernel instead of the one "
                        "that shrank the photos: the cost of a wrong 'aebook upscale --kernel'")
    parser.add_argument("--views", type=int, choices=VIEW_COUNTS, default=DEFAULT_VIEWS,
                        help="rotated/flipped views each network averages, as the commands' --views "
                        "(default: %(default)s, the commands' default)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--unseen", action="store_true",
                       help="PyWavelets' ascent and aero (never trained on, in no chapter) instead of the held-out photos")
    where.add_argument("--patterns", action="store_true",
                       help="repeated patterns cut from the held-out photos instead of the photos themselves")
    parser.add_argument("--crop", type=int, default=None, help="centre crops of this size (default: whole photos)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (default: 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    by_task: dict[str, dict[str, torch.nn.Module]] = {}
    try:
        for item in args.models:
            task, sep, name = item.partition("=")
            if not sep or task not in TASKS:
                raise ValueError(f"expected TASK=MODEL with TASK one of {', '.join(TASKS)}, got {item!r}")
            model, _, _ = load_restorer(resolve(name), task=task)
            by_task.setdefault(task, {})[name] = model.eval()
    except (FileNotFoundError, ValueError) as err:
        print(f"restorers: error: {err}", file=sys.stderr)
        return 2
    if (args.unseen or args.patterns) and "enhance" in by_task:
        which = "--unseen photos" if args.unseen else "--patterns"
        print(f"restorers: error: {which} are grayscale; enhance needs colour photos", file=sys.stderr)
        return 2
    if args.unseen:
        photos = unseen_photos(args.crop)
    elif args.patterns:
        photos = pattern_photos(args.crop)
    else:
        photos = load_held_out(gray=True, crop=args.crop)
    colour_photos = load_held_out(gray=False, crop=args.crop) if "enhance" in by_task else {}
    baselines = {"denoise": ("BM3D", lambda d: denoise_bm3d(d.damaged, d.sigma)),
                 "inpaint": ("biharmonic", lambda d: inpaint_biharmonic(d.damaged, d.mask)),
                 "upscale2": ("bicubic", lambda d: upscale_bicubic(d.damaged, 2)),
                 "upscale4": ("bicubic", lambda d: upscale_bicubic(d.damaged, 4)),
                 "enhance": ("histogram eq.", lambda d: equalize_histogram(d.damaged, "global"))}
    eight = {"eight_bit": args.eight_bit}
    damages = {"denoise": make_damage("noise", sigma=args.sigma, **eight),
               "inpaint": make_damage("blocks", fraction=0.25, **eight),
               "upscale2": make_damage("downsample", scale=2, kernel=args.downscale, **eight),
               "upscale4": make_damage("downsample", scale=4, kernel=args.downscale, **eight), "enhance": make_damage("exposure", **eight)}
    result: dict = {"benchmark": "restorers", "images": list(photos), "crop": args.crop, "eight_bit": args.eight_bit,
                    "downscale": args.downscale, "told": args.tell or args.downscale,
                    "views": args.views,
                    "psnr": {}, "ssim": {}, "gain": {},
                    "per_image": {}}
    start = time.perf_counter()
    with torch.inference_mode():
        for task, models in by_task.items():
            methods = {name: _network(m, task, args.views, args.tell) for name, m in models.items()}
            base_name, base = baselines[task]
            if task != "denoise" or args.bm3d:
                methods[base_name] = base
            ev = evaluate_methods(colour_photos if task == "enhance" else photos, damages[task], methods,
                                  score_damaged=False)
            means = ev.means()
            result["psnr"][task] = {m: round(means[m]["psnr"], 4) for m in methods}
            result["ssim"][task] = {m: round(means[m]["ssim"], 4) for m in methods}
            result["per_image"][task] = {m: {n: round(v, 4) for n, v in row.items()}
                                         for m, row in ev.per_image("psnr").items()}
            if base_name in methods:
                result["gain"][task] = {m: round(means[m]["psnr"] - means[base_name]["psnr"], 4) for m in models}
            print(f"{task}: " + "  ".join(f"{m} {means[m]['psnr']:.3f} dB / {means[m]['ssim']:.4f}" for m in methods),
                  flush=True)
        if "denoise" in by_task:
            image = load_held_out(gray=True, names=["camera"])["camera"]
            result["cpu_seconds"] = cpu_seconds(by_task["denoise"], image, args.repeats, args.views)
            print("CPU seconds to denoise the 512 x 512 cameraman:", result["cpu_seconds"], flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
