"""Fréchet distance of latent-diffusion samples against VAE prior samples, through the CLI (chapter 4.2's target).

The protocol of this book's target for ``aebook train --model latent-diffusion``: on real MNIST
digits, train a ``vae`` and a ``latent-diffusion`` run with ``--epochs E`` and the CLI's defaults
otherwise, draw ``--n`` samples of each with ``aebook sample RUN --n N --seed S --out X.npy``, and
compare their Fréchet distances to the held-out digits in the features of a digit classifier of
our own (:func:`aebook.generation.train_classifier`, trained on the training split). The target:
latent diffusion at most half the VAE prior's distance (the ratio below 0.5); the moonshot:
within twice the distance of real training digits to the held-out ones.

Everything the runs do goes through the command line in subprocesses, as a user (or a judge)
would run it; only the classifier and the distances are computed in this process.

Usage::

    nice -n 10 python benchmarks/generation_fd.py --data-dir ../shared/data/mnist-sample \\
        --epochs 10 --seeds 0 1 --out benchmarks/results/generation_fd.json

writes the JSON and a Markdown table next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aebook.data import load_dataset
from aebook.generation import dataset_labels, features, frechet_distance, train_classifier

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> float:
    """Run ``python -m aebook ARGS`` from the repository root; return its wall time in seconds (raise on failure)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "aebook", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"aebook {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def one_seed(seed: int, args: argparse.Namespace, work: Path, test: torch.Tensor, train: torch.Tensor,
             y_train: torch.Tensor) -> dict:
    """Train both runs with ``--seed seed``, sample them, and measure the three Fréchet distances."""
    data_args = ["--dataset", args.dataset, "--data-dir", str(args.data_dir), "--epochs", str(args.epochs),
                 "--seed", str(seed), "--quiet", "--overwrite"]
    result: dict = {"seed": seed, "seconds": {}}
    samples = {}
    for model in ("vae", "latent-diffusion"):
        run = work / f"{model}_{seed}"
        result["seconds"][f"train {model}"] = round(cli("train", *data_args, "--model", model, "--out", str(run)), 1)
        out = work / f"{model}_{seed}.npy"
        result["seconds"][f"sample {model}"] = round(
            cli("sample", str(run), "--n", str(args.n), "--seed", str(seed), "--out", str(out), "--overwrite"), 1)
        x = np.load(out)
        if x.dtype != np.float32 or x.shape != (args.n, *test.shape[1:]) or x.min() < 0 or x.max() > 1:
            raise RuntimeError(f"{out}: expected float32 {(args.n, *test.shape[1:])} in [0, 1], got {x.dtype} "
                               f"{x.shape} in [{x.min()}, {x.max()}]")
        samples[model] = torch.from_numpy(x)
    torch.manual_seed(seed)
    classifier = train_classifier(train, y_train, epochs=args.classifier_epochs, seed=seed)
    test_feats = features(classifier, test)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    real = train[order[: min(args.n, len(train))]]
    fd = {"vae prior": frechet_distance(features(classifier, samples["vae"]), test_feats),
          "latent diffusion": frechet_distance(features(classifier, samples["latent-diffusion"]), test_feats),
          "real train digits": frechet_distance(features(classifier, real), test_feats)}
    result["fd"] = {k: round(v, 3) for k, v in fd.items()}
    result["ratio"] = round(fd["latent diffusion"] / fd["vae prior"], 3)
    result["vs_real"] = round(fd["latent diffusion"] / fd["real train digits"], 3)
    print(json.dumps(result), flush=True)
    return result


def markdown(report: dict) -> str:
    """The result as a Markdown table, one row per seed."""
    lines = [f"# Fréchet distance: latent diffusion against the VAE prior ({report['dataset']}, "
             f"{report['train']} train / {report['test']} held out)", "",
             f"Command: `{report['command']}`", "",
             f"{report['n']} samples per run, `--epochs {report['epochs']}`, CLI defaults otherwise; features: "
             f"our digit classifier ({report['classifier_epochs']} epochs on the training split). Target: ratio "
             "at most 0.5; moonshot: latent diffusion within 2x real-vs-real.", "",
             "| seed | FD VAE prior | FD latent diffusion | FD real train vs test | ratio LD / VAE | LD / real "
             "| train VAE (s) | train LD (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["seeds"]:
        fd, s = r["fd"], r["seconds"]
        lines.append(f"| {r['seed']} | {fd['vae prior']:.2f} | {fd['latent diffusion']:.2f} | "
                     f"{fd['real train digits']:.2f} | **{r['ratio']:.3f}** | {r['vs_real']:.2f} | "
                     f"{s['train vae']:.0f} | {s['train latent-diffusion']:.0f} |")
    lines += ["", f"Machine: {report['machine']}, torch {report['torch']}, {report['threads']} threads.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="torchvision-layout MNIST root")
    parser.add_argument("--dataset", default="mnist", help="dataset name for the CLI (default: mnist)")
    parser.add_argument("--epochs", type=int, default=10, help="--epochs of both runs (default: 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="training and sampling seeds (default: 0 1)")
    parser.add_argument("--n", type=int, default=2000, help="samples per run (default: 2000)")
    parser.add_argument("--classifier-epochs", type=int, default=20,
                        help="epochs of the feature classifier (default: 20)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the runs and samples (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generation_fd.json",
                        help="JSON to write; a Markdown table goes next to it "
                             "(default: benchmarks/results/generation_fd.json)")
    args = parser.parse_args()
    if args.out.suffix != ".json":
        parser.error(f"--out must be a .json file, got {args.out}")
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    y_train, _ = dataset_labels(args.dataset, args.data_dir)
    with tempfile.TemporaryDirectory(prefix="generation_fd_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        seeds = [one_seed(s, args, work, data.test, data.train, y_train) for s in args.seeds]
    report = {"benchmark": "generation_fd", "dataset": args.dataset, "train": len(data.train), "test": len(data.test),
              "epochs": args.epochs, "n": args.n, "classifier_epochs": args.classifier_epochs,
              "command": "python benchmarks/generation_fd.py " + " ".join(sys.argv[1:]),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "seeds": seeds,
              "worst_ratio": max(r["ratio"] for r in seeds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
