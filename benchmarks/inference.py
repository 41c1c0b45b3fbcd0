"""Inference speed of the shipped restorers on a CPU: channels-last layout against the default.

Both layouts run side by side in the same process on the same 512x512 image (the
cameraman, or the astronaut for colour models), alternating, each timed as the best of
``--repeats`` calls of :func:`aebook.restoration.inference.apply_tiled` with the CLI's tile size (512), by
:func:`aebook.perf.shipped_layouts`. The claim is the ratio, and the outputs must agree (the
largest difference is printed). The ratio depends on the state of the memory allocator: this
script is a new process, as the CLI is; chapter 5.1 measures how much of the gap is memory.

Usage::

    python benchmarks/inference.py --json                     # every shipped restorer
    python benchmarks/inference.py denoise --threads 2 --json  # one of them

The last line of ``--json`` output is one JSON object: per model, the seconds in each
layout, the speed-up and the largest absolute difference between the two outputs.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from aebook.perf import shipped_layouts
from aebook.zoo import manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shipped = manifest()
    restorers = [n for n, e in shipped.items() if e["kind"] == "restorer"]
    parser.add_argument("models", nargs="*", default=restorers, help=f"shipped restorers (default: {restorers})")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in restorers]
    if unknown:
        parser.error(f"not a shipped restorer: {', '.join(unknown)} (choose from {', '.join(restorers)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for name in args.models:
        r = shipped_layouts(name, args.size, args.repeats)
        settings = shipped[name]["settings"]  # what the manifest recorded: no second load of the weights
        results[name] = {k: settings[k] for k in ("task", "depth", "width")} | r
        print(f"{name:10s} {args.size}x{args.size}: default {r['seconds_default']:.3f} s, channels-last "
              f"{r['seconds_channels_last']:.3f} s -> {r['speedup']:.2f}x "
              f"(outputs differ by at most {r['max_abs_diff']:.1e})", flush=True)
    if args.json:
        print(json.dumps({"benchmark": "inference", "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "machine": platform.processor() or platform.machine(), "size": args.size,
                          "tile": 512, "models": results}))


if __name__ == "__main__":
    main()
