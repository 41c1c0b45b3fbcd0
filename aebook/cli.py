"""The ``aebook`` command (also ``python -m aebook``).

``aebook train``    train a model on a dataset and write a run folder.
``aebook sample``   new images from a ``vae``, ``vqvae`` or ``latent-diffusion`` run (chapter 4.2).
``aebook evaluate`` PSNR/SSIM of a run folder on a split, optionally against PCA.
``aebook compress`` an image into an ``.aeb`` file with a learned codec (chapter 5.2).
``aebook decompress`` an ``.aeb`` file back into an image.
``aebook train-restorer`` train a restoration network (chapter 4).
``aebook denoise`` / ``inpaint`` / ``upscale`` / ``enhance`` restore an image file.

Bad input (unknown names, missing folders or files, corrupted checkpoints, numbers
out of range, a flag the chosen model does not use, a malformed command line, an output
that would overwrite the input or a foreign folder, an existing output without
``--overwrite``, a file declaring more than ``--max-pixels`` pixels, any error of the
operating system) prints one line ``aebook: error: ...`` to stderr and exits with code 2,
having written and changed nothing. Every flag is checked before any work starts.

The library's modules are imported as modules (``datasets.load_dataset``, not ``load_dataset``):
the header shows what each command depends on, and each call goes through the module it names.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn, Sequence

import numpy as np
import torch

from aebook import __version__, baselines, checkpoint, generators, guards, imageio, metrics, models, runtime, zoo
from aebook import data as datasets
from aebook import train as training
from aebook.codecs import bitstream, coding
from aebook.restoration import damage, inference, nets, tasks
from aebook.restoration import training as restorer_training

EXIT_BAD_INPUT = 2
#: Models whose ``train`` writes a two-stage generator (autoencoder + prior), and the most ``sample --n``.
TWO_STAGE_MODELS, MAX_SAMPLES = ("vqvae", "latent-diffusion"), 100_000
#: The suffix ``compress`` requires of its output (the bytes are an ``.aeb`` file, not an image).
AEB_SUFFIX = ".aeb"


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``aebook: error: ...``, and exit code 2.

    argparse's own ``error`` prints the whole usage and then ``aebook denoise: error: ...``;
    ``--help`` still prints the full help.
    """

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        text = " ".join(str(message).split())
        self.exit(EXIT_BAD_INPUT, f"aebook: error: {text} (see '{self.prog} --help')\n")


def _add_overwrite(p: argparse.ArgumentParser, what: str = "output") -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace the {what} if it exists (default: refuse)")


