"""The ``aebook`` command (also ``python -m aebook``).

``aebook train``    train a model on a dataset and write a run folder.
``aebook evaluate`` PSNR/SSIM of a run folder on a split, optionally against PCA.
``aebook compress`` an image into an ``.aeb`` file with a learned codec (chapter 5).
``aebook decompress`` an ``.aeb`` file back into an image.
``aebook train-restorer`` train a restoration network (chapter 4).
``aebook denoise`` / ``inpaint`` / ``upscale`` / ``enhance`` restore an image file.

Bad input (unknown names, missing folders or files, corrupted checkpoints)
prints one line ``aebook: error: ...`` to stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

EXIT_BAD_INPUT = 2


def _add_data_args(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--dataset", default=default, help=f"dataset name: digits, mnist, fashion_mnist, cifar10, "
                   f"photos, photos_rgb, folder (default: {default or 'the one the run was trained on'})")
    p.add_argument("--data-dir", default=None, help="torchvision-layout folder or your image folder "
                   "(default: $AEBOOK_DATA or ~/.cache/aebook)")
    p.add_argument("--download", action="store_true", help="allow downloading a missing torchvision dataset (default: off)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (default: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aebook", description="Autoencoders for images: train and evaluate.")
    parser.add_argument("--version", action="version", version=f"aebook {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write RUN_DIR/{model.safetensors,config.json,history.json}")
    _add_data_args(t, "digits")
    t.add_argument("--model", default="conv", help="linear, mlp, conv or vae (default: conv)")
    t.add_argument("--latent-dim", type=int, default=16, help="latent size (default: 16)")
    t.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    t.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: 2e-3)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto = CUDA > MPS > CPU)")
    t.add_argument("--compile", action="store_true", help="use torch.compile (default: off)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    t.add_argument("--out", required=True, help="run folder to write")

    e = sub.add_parser("evaluate", help="PSNR/SSIM of a run on a split; prints JSON on the last line")
    e.add_argument("run_dir", help="run folder written by 'aebook train'")
    _add_data_args(e, None)
    e.add_argument("--split", default="test", choices=["train", "test"], help="split to evaluate (default: test)")
    e.add_argument("--baseline", default=None, choices=["pca"], help="also evaluate PCA with the same latent size")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")

    c = sub.add_parser("compress", help="compress a grayscale image into an .aeb file (learned codec + "
                       "entropy coding: Huffman or ANS)")
    c.add_argument("input", help="PNG or JPEG image")
    c.add_argument("output", help="the .aeb file to write")
    c.add_argument("--quality", type=int, default=4, help="1..8, higher = more bits and a better image (default: 4)")
    c.add_argument("--model", default="kltcodec", help="shipped pretrained codec name (kltcodec: block KLT + ANS "
                   "+ decoder network; codec: convolutional autoencoder + Huffman) or a codec run folder "
                   "(written by benchmarks/codec_rd.py --save) (default: %(default)s)")

    d = sub.add_parser("decompress", help="decompress an .aeb file into an image")
    d.add_argument("input", help="the .aeb file")
    d.add_argument("output", help="image to write (.png recommended)")
    d.add_argument("--model", default=None, help="the codec the file was compressed with: a shipped name "
                   "or a run folder (default: the shipped codec whose id the file names)")

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

    model_help = "run folder of 'aebook train-restorer', or a shipped pretrained name (default: %(default)s)"
    for name, helptext in (("denoise", "remove Gaussian noise"), ("inpaint", "fill the pixels a mask marks as missing"),
                           ("upscale", "super-resolution x2 or x4"), ("enhance", "fix exposure, contrast and colour")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("input", help="PNG or JPEG image, grayscale or colour")
        if name == "inpaint":
            q.add_argument("mask", help="image of the same size; white = missing pixels")
        q.add_argument("output", help="image to write (same mode as the input)")
        if name == "denoise":
            q.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0-255 scale (default: 25)")
        if name == "upscale":
            q.add_argument("--scale", type=int, required=True, choices=[2, 4], help="2 or 4")
        q.add_argument("--model", default=name if name != "upscale" else None, help=model_help)
        q.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
        q.add_argument("--tile", type=int, default=512, help="process the image in tiles of this many pixels "
                       "(bounded memory; results do not depend on it) (default: %(default)s)")
        q.add_argument("--ensemble", action="store_true", help="average the results for the 8 rotations and "
                       "flips of the input: a little better, 8 times slower (default: off)")
    return parser


def _version() -> str:
    from aebook import __version__

    return __version__


def cmd_train(args: argparse.Namespace) -> dict:
    from aebook.checkpoint import save_run
    from aebook.data import load_dataset
    from aebook.models import build_model
    from aebook.models import check_model_name
    from aebook.runtime import pick_device, seed_everything
    from aebook.train import TrainConfig, fit

    device = pick_device(args.device)
    check_model_name(args.model)  # fail before loading any data
    data = load_dataset(args.dataset, data_dir=args.data_dir, download=args.download,
                        limit_train=args.limit, limit_test=args.limit, seed=args.seed)
    seed_everything(args.seed)  # the initial weights depend on --seed only
    model = build_model(args.model, data.shape, args.latent_dim)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         device=str(device), compile=args.compile, progress=not args.quiet)
    history = fit(model, data.train, config, val=data.test)
    train_config = {"dataset": args.dataset, "data_dir": args.data_dir, "limit": args.limit,
                    "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                    "device": str(device), "command": "aebook " + " ".join(sys.argv[1:])}
    save_run(args.out, model, history.to_dict(), train_config)
    return {"run_dir": str(Path(args.out)), "train_loss": history.train_loss[-1] if history.train_loss else None,
            "val_loss": history.val_loss[-1] if history.val_loss else None}


def cmd_evaluate(args: argparse.Namespace) -> dict:
    from aebook.baselines import PCABaseline
    from aebook.checkpoint import load_run
    from aebook.data import load_dataset
    from aebook.metrics import mean_metrics
    from aebook.runtime import pick_device

    device = pick_device(args.device)
    model, config = load_run(args.run_dir, device)
    train_cfg = config.get("train", {})
    name = args.dataset or train_cfg.get("dataset")
    if not name:
        raise ValueError("the run does not record its dataset: pass --dataset")
    data = load_dataset(name, data_dir=args.data_dir or train_cfg.get("data_dir"), download=args.download,
                        limit_train=args.limit, limit_test=args.limit, seed=train_cfg.get("seed", 0))
    split = data.test if args.split == "test" else data.train
    model.check_input(split[:1])
    result = mean_metrics(split, model.reconstruct(split.to(device)).cpu())
    result = {"dataset": name, "split": args.split, **result}
    if args.baseline == "pca":
        pca = PCABaseline(model.latent_dim).fit(data.train)
        base = mean_metrics(split, pca.reconstruct(split))
        result.update(pca_psnr=base["psnr"], pca_ssim=base["ssim"])
    return result


def cmd_compress(args: argparse.Namespace) -> dict:
    from aebook.bitstream import write_aeb
    from aebook.codec import bits_per_pixel, compress, load_codec
    from aebook.imageio import read_image

    from aebook.pretrained import resolve

    codec, _ = load_codec(resolve(args.model))
    img = read_image(args.input)
    if (img.ndim == 3) != (codec.channels == 3):
        raise ValueError(f"{args.input} is {'colour' if img.ndim == 3 else 'grayscale'} but the codec in "
                         f"{args.model} is for {codec.mode} images")
    with torch_inference():
        aeb = compress(img, codec, args.quality)
    write_aeb(args.output, aeb)
    return {"output": str(args.output), "height": aeb.height, "width": aeb.width, "mode": aeb.mode,
            "quality": aeb.quality, "bpp": bits_per_pixel(aeb)}


def cmd_decompress(args: argparse.Namespace) -> dict:
    from aebook.bitstream import read_aeb
    from aebook.codec import decompress, load_codec
    from aebook.imageio import write_image

    from aebook.pretrained import resolve

    aeb = read_aeb(args.input)
    if args.model is None:
        codec = _shipped_codec_for(aeb.model_id, args.input)
    else:
        codec, _ = load_codec(resolve(args.model))
    with torch_inference():
        img = decompress(aeb, codec, expected_model_id=codec.model_id)
    write_image(args.output, img)
    return {"output": str(args.output), "height": aeb.height, "width": aeb.width, "mode": aeb.mode}


def _shipped_codec_for(model_id: str, path: str):
    """The shipped codec whose ``model_id`` a file names (``ValueError`` if none is)."""
    from aebook.codec import load_codec
    from aebook.pretrained import manifest, resolve

    names = [name for name, entry in manifest().items() if entry.get("kind") in ("codec", "kltcodec")]
    for name in names:
        codec, _ = load_codec(resolve(name))
        if codec.model_id == model_id:
            return codec
    raise ValueError(f"{path} was made by codec {model_id!r}, which is none of the shipped codecs "
                     f"({', '.join(names)}): pass --model with its run folder")


def torch_inference():
    import torch

    return torch.inference_mode()


def cmd_train_restorer(args: argparse.Namespace) -> dict:
    from aebook.restore import make_task, save_restorer, train_restorer

    make_task(args.task)  # fail before training on a bad name
    model, losses = train_restorer(args.task, epochs=args.epochs, n_patches=args.n_patches, patch_size=args.patch_size,
                                   depth=args.depth, width=args.width, batch_size=args.batch_size, lr=args.lr,
                                   seed=args.seed, device=args.device, progress=not args.quiet)
    train_config = {k: getattr(args, k) for k in ("epochs", "n_patches", "patch_size", "batch_size", "lr", "seed")}
    train_config["command"] = "aebook " + " ".join(sys.argv[1:])
    save_restorer(args.out, model, args.task, losses, train_config)
    return {"run_dir": str(args.out), "task": args.task, "final_loss": losses[-1] if losses else None}


def cmd_restore(args: argparse.Namespace) -> dict:
    import numpy as np

    from aebook.imageio import read_image, read_image_bits, write_image
    from aebook.pretrained import resolve
    from aebook.restore import load_restorer, restore_image
    from aebook.runtime import pick_device

    import time

    start = time.perf_counter()  # after the imports: the JSON reports the work itself
    task = f"upscale{args.scale}" if args.command == "upscale" else args.command
    img, bits = read_image_bits(args.input)
    mask = None
    if task == "inpaint":
        m = read_image(args.mask)
        mask = (m if m.ndim == 2 else m.mean(axis=2)) > 0.5
        if mask.shape != img.shape[:2]:
            raise ValueError(f"mask {args.mask} is {mask.shape[1]}x{mask.shape[0]} but the image is "
                             f"{img.shape[1]}x{img.shape[0]}")
    model, model_task, _ = load_restorer(resolve(args.model or task), pick_device(args.device))
    if model_task != task:
        raise ValueError(f"model {args.model} was trained for {model_task!r}, not {task!r}")
    with torch_inference():
        out = restore_image(model, task, img, sigma=getattr(args, "sigma", None), mask=mask, tile=args.tile,
                            ensemble=args.ensemble)
    colour = np.asarray(out).ndim == 3
    # a 16-bit grayscale input keeps its depth where the output format can hold it (PNG)
    bits = 16 if bits == 16 and not colour and str(args.output).lower().endswith(".png") else 8
    write_image(args.output, out, bits=bits)
    return {"output": str(args.output), "task": task, "height": int(out.shape[0]), "width": int(out.shape[1]),
            "mode": "RGB" if colour else "L", "bits": bits, "seconds": round(time.perf_counter() - start, 3)}


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "compress": cmd_compress, "decompress": cmd_decompress,
            "train-restorer": cmd_train_restorer, "denoise": cmd_restore, "inpaint": cmd_restore,
            "upscale": cmd_restore, "enhance": cmd_restore}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Run as a program (``argv`` None: the arguments are the process's own), it first lets the
    memory allocator keep freed memory (:func:`aebook.runtime.keep_freed_memory`): the process
    is the command's alone, and its networks then run faster.
    """
    if argv is None:
        from aebook.runtime import keep_freed_memory

        keep_freed_memory()
    args = build_parser().parse_args(argv)
    try:
        result = COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"aebook: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("aebook: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
