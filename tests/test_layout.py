"""The library's layout: grouped by subject, no import cycle, one copy of each idea.

Read with :mod:`ast` from the source of every module of ``aebook/`` (imports inside functions and
``TYPE_CHECKING`` blocks count too), so that a rule holds whatever a test happens to import:

1. The import graph has no cycle, and an import inside a function is only for an optional or heavy
   third-party package (:data:`LAZY_ALLOWED`), never an ``aebook`` module.
2. Nothing outside ``aebook/book/`` imports ``aebook.book``.
3. One learning-rate schedule and one optimisation step: only ``aebook/train.py`` builds optimisers
   and steps them; every trainer goes through :class:`aebook.train.TrainStep` (or :func:`~aebook.train.fit`).
4. One canonical copy of each idea (JPEG, bicubic, the block KLT, timing, no public name twice).
5. ``aebook.zoo.pretrained`` is a plain function with one return shape.
6. ``python -m aebook.train_pretrained`` still runs; shipped configs name registry entries.
7. The re-exports of ``aebook/__init__.py`` and every ``aebook.…`` name the book, README and tests
   write resolve.
8. Every module says what it is for, in a file of at most :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch

import aebook

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aebook"

#: Third-party packages a function may import on its own (everything else sits at a module's top):
#: optional extras that a core install lacks, and packages that take seconds to import and serve
#: one function (the command line would otherwise pay for them on every start).
LAZY_ALLOWED = {
    "bm3d": "optional ([book]): chapter 4.3's BM3D baseline",
    "ipywidgets": "optional ([book]): live sliders in a notebook",
    "sklearn": "heavy (about 2 s): PCA, the digits, a ROC curve",
    "scipy": "heavy: only scipy.stats and scipy.ndimage, each for one function",
    "torchvision": "heavy (about 2 s): only its datasets",
    "matplotlib": "heavy: figures drawn by one function, or its sample-data folder",
}

#: Files allowed more than MAX_LINES lines, and why.
MAX_LINES = 450
LONG_FILES = {
    "aebook/generation.py": "chapter 4.1's one subject (VAE sampling, latent views, the ELBO, the Frechet judge)",
}

#: Backward passes outside aebook/train.py that train nothing, or train on purpose without TrainStep.
BACKWARD_ALLOWED = {
    ("aebook/perf.py", "textbook_loop"): "the tutorial's own loop: the baseline chapter 5.1 measures against",
    ("aebook/perf.py", "tutorial_epochs"): "(inside textbook_loop)",
    ("aebook/perf.py", "forward_backward"): "times one backward pass (time_forward_backward); no step is taken",
}

#: Every trainer of the library, and the shared training code it must call.
TRAINERS = {
    "aebook.train": {"fit": "TrainStep"},
    "aebook.restoration.training": {"train_restorer": "TrainStep"},
    "aebook.generation": {"train_classifier": "TrainStep", "train_vae": "fit"},
    "aebook.distributed": {"train": "TrainStep"},
    "aebook.codecs.training": {"train_codec": "fit", "train_klt_codec": "train_restorer"},
    "aebook.vqvae": {"train_vq_generator": "fit"},
    "aebook.diffusion": {"train_latent_diffusion": "fit"},
}

#: Public top-level names defined in more than one module on purpose.
SAME_NAME_ALLOWED = {
    "main": "each command's entry point (aebook.cli, aebook.distributed, aebook.zoo.training)",
    "build_parser": "each command's own options",
    "ResBlock": "two residual blocks of different design: the VQ-VAE's (GELU, BatchNorm, a 1x1 output) and the "
                "restorer's (ReLU, no normalisation, started near the identity)",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def rel(name: str) -> str:
    return str(MODULES[name].relative_to(ROOT))


def imports(tree: ast.AST):
    """Every import of a module: ``(node, targets, in_function, in_type_checking)``, where ``targets``
    are the dotted names it imports (``from a import b`` gives ``a.b`` when that is a module, else ``a``)."""
    found = []

    def visit(node: ast.AST, in_function: bool, in_type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            tc = in_type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                found.append((child, [a.name for a in child.names], in_function, in_type_checking))
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, "relative imports are not used"
                base = child.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in child.names]
                found.append((child, targets, in_function, in_type_checking))
            visit(child, fn, tc)

    visit(tree, False, False)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the ``aebook`` modules it imports, with the packages each import runs first
    (importing ``a.b`` runs ``a/__init__.py``, unless the importer is inside ``a`` itself, whose
    ``__init__`` is then already running); the facade ``aebook`` is left out
    (see :func:`test_the_facade_imports_nothing_when_it_runs`)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, tree in TREES.items():
        if name == "aebook":
            continue
        for _, targets, _, _ in imports(tree):
            for target in targets:
                if target.split(".")[0] != "aebook" or target == "aebook":
                    continue
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    dep = ".".join(parts[:i])
                    inside = i < len(parts) and name.startswith(dep + ".")
                    if dep in MODULES and dep != name and not inside:
                        edges[name].add(dep)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(set(MODULES) | set(edges)):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


# ------------------------------------------------------------------ 1. no cycle; imports at the top

def test_the_import_graph_has_no_cycle():
    edges = graph()
    assert sum(len(v) for v in edges.values()) > 100  # the graph was read
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]


def test_imports_inside_functions_are_only_optional_or_heavy_packages():
    problems = []
    for name, tree in TREES.items():
        for node, targets, in_function, _ in imports(tree):
            if in_function and any(t.split(".")[0] not in LAZY_ALLOWED for t in targets):
                problems.append(f"{rel(name)}:{node.lineno}: {ast.unparse(node)}")
    assert not problems, "imports belong at the top of the module:\n" + "\n".join(problems)


def test_the_facade_imports_nothing_when_it_runs():
    """Importing any submodule runs ``aebook/__init__.py`` first: it must import no submodule (its
    re-exports load on first use), so it cannot take part in a cycle; submodules read only
    ``__version__`` from it."""
    for node, targets, in_function, in_type_checking in imports(TREES["aebook"]):
        assert in_type_checking or not any(t.startswith("aebook") for t in targets), ast.unparse(node)
    for name, tree in TREES.items():
        for node, targets, _, _ in imports(tree):
            if "aebook" in targets:
                assert isinstance(node, ast.ImportFrom) and [a.name for a in node.names if
                                                             f"aebook.{a.name}" not in MODULES] == ["__version__"], \
                    f"{rel(name)}:{node.lineno}: {ast.unparse(node)}"
    code = "import sys, aebook; print(sorted(m for m in sys.modules if m.startswith('aebook')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "['aebook']"


# ------------------------------------------------------------------ 2. the book's helpers stay in the book

def test_nothing_outside_aebook_book_imports_it():
    edges = graph()
    users = {m for m, deps in edges.items() if any(d == "aebook.book" or d.startswith("aebook.book.") for d in deps)}
    assert all(m.startswith("aebook.book") for m in users), sorted(users)


# ------------------------------------------------------------------ 3. one step, one schedule

def _function(tree: ast.AST, name: str) -> ast.FunctionDef:
    """The function ``name`` of a module, or the method ``Class.name``."""
    if "." in name:
        cls, name = name.split(".")
        tree = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no function {name}")


def _innermost_functions(tree: ast.AST):
    """``(node, name of the innermost function around it)`` for every node of ``tree``."""
    def visit(node: ast.AST, fn: str):
        for child in ast.iter_child_nodes(node):
            yield child, fn
            yield from visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn)
    yield from visit(tree, "<module>")


def test_only_aebook_train_builds_optimisers_and_steps_them():
    problems = []
    for name, tree in TREES.items():
        if name == "aebook.train":
            continue
        for node, fn in _innermost_functions(tree):
            text = ast.unparse(node) if isinstance(node, (ast.Attribute, ast.Call)) else ""
            optimiser = isinstance(node, ast.Attribute) and text.startswith("torch.optim")
            backward = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "backward"
            if (optimiser or backward) and (rel(name), fn) not in BACKWARD_ALLOWED:
                problems.append(f"{rel(name)}:{node.lineno} in {fn}: {text}")
    assert not problems, "optimisers and backward passes belong to aebook.train.TrainStep:\n" + "\n".join(
        sorted(set(problems)))


def test_every_trainer_goes_through_the_shared_step():
    for module, trainers in TRAINERS.items():
        for fn_name, shared in trainers.items():
            used = {n.id for n in ast.walk(_function(TREES[module], fn_name)) if isinstance(n, ast.Name)}
            used |= {n.attr for n in ast.walk(_function(TREES[module], fn_name)) if isinstance(n, ast.Attribute)}
            assert shared in used, f"{module}.{fn_name} does not call {shared}"


def test_train_step_follows_warmup_cosine_by_steps_and_over_time():
    from aebook.train import TrainStep, warmup_cosine, warmup_cosine_at

    w = torch.nn.Parameter(torch.zeros(3))
    step = TrainStep([w], 0.1, 20, warmup=0.1)
    factor = warmup_cosine(20, 0.1)
    for k in range(25):
        assert step.lr == pytest.approx(0.1 * factor(k))
        step.step((w - 1).pow(2).sum())
    assert step.lr == pytest.approx(0.1 * 0.02)  # the floor
    assert not step.finished
    timed = TrainStep([w], 0.1, 20, warmup=0.5, minutes=1.0)
    assert timed.lr == pytest.approx(0.0, abs=1e-4) and not timed.finished
    assert warmup_cosine_at(0.25, 0.5) == 0.5 and warmup_cosine_at(1.0, 0.5) == pytest.approx(0.02)


class _Recording:
    """Wraps TrainStep and records the learning rate of every step taken."""

    def __init__(self, real):
        self.real, self.made = real, []

    def __call__(self, *args, **kwargs):
        step = self.real(*args, **kwargs)
        step.seen = []
        original = step.update

        def update(loss):
            step.seen.append(step.lr)
            return original(loss)

        step.update = update
        self.made.append((args, kwargs, step))
        return step


def test_the_restorer_and_the_classifier_train_with_the_shared_schedule(monkeypatch):
    import aebook.generation as generation
    import aebook.restoration.training as restoration_training
    from aebook.train import TrainStep, warmup_cosine

    for module, run in ((restoration_training, lambda: restoration_training.train_restorer(
            "denoise", epochs=2, n_patches=12, patch_size=16, depth=3, width=4, batch_size=4, lr=1e-3,
            warmup=0.2, device="cpu", progress=False)),
                        (generation, lambda: generation.train_classifier(
                            torch.rand(12, 1, 8, 8), torch.arange(12) % 3, epochs=2, batch_size=4, lr=1e-3))):
        spy = _Recording(TrainStep)
        monkeypatch.setattr(module, "TrainStep", spy)
        run()
        (args, kwargs, step), = spy.made
        schedule = warmup_cosine(args[2], kwargs.get("warmup", 0.05), kwargs.get("floor", 0.02))
        expected = [args[1] * schedule(k) for k in range(6)]
        assert step.seen == pytest.approx(expected), module.__name__


# ------------------------------------------------------------------ 4. one copy of each idea

def _defined(tree: ast.AST) -> set[str]:
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_no_public_name_is_defined_twice():
    where = defaultdict(list)
    for name, tree in TREES.items():
        for defined in _defined(tree):
            if not defined.startswith("_"):
                where[defined].append(name)
    twice = {k: v for k, v in where.items() if len(v) > 1 and k not in SAME_NAME_ALLOWED}
    assert not twice, twice


def _calls(name: str, predicate) -> list[str]:
    return [f"{rel(name)}:{n.lineno}" for n in ast.walk(TREES[name]) if isinstance(n, ast.Call) and predicate(n)]


def _keyword(call: ast.Call, key: str, value: object) -> bool:
    return any(k.arg == key and isinstance(k.value, ast.Constant) and k.value.value == value for k in call.keywords)


def test_one_jpeg_one_bicubic_one_block_klt_one_timer():
    jpeg, bicubic, klt, sync, perf_counter_pairs = [], [], [], [], []
    for name in TREES:
        jpeg += _calls(name, lambda c: _keyword(c, "format", "JPEG"))
        bicubic += _calls(name, lambda c: _keyword(c, "mode", "bicubic") or _keyword(c, "order", 3))
        klt += _calls(name, lambda c: ast.unparse(c.func).endswith("eigh") and "torch" in ast.unparse(c.func))
        sync += _calls(name, lambda c: ast.unparse(c.func).endswith(".synchronize"))
    assert [j.split(":")[0] for j in jpeg] == ["aebook/baselines.py"], jpeg  # jpeg_bytes
    assert [b.split(":")[0] for b in bicubic] == ["aebook/imageio.py"], bicubic  # upsample_bicubic
    assert [k.split(":")[0] for k in klt] == ["aebook/baselines.py"], klt  # block_klt
    for user, fn in (("aebook.codecs.klt", "KLTCodec.fit_transform"), ("aebook.baselines", "BlockKLT.fit")):
        assert "block_klt" in ast.unparse(_function(TREES[user], fn)), (user, fn)
    # the clock and the device's queue: runtime.synchronize / timed / time_call / cpu_times; CudaGraphStep waits
    # for its warm-up
    assert {s.split(":")[0] for s in sync} <= {"aebook/runtime.py", "aebook/train.py"}, sync
    for helper in ("synchronize", "timed", "time_call", "cpu_times"):
        assert [m for m, t in TREES.items() if helper in _defined(t)] == ["aebook.runtime"], helper


def test_the_two_latent_sweeps_have_two_names():
    from aebook.book.subspace import bottleneck_sweep
    from aebook.perf import latent_sweep

    assert latent_sweep.__module__ == "aebook.perf" and bottleneck_sweep.__module__ == "aebook.book.subspace"


# ------------------------------------------------------------------ 5. the zoo's one loader

def test_pretrained_is_a_plain_function_with_one_return_shape():
    from aebook.zoo import pretrained

    assert inspect.isfunction(pretrained) and aebook.pretrained is pretrained
    assert not any(isinstance(n, ast.Attribute) and n.attr == "__class__" and isinstance(n.ctx, ast.Store)
                   for tree in TREES.values() for n in ast.walk(tree))
    for name in ("denoise", "kltcodec"):
        loaded = pretrained(name)
        assert len(loaded) == 2 and isinstance(loaded[0], torch.nn.Module) and "model" in loaded[1], name
    assert pretrained("denoise")[1]["train"]["task"] == "denoise"


# ------------------------------------------------------------------ 6. the recorded command, the shipped configs

def test_the_recorded_training_command_still_runs():
    out = subprocess.run([sys.executable, "-m", "aebook.train_pretrained", "--help"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0 and "python -m aebook.train_pretrained" in out.stdout, out.stderr


def test_shipped_configs_name_registry_entries_not_module_paths():
    from aebook.zoo.loading import LOADERS
    from aebook.zoo.registry import WEIGHTS_DIR, manifest

    entries = manifest()
    assert WEIGHTS_DIR == PACKAGE / "zoo" / "weights" and entries
    for name, entry in entries.items():
        config = json.loads((WEIGHTS_DIR / entry["path"] / "config.json").read_text())
        kind = config["model"]["model"]
        assert kind in LOADERS and "." not in kind, (name, kind)
        for stage in [entry, *_inits(entry)]:
            assert stage["command"].startswith("python -m aebook.train_pretrained"), (name, stage["command"])


def _inits(entry: dict) -> list[dict]:
    return [entry["init"], *_inits(entry["init"])] if isinstance(entry.get("init"), dict) else []


# ------------------------------------------------------------------ 7. public names and written paths resolve

def test_the_facade_re_exports_resolve():
    for name in aebook.__all__:
        assert getattr(aebook, name) is not None, name
    for name, module in aebook._EXPORTS.items():
        assert getattr(aebook, name) is getattr(importlib.import_module(f"aebook.{module}"), name)


DOTTED = re.compile(r"(?<![\w./-])aebook(?:\.[A-Za-z_]\w*)+")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_aebook_name_written_in_the_book_readme_tests_and_benchmarks_resolves():
    files = [*sorted((ROOT / "book").glob("*.md")), ROOT / "README.md", *sorted((ROOT / "tests").glob("*.py")),
             *sorted((ROOT / "benchmarks").glob("*.py")), *sorted(PACKAGE.rglob("*.py"))]
    bad = {}
    for path in files:
        for dotted in sorted(set(DOTTED.findall(path.read_text()))):
            dotted = dotted.rstrip(".")
            if dotted.endswith((".py", ".json", ".md")) or not _resolves(dotted):
                if not dotted.endswith((".py", ".json", ".md")):
                    bad.setdefault(str(path.relative_to(ROOT)), []).append(dotted)
    assert not bad, bad


def test_api_reference_documents_every_module():
    text = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(r"automodule:: (\S+)", text))
    public = {m for m in MODULES if not any(p.startswith("_") for p in m.split("."))} - {"aebook"}
    assert documented == public, (sorted(public - documented), sorted(documented - public))


# ------------------------------------------------------------------ 8. small files, each saying what it is for

def test_every_module_says_what_it_is_for_in_a_file_of_modest_size():
    for name, tree in TREES.items():
        if MODULES[name].name != "__main__.py":
            assert ast.get_docstring(tree), f"{rel(name)} has no module docstring"
        lines = len(MODULES[name].read_text().splitlines())
        assert lines <= MAX_LINES or rel(name) in LONG_FILES, f"{rel(name)}: {lines} lines"
