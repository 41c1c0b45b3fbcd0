"""Run-time settings shared by the book and the library: quick mode, device, seeds, timing.

The bottom of the library: it imports nothing from ``aebook``. Chapter 3.1 of the book
shows these in use; :func:`time_call` (wall time) and :func:`cpu_times` (this process's CPU
time, side by side) are the timers every measurement uses.
"""

from __future__ import annotations

import ctypes
import os
import platform
import random
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np
import skimage
import torch

QUICK_ENV = "AEBOOK_QUICK"
#: Environment variable that overrides the automatic device choice (``cpu``, ``cuda`` or ``mps``).
DEVICE_ENV = "AEBOOK_DEVICE"
#: The device names that pick_device accepts besides ``"auto"``.
DEVICES = ("cpu", "cuda", "mps")


def quick_mode() -> bool:
    """Return True when the environment variable ``AEBOOK_QUICK`` is set to a true value.

    The test command sets it so that every chapter runs the same code paths
    with less data and fewer epochs; the book build leaves it unset.
    """
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def live_frontend() -> bool:
    """True in a notebook a person drives (Colab, or a kernel started by a Jupyter server), where sliders work.

    False under batch execution (the book build, nbval, nbconvert), where a widget
    would only leave a dead placeholder (and requests to a widget CDN) in the page;
    chapters then show a static figure only.
    """
    return on_colab() or bool(os.environ.get("JPY_SESSION_NAME"))


def pick(full, quick):
    """Return ``quick`` in quick mode, else ``full`` (a one-liner for parameter cells)."""
    return quick if quick_mode() else full


def pick_device(preference: str = "auto") -> torch.device:
    """Choose the device to compute on.

    Parameters
    ----------
    preference
        ``"auto"`` picks CUDA, then Apple MPS, then the CPU, unless the environment
        variable ``AEBOOK_DEVICE`` names a device (``cpu``, ``cuda`` or ``mps``): then
        that device is used, as if it had been asked for (a way out when MPS computes
        differently, or to keep a GPU free). ``"cpu"``, ``"cuda"`` and ``"mps"`` ask for
        that device whatever the variable says, and fail clearly when it is absent.

    Raises
    ------
    ValueError
        For an unknown name (in ``preference`` or in ``AEBOOK_DEVICE``) or a device this
        machine does not have.
    """
    pref = preference.strip().lower()
    source = "requested"
    if pref == "auto":
        env = os.environ.get(DEVICE_ENV, "").strip().lower()
        if env and env != "auto":
            if env not in DEVICES:
                raise ValueError(f"{DEVICE_ENV}={os.environ[DEVICE_ENV]!r} is not a device: "
                                 f"choose {', '.join(DEVICES)} (or auto, or leave it unset)")
            pref, source = env, f"requested by {DEVICE_ENV}"
    mps_ok = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_ok:
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device 'cuda' {source} but no CUDA GPU is available")
        return torch.device("cuda")
    if pref == "mps":
        if not mps_ok:
            raise ValueError(f"device 'mps' {source} but Apple MPS is not available")
        return torch.device("mps")
    raise ValueError(f"unknown device {preference!r}: choose auto, {', '.join(DEVICES)}")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


#: :func:`keep_freed_memory`'s defaults (bytes): heap padding, and the mmap and trim thresholds.
KEEP_TOP_PAD, KEEP_THRESHOLD = 256 << 20, 1 << 30


def keep_freed_memory(top_pad: int = KEEP_TOP_PAD, threshold: int = KEEP_THRESHOLD) -> bool:
    """Tell glibc's allocator to keep freed memory for reuse instead of returning it at once.

    By default glibc serves every large block (a convolution's activations) with fresh pages
    from the operating system, which must be mapped and zeroed again on every call, and hands
    them back when freed. With ``mallopt`` raising the mmap and trim thresholds (to
    ``threshold`` bytes) and padding the heap by ``top_pad``, freed blocks are reused (chapter 5.1
    measures what this does to a restorer's inference). It changes the whole process, so the
    command-line interface calls it (the process is its own); the library does not. Returns
    whether it applied (False where the C library is not glibc).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # <malloc.h>
    return all(libc.mallopt(option, value) == 1 for option, value in
               ((m_top_pad, top_pad), (m_trim_threshold, threshold), (m_mmap_threshold, threshold)))


def on_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def describe_environment() -> dict[str, str]:
    """Versions and hardware, as a dict a chapter can print as a table."""
    import matplotlib  # heavy, and only for their version numbers
    import sklearn

    device = pick_device()
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-image": skimage.__version__,
        "scikit-learn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
        "device": str(device),
        "cpu threads": str(torch.get_num_threads()),
        "quick mode": str(quick_mode()),
        "colab": str(on_colab()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished its queued work (CUDA and MPS run asynchronously), so
    that a clock read after it measures the work itself; nothing to wait for on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[..., Any], *args: Any, device: torch.device | str | None = None,
          **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds, ``device`` synchronised before and after."""
    if device is not None:
        synchronize(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    if device is not None:
        synchronize(device)
    return out, time.perf_counter() - start


def time_call(fn: Callable[..., Any], *args: Any, repeats: int = 1, device: torch.device | str | None = None,
              **kwargs: Any) -> float:
    """Shortest wall time in seconds of ``repeats`` calls ``fn(*args, **kwargs)`` (see :func:`timed`).

    The shortest, not the mean: on a shared machine other work only ever adds time.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return min(timed(fn, *args, device=device, **kwargs)[1] for _ in range(repeats))


def cpu_times(calls: Mapping[str, Callable[[], object]], repeats: int = 5, threads: int = 1) -> dict[str, float]:
    """CPU seconds of each call, measured side by side: ``{name: shortest process time}``
    (:func:`time_call` measures wall time, which another program's load lengthens).

    The calls take turns (one of each per round, ``repeats`` rounds, after one untimed round
    that warms caches), so a change in the machine's load touches all of them alike; each is
    scored by its shortest round. ``time.process_time`` counts the work of this process only,
    not the time other programs take; PyTorch runs on ``threads`` threads meanwhile (one by
    default: then no thread is counted while it waits for another), and its setting is restored.
    """
    if repeats < 1 or threads < 1:
        raise ValueError(f"repeats and threads must be >= 1, got {repeats} and {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for fn in calls.values():
            fn()
        best = {name: float("inf") for name in calls}
        for _ in range(repeats):
            for name, fn in calls.items():
                start = time.process_time()
                fn()
                best[name] = min(best[name], time.process_time() - start)
    finally:
        torch.set_num_threads(before)
    return best