def _add_data_args(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--dataset", default=default, help=f"dataset name: digits, mnist_sample (5,000 real MNIST digits, embedded), mnist, fashion_mnist, cifar10, "
                   f"photos, photos_rgb, folder (default: {default or 'the one the run was trained on'})")
    p.add_argument("--data-dir", default=None, help="torchvision-layout folder or your image folder "
                   "(default: $AEBOOK_DATA or ~/.cache/aebook)")
    p.add_argument("--download", action="store_true", help="allow downloading a missing torchvision dataset (default: off)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (default: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="aebook", description="Autoencoders for images: train and evaluate.")
    parser.add_argument("--version", action="version", version=f"aebook {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    t = sub.add_parser("train", help="train a model and write RUN_DIR/{model.safetensors,config.json,history.json}")
    _add_data_args(t, "digits")
    t.add_argument("--model", default="conv", help="linear, mlp, conv or vae, or a two-stage generator: vqvae "
                   "(VQ-VAE + PixelCNN prior) or latent-diffusion (autoencoder + flow-matching prior over its "
                   "codes), which train both stages into one run folder (default: conv)")
    t.add_argument("--prior-epochs", type=int, default=None, help="vqvae and latent-diffusion only (refused for "
                   "the other models): epochs of the second stage; --epochs trains the autoencoder (default: the "
                   "PixelCNN --epochs, the flow prior 40 x --epochs: passes over the codes cost far less than "
                   "passes over the images)")
    t.add_argument("--latent-dim", type=int, default=None, help="every model: the code size of linear, mlp, conv, "
                   "vae and latent-diffusion, the length of each codebook vector for vqvae (default: 16); "
                   "latent-diffusion defaults to 32: its samples are never better than its autoencoder's "
                   "reconstructions")
    t.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    t.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate; for vqvae and latent-diffusion, of "
                   "the autoencoder stage (default: the model's own: 1e-2 for mlp, conv, vae and those autoencoders, "
                   "which use BatchNorm; 2e-3 for linear)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto = CUDA > MPS > CPU)")
    t.add_argument("--compile", action="store_true", help="use torch.compile (default: off)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--overwrite", action="store_true", help="replace the run already in --out (default: refuse)")

    g = sub.add_parser("sample", help="draw new images from a vae, vqvae or latent-diffusion run folder")
    g.add_argument("run_dir", help="run folder written by 'aebook train --model vae|vqvae|latent-diffusion'")
    g.add_argument("--n", type=int, required=True, help=f"number of images, 1 to {MAX_SAMPLES}")
    g.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same images (default: 0)")
    g.add_argument("--out", required=True, help="file to write: .npy holds a float32 array (N, C, H, W) with values "
                   "in [0, 1]; .png a grid of the images")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    _add_overwrite(g, "--out file")

    e = sub.add_parser("evaluate", help="PSNR/SSIM of a run on a split; prints JSON on the last line")
    e.add_argument("run_dir", help="run folder written by 'aebook train'")
    _add_data_args(e, None)
    e.add_argument("--split", default="test", choices=["train", "test"], help="split to evaluate (default: test)")
    e.add_argument("--baseline", default=None, choices=["pca"], help="also evaluate PCA with the same latent size")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")

    c = sub.add_parser("compress", help="compress a grayscale image into an .aeb file (learned codec + "
                       "entropy coding: Huffman or ANS)")
    c.add_argument("input", help="PNG or JPEG image")
    c.add_argument("output", help="the .aeb file to write (its name must end in .aeb)")
    c.add_argument("--quality", type=int, default=4, help="1..8, higher = more bits and a better image (default: 4)")
    c.add_argument("--model", default="kltcodec", help="shipped pretrained codec name (kltcodec: block KLT + ANS "
                   "+ decoder network; codec: convolutional autoencoder + Huffman) or a codec run folder "
                   "(written by benchmarks/codec_rd.py --save) (default: %(default)s)")
    _add_overwrite(c)
    _add_max_pixels(c)

    d = sub.add_parser("decompress", help="decompress an .aeb file into an image")
    d.add_argument("input", help="the .aeb file")
    d.add_argument("output", help="image to write (.png recommended)")
    d.add_argument("--model", default=None, help="the codec the file was compressed with: a shipped name "
                   "or a run folder (default: the shipped codec whose id the file names)")
    _add_overwrite(d)
    _add_max_pixels(d)

    r = sub.add_parser("train-restorer", help="train a restoration network on the training photos")
    r.add_argument("task", help="denoise, inpaint, inpaint_blind, upscale2, upscale4 or enhance")
    r.add_argument("--epochs", type=int, default=10, help="epochs (default: 10)")
    r.add_argument("--n-patches", type=int, default=20000, help="training patches (default: 20000)")
    r.add_argument("--patch-size", type=int, default=48, help="patch size in pixels (default: 48)")
    r.add_argument("--depth", type=int, default=17, help="convolutions (default: 17)")
    r.add_argument("--width", type=int, default=64, help="feature channels (default: 64)")
    r.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    r.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    r.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    r.add_argument("--out", required=True, help="run folder to write")
    r.add_argument("--overwrite", action="store_true", help="replace the run already in --out (default: refuse)")

    model_help = "run folder of 'aebook train-restorer', or a shipped pretrained name (default: {})"
    for name, helptext in (("denoise", "remove Gaussian noise"), ("inpaint", "fill the pixels a mask marks as missing"),
                           ("upscale", "super-resolution x2 or x4"), ("enhance", "fix exposure, contrast and colour")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("input", help="PNG or JPEG image, grayscale or colour")
        if name == "inpaint":
            q.add_argument("mask", help="image of the same size; white = missing pixels")
        q.add_argument("output", help="image to write (same mode as the input)")
        if name == "denoise":
            q.add_argument("--sigma", type=_sigma_value, default=25.0, help="noise level on the 0-255 scale, or "
                           "'auto' to estimate it from the image (blind denoising) (default: 25)")
        if name == "upscale":
            q.add_argument("--scale", type=int, required=True, choices=[2, 4], help="2 or 4")
            q.add_argument("--kernel", choices=damage.DOWNSCALE_KERNELS, default=inference.DEFAULT_KERNEL,
                           help="how the small image was shrunk: 'area' (block means) or 'bicubic' (antialiased, "
                           "as image editors shrink); only a network trained with the kernel as an input "
                           "(kernel_condition) uses it; the shipped ones do not (default: %(default)s)")
        q.add_argument("--model", default=name if name != "upscale" else None, help=model_help.format(
            name if name != "upscale" else "upscale2 or upscale4, chosen by --scale"))
        q.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
        q.add_argument("--tile", type=int, default=512, help="process the image in tiles of this many pixels "
                       "(bounded memory; results do not depend on it) (default: %(default)s)")
        q.add_argument("--views", type=int, choices=inference.VIEW_COUNTS, default=inference.DEFAULT_VIEWS,
                       help="restore this many rotated or flipped copies of the image and average them: "
                       "1 is the network alone; each view adds the time of one pass (default: %(default)s, the "
                       "image and its half turn)")
        q.add_argument("--ensemble", dest="views", action="store_const", const=8,
                       help="all 8 rotations and flips, the same as --views 8: a little better, 8 passes")
        _add_overwrite(q)
        _add_max_pixels(q)
    return parser


def _sigma_value(text: str) -> float | str:
    """``--sigma``: a number, or ``auto`` (estimated from the image)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _add_max_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=int, default=imageio.MAX_PIXELS, help="refuse images of more pixels than this, "
                   "read or written, before decoding them: a tiny file can declare a huge image "
                   "(default: %(default)s = 4096 x 4096)")


def _version() -> str:
    return __version__


def _check_train_flags(args: argparse.Namespace) -> None:
    """Refuse a flag the chosen model would ignore (only when given: its default is None)."""
    if args.prior_epochs is not None and args.model not in TWO_STAGE_MODELS:
        raise ValueError(f"--prior-epochs is for the two-stage models ({' and '.join(TWO_STAGE_MODELS)}); "
                         f"--model {args.model} has no second stage: drop --prior-epochs")


def cmd_train(args: argparse.Namespace) -> dict:
    _check_train_flags(args)
    guards.check_run_out(args.out, args.overwrite)  # before any work: a file, a foreign folder, a run
    if args.model in TWO_STAGE_MODELS:
        return cmd_train_two_stage(args)
    device = runtime.pick_device(args.device)
    models.check_model_name(args.model)  # fail before loading any data
    data = datasets.load_dataset(args.dataset, data_dir=args.data_dir, download=args.download,
                                 limit_train=args.limit, limit_test=args.limit, seed=args.seed)
    runtime.seed_everything(args.seed)  # the initial weights depend on --seed only
    model = models.build_model(args.model, data.shape, 16 if args.latent_dim is None else args.latent_dim)
    config = training.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  device=str(device), compile=args.compile, progress=not args.quiet)
    history = training.fit(model, data.train, config, val=data.test)
    train_config = {"dataset": args.dataset, "data_dir": args.data_dir, "limit": args.limit,
                    "epochs": args.epochs, "batch_size": args.batch_size,
                    "lr": args.lr if args.lr is not None else model.default_lr, "seed": args.seed,
                    "device": str(device), "command": "aebook " + " ".join(sys.argv[1:])}
    guards.check_finite([*history.train_loss, *history.val_loss], "loss")
    checkpoint.save_run(args.out, model, history.to_dict(), train_config)
    return {"run_dir": str(Path(args.out)), "train_loss": history.train_loss[-1] if history.train_loss else None,
            "val_loss": history.val_loss[-1] if history.val_loss else None}


def cmd_train_two_stage(args: argparse.Namespace) -> dict:
    """``train --model vqvae|latent-diffusion``: the autoencoder, then its prior, saved as one run folder."""
    if args.prior_epochs is not None and not 1 <= args.prior_epochs <= 1_000_000:
        raise ValueError(f"--prior-epochs must be an integer in [1, 1000000], got {args.prior_epochs}")
    device = runtime.pick_device(args.device)
    data = datasets.load_dataset(args.dataset, data_dir=args.data_dir, download=args.download,
                                 limit_train=args.limit, limit_test=args.limit, seed=args.seed)
    runtime.seed_everything(args.seed)
    config = training.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  device=str(device), compile=args.compile, progress=not args.quiet)
    model, histories = generators.train_generator(args.model, data, args.epochs, args.latent_dim,
                                                  args.prior_epochs, config)
    for stage, h in histories.items():
        guards.check_finite([*h["train_loss"], *h["val_loss"]], f"{stage} loss")
    train_config = {"dataset": args.dataset, "data_dir": args.data_dir, "limit": args.limit,
                    "epochs": args.epochs, "prior_epochs": args.prior_epochs, "batch_size": args.batch_size,
                    "lr": args.lr, "seed": args.seed, "device": str(device),
                    "command": "aebook " + " ".join(sys.argv[1:])}
    generators.save_generator(args.out, model, histories, train_config)
    return {"run_dir": str(Path(args.out)), "model": args.model,
            **{f"{stage}_val_loss": h["val_loss"][-1] if h["val_loss"] else None for stage, h in histories.items()},
            "seconds": round(sum(sum(h["seconds"]) for h in histories.values()), 1)}


def cmd_sample(args: argparse.Namespace) -> dict:
    """``sample RUN --n N --out FILE``: new images from a generator's run folder, as .npy or a .png grid."""
    if not 1 <= args.n <= MAX_SAMPLES:
        raise ValueError(f"--n must be an integer in [1, {MAX_SAMPLES}], got {args.n}")
    generators.check_output(args.out)  # before any work: suffix, folder, permissions
    guards.check_overwrite(args.out, args.overwrite)
    device = runtime.pick_device(args.device)
    model, config = generators.load_generator(args.run_dir, device)
    with torch.inference_mode():
        images, seconds = runtime.timed(generators.sample_images, model, args.n, args.seed)
    generators.write_samples(args.out, images)
    return {"output": str(args.out), "model": config["model"]["model"], "shape": list(images.shape),
            "seed": args.seed, "seconds": round(seconds, 3)}


def cmd_evaluate(args: argparse.Namespace) -> dict:
    device = runtime.pick_device(args.device)
    model, config = checkpoint.load_run(args.run_dir, device)
    train_cfg = config.get("train", {})
    name = args.dataset or train_cfg.get("dataset")
    if not name:
        raise ValueError("the run does not record its dataset: pass --dataset")
    data = datasets.load_dataset(name, data_dir=args.data_dir or train_cfg.get("data_dir"), download=args.download,
                                 limit_train=args.limit, limit_test=args.limit, seed=train_cfg.get("seed", 0))
    split = data.test if args.split == "test" else data.train
    model.check_input(split[:1])
    result = metrics.mean_metrics(split, model.reconstruct(split.to(device)).cpu())
    result = {"dataset": name, "split": args.split, **result}
    if args.baseline == "pca":
        pca = baselines.PCABaseline(model.latent_dim).fit(data.train)
        base = metrics.mean_metrics(split, pca.reconstruct(split))
        result.update(pca_psnr=base["psnr"], pca_ssim=base["ssim"])
    return result


def cmd_compress(args: argparse.Namespace) -> dict:
    guards.check_output_file(args.output, [args.input], image=False, overwrite=args.overwrite,
                             suffix=AEB_SUFFIX)
    codec, _ = coding.load_codec(zoo.resolve(args.model))
    img = imageio.read_image(args.input, max_pixels=args.max_pixels)
    if (img.ndim == 3) != (codec.channels == 3):
        raise ValueError(f"{args.input} is {'colour' if img.ndim == 3 else 'grayscale'} but the codec in "
                         f"{args.model} is for {codec.mode} images")
    with torch.inference_mode():
        aeb = coding.compress(img, codec, args.quality)
    bitstream.write_aeb(args.output, aeb)
    return {"output": str(args.output), "height": aeb.height, "width": aeb.width, "mode": aeb.mode,
            "quality": aeb.quality, "bpp": coding.bits_per_pixel(aeb)}


def cmd_decompress(args: argparse.Namespace) -> dict:
    guards.check_output_file(args.output, [args.input], image=True, overwrite=args.overwrite)
    header = bitstream.read_aeb_header(args.input)  # every field checked; the payload is not decoded yet
    bitstream.check_header(header, args.max_pixels)
    if args.model is None:
        codec = _shipped_codec_for(header.model_id, args.input)
    else:
        codec, _ = coding.load_codec(zoo.resolve(args.model))
        if header.model_id != codec.model_id:
            raise ValueError(f"{args.input} was made by codec {header.model_id!r}, not by --model {args.model} "
                             f"({codec.model_id!r}): pass the codec it was made by, or omit --model to use "
                             "the shipped codec the file names")
    try:
        coding.check_fits(header, codec, codec.model_id, args.max_pixels)
    except ValueError as err:
        raise ValueError(f"{args.input}: {err}") from None
    aeb = bitstream.read_aeb(args.input, max_pixels=args.max_pixels, latent_shape=codec.latent_shape)
    with torch.inference_mode():
        img = coding.decompress(aeb, codec, expected_model_id=codec.model_id, max_pixels=args.max_pixels)
    imageio.write_image(args.output, img)
    return {"output": str(args.output), "height": aeb.height, "width": aeb.width, "mode": aeb.mode}


def _shipped_codec_for(model_id: str, path: str):
    """The shipped codec whose ``model_id`` a file names (``ValueError`` if none is)."""
    names = [name for name, entry in zoo.manifest().items() if entry.get("kind") in ("codec", "kltcodec")]
    for name in names:
        codec, _ = coding.load_codec(zoo.resolve(name))
        if codec.model_id == model_id:
            return codec
    raise ValueError(f"{path} was made by codec {model_id!r}, which is none of the shipped codecs "
                     f"({', '.join(names)}): pass --model with its run folder")


def cmd_train_restorer(args: argparse.Namespace) -> dict:
    tasks.make_task(args.task)  # fail before training on a bad name
    guards.check_run_out(args.out, args.overwrite)
    model, losses = restorer_training.train_restorer(
        args.task, epochs=args.epochs, n_patches=args.n_patches, patch_size=args.patch_size, depth=args.depth,
        width=args.width, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
        progress=not args.quiet)
    train_config = {k: getattr(args, k) for k in ("epochs", "n_patches", "patch_size", "batch_size", "lr", "seed")}
    train_config["command"] = "aebook " + " ".join(sys.argv[1:])
    guards.check_finite(losses, "loss")
    nets.save_restorer(args.out, model, args.task, losses, train_config)
    return {"run_dir": str(args.out), "task": args.task, "final_loss": losses[-1] if losses else None}


def cmd_restore(args: argparse.Namespace) -> dict:
    start = time.perf_counter()  # the JSON reports the work itself
    task = f"upscale{args.scale}" if args.command == "upscale" else args.command
    guards.check_output_file(args.output, [args.input, *([args.mask] if task == "inpaint" else [])],
                             image=True, overwrite=args.overwrite)
    img, bits = imageio.read_image_bits(args.input, max_pixels=args.max_pixels)
    if task.startswith("upscale"):
        imageio.check_pixels(img.shape[1] * args.scale, img.shape[0] * args.scale, args.max_pixels,
                     f"the x{args.scale} upscaled {args.input}")
    mask = None
    if task == "inpaint":
        m = imageio.read_image(args.mask, max_pixels=args.max_pixels)
        mask = (m if m.ndim == 2 else m.mean(axis=2)) > 0.5
        if mask.shape != img.shape[:2]:
            raise ValueError(f"mask {args.mask} is {mask.shape[1]}x{mask.shape[0]} but the image is "
                             f"{img.shape[1]}x{img.shape[0]}")
    sigma = getattr(args, "sigma", None)
    if sigma == "auto":  # before the network is loaded: an image too small to estimate is bad input
        try:
            sigma = inference.estimate_noise_sigma(img)
        except ValueError as err:
            raise ValueError(f"--sigma auto cannot estimate the noise level of {args.input} "
                             f"({img.shape[1]} x {img.shape[0]} pixels): {err}; give --sigma a number") from None
    model, _, _ = nets.load_restorer(zoo.resolve(args.model or task), runtime.pick_device(args.device), task=task)
    with torch.inference_mode():
        out = inference.restore_image(model, task, img, sigma=sigma, mask=mask, tile=args.tile, views=args.views,
                                      kernel=getattr(args, "kernel", None))
    colour = np.asarray(out).ndim == 3
    # a 16-bit grayscale input keeps its depth where the output format can hold it (PNG)
    bits = 16 if bits == 16 and not colour and str(args.output).lower().endswith(".png") else 8
    imageio.write_image(args.output, out, bits=bits)
    return {"output": str(args.output), "task": task, "height": int(out.shape[0]), "width": int(out.shape[1]),
            "mode": "RGB" if colour else "L", "bits": bits, "views": args.views,
            # the kernel the network was told; null for a network trained without that input
            **({"kernel": args.kernel if model.cond_channels else None} if task.startswith("upscale") else {}),
            "seconds": round(time.perf_counter() - start, 3),
            **({"sigma": round(float(sigma), 3), "sigma_estimated": args.sigma == "auto"} if task == "denoise" else {})}


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "compress": cmd_compress,
            "decompress": cmd_decompress, "train-restorer": cmd_train_restorer, "denoise": cmd_restore,
            "inpaint": cmd_restore, "upscale": cmd_restore, "enhance": cmd_restore}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Run as a program (``argv`` None: the arguments are the process's own), it first lets the
    memory allocator keep freed memory (:func:`aebook.runtime.keep_freed_memory`): the process
    is the command's alone, and its networks then run faster.
    """
    if argv is None:
        runtime.keep_freed_memory()
    args = build_parser().parse_args(argv)
    try:
        guards.check_flags(args)
        result = COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("aebook: interrupted", file=sys.stderr)
        return 130
    except guards.bad_input_errors() as err:
        print(f"aebook: error: {guards.one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(guards.json_safe(result)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
