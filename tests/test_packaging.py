"""What a user gets from ``pip install aebook``, ``aebook[book]`` or the Colab cell.

- Every import is declared where it is needed: the library's module-level imports and everything
  the ``aebook`` command imports in core ``[project].dependencies``; the library's lazy imports and
  the chapters' imports in core or ``[book]``; the tests' in core, ``[book]``, ``[test]`` or
  requirements.txt. Imports are read with :mod:`ast` (chapters: their ``{code-cell}`` blocks).
- Every ``aebook`` subcommand runs in a process where every installed package outside core's
  dependency closure fails to import, as in a fresh ``pip install aebook``.
- One version, in ``aebook/__init__.py``: pyproject.toml, CITATION.cff, CHANGELOG.md, the installed
  metadata and every chapter's Colab cell (which installs tag ``v<version>``) agree with it.
- The built wheel ships the pretrained weights, the bundled data and the licence.
- Binder, requirements.txt and the CI workflow are set up as the README says.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)

#: Import names whose distribution has another name, for modules that are not installed here
#: (installed ones are looked up with importlib.metadata.packages_distributions()).
KNOWN_DISTRIBUTIONS = {
    "PIL": "Pillow", "skimage": "scikit-image", "sklearn": "scikit-learn", "yaml": "PyYAML",
    "pywt": "PyWavelets", "IPython": "ipython", "cv2": "opencv-python", "bs4": "beautifulsoup4",
}

#: Modules a third-party function imports on our behalf when called (invisible to ast):
#: scikit-image's wavelet denoiser and noise estimate need PyWavelets.
HIDDEN_IMPORTS = {"denoise_wavelet": "pywt", "estimate_sigma": "pywt"}


# --------------------------------------------------------------------------------------------
# Reading imports
# --------------------------------------------------------------------------------------------

def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def read_imports(source: str) -> tuple[set[str], set[str]]:
    """Top-level names of the absolute imports in ``source``: ``(eager, lazy)``.

    Eager imports run when the module is imported (module level, class bodies, ``try``/``if``
    blocks); lazy ones sit inside a function. ``if TYPE_CHECKING:`` blocks are skipped, and
    standard-library modules are left out. Calls of the functions in :data:`HIDDEN_IMPORTS`
    count as lazy imports of the module they need.
    """
    eager: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if _is_type_checking(node):
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            lazy.update(HIDDEN_IMPORTS[a.name] for a in node.names if a.name in HIDDEN_IMPORTS)
        elif isinstance(node, ast.Attribute) and node.attr in HIDDEN_IMPORTS:
            lazy.add(HIDDEN_IMPORTS[node.attr])
        (lazy if in_function else eager).update(n.split(".")[0] for n in names)
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return eager - STDLIB, lazy - STDLIB


_CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def code_cells(markdown: str) -> list[str]:
    """The Python source of each ``{code-cell}`` block of a MyST Markdown notebook.

    Cell options (``:tags: ...`` lines or a ``---`` YAML block) are dropped, and IPython lines
    (``%magic``, ``!shell``) become ``pass`` at the same indentation, so that the rest parses.
    """
    cells = []
    for match in _CODE_CELL.finditer(markdown):
        lines = match.group(1).splitlines()
        if lines and lines[0].strip() == "---":
            end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
            lines = lines[end + 1:]
        while lines and re.match(r"^:[\w-]+:", lines[0]):
            lines = lines[1:]
        cells.append("\n".join(
            line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
            for line in lines))
    return cells


def chapter_imports(markdown: str) -> set[str]:
    """Every third-party module the code cells of a chapter import (eager or lazy alike)."""
    found: set[str] = set()
    for cell in code_cells(markdown):
        eager, lazy = read_imports(cell)
        found |= eager | lazy
    return found


@lru_cache(maxsize=1)
def _installed_providers() -> dict[str, list[str]]:
    return packages_distributions()


def distributions_of(module: str) -> set[str]:
    """Canonical names of the distributions that may provide top-level ``module`` (empty if unknown)."""
    found = {_canon(d) for d in _installed_providers().get(module, [])}
    if module in KNOWN_DISTRIBUTIONS:
        found.add(_canon(KNOWN_DISTRIBUTIONS[module]))
    return found


def undeclared(modules: set[str], declared: set[str], local: set[str] = frozenset()) -> dict[str, str]:
    """``{module: why}`` for each imported module that no declared distribution provides.

    ``declared`` holds canonical distribution names; ``local`` modules (this project's own, or
    test helpers next to the tests) need no declaration.
    """
    missing = {}
    for module in sorted(modules - local - {"aebook"} - STDLIB):
        dists = distributions_of(module)
        if not dists:
            missing[module] = "no installed distribution provides it: declare it and add it to KNOWN_DISTRIBUTIONS"
        elif not dists & declared:
            missing[module] = f"provided by {', '.join(sorted(dists))}, which is not declared here"
    return missing


# --------------------------------------------------------------------------------------------
# What is declared
# --------------------------------------------------------------------------------------------

def _requirement_name(line: str) -> str | None:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return _canon(match.group(1)) if match else None


def pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("reading pyproject.toml needs Python 3.11's tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared() -> dict[str, set[str]]:
    """Canonical distribution names: ``core``, ``book``, ``test`` (pyproject.toml) and ``ci`` (requirements.txt)."""
    project = pyproject()["project"]
    groups = {"core": {_requirement_name(r) for r in project["dependencies"]}}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        groups[extra] = {_requirement_name(r) for r in reqs}
    groups["ci"] = {_requirement_name(line.split("#")[0]) for line in requirement_lines(ROOT / "requirements.txt")
                    if not line.startswith("-")}
    return {k: {n for n in v if n} for k, v in groups.items()}


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split(" #")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def library_files() -> list[Path]:
    return sorted((ROOT / "aebook").rglob("*.py"))


def chapter_files() -> list[Path]:
    """Every page of book/ with code cells: the chapters, whoever adds them."""
    return sorted(p for p in (ROOT / "book").glob("*.md") if _CODE_CELL.search(p.read_text()))


# --------------------------------------------------------------------------------------------
# The checker can fail
# --------------------------------------------------------------------------------------------

SYNTHETIC_MODULE = '''
from __future__ import annotations
import os
import numpy as np
from skimage import restoration
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import pandas
try:
    import sklearn.decomposition
except ImportError:
    pass

def smooth(img):
    import bm3d
    return restoration.denoise_wavelet(img)
'''


def test_read_imports_separates_eager_lazy_and_hidden():
    eager, lazy = read_imports(SYNTHETIC_MODULE)
    assert eager == {"numpy", "skimage", "sklearn"}  # os and typing are stdlib; pandas only for type checkers
    assert lazy == {"bm3d", "pywt"}  # pywt: what denoise_wavelet imports when called


def test_undeclared_catches_a_missing_declaration():
    eager, lazy = read_imports(SYNTHETIC_MODULE)
    core = {"numpy", "scikit-image"}
    missing = undeclared(eager, core)
    assert set(missing) == {"sklearn"}  # provided by scikit-learn, declared nowhere
    assert "scikit-learn" in missing["sklearn"]
    assert set(undeclared(eager | lazy, core | {"scikit-learn", "bm3d", "pywavelets"})) == set()
    assert set(undeclared({"surely_not_a_module_x"}, core)) == {"surely_not_a_module_x"}


def test_chapter_cells_are_read_around_magics_and_options():
    chapter = '''
Some prose with `import torch` that is not code.

```{code-cell} ipython3
:tags: [hide-output]

import sys
if "google.colab" in sys.modules:
    %pip install -q "aebook[book] @ git+https://example.org/aebook@v0.0.0"
```

```{code-cell} ipython3
---
tags: [parameters]
---
!ls
from IPython.display import Markdown
import bm3d, sklearn.datasets
```

```python
import not_a_cell
```
'''
    assert chapter_imports(chapter) == {"IPython", "bm3d", "sklearn"}
    missing = undeclared(chapter_imports(chapter), {"ipython", "bm3d"})
    assert set(missing) == {"sklearn"}


# --------------------------------------------------------------------------------------------
# Every import declared where it is needed
# --------------------------------------------------------------------------------------------

def test_library_module_level_imports_are_core():
    core = declared()["core"]
    problems = {}
    for path in library_files():
        eager, _ = read_imports(path.read_text())
        for module, why in undeclared(eager, core).items():
            problems[f"{path.relative_to(ROOT)}: {module}"] = why
    assert not problems, f"module-level imports of aebook/ must be core dependencies: {problems}"


def test_library_lazy_imports_are_core_or_book():
    groups = declared()
    problems = {}
    for path in library_files():
        _, lazy = read_imports(path.read_text())
        for module, why in undeclared(lazy, groups["core"] | groups.get("book", set())).items():
            problems[f"{path.relative_to(ROOT)}: {module}"] = why
    assert not problems, f"aebook/'s lazy imports must be core or [book] dependencies: {problems}"


def test_command_line_imports_are_core():
    eager, lazy = read_imports((ROOT / "aebook" / "cli.py").read_text())
    missing = undeclared(eager | lazy, declared()["core"])
    assert not missing, f"aebook/cli.py imports something outside core: {missing}"


def test_chapter_imports_are_core_or_book():
    groups = declared()
    allowed = groups["core"] | groups.get("book", set())
    chapters = chapter_files()
    assert len(chapters) >= 10, [p.name for p in chapters]
    problems = {p.name: undeclared(chapter_imports(p.read_text()), allowed) for p in chapters}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, f"chapters import what neither core nor aebook[book] declares: {problems}"


def test_test_and_benchmark_imports_are_declared():
    groups = declared()
    allowed = set().union(*groups.values())
    problems = {}
    for folder in ("tests", "benchmarks"):
        files = sorted((ROOT / folder).glob("*.py"))
        local = {p.stem for p in files}
        for path in files:
            eager, lazy = read_imports(path.read_text())
            for module, why in undeclared(eager | lazy, allowed, local).items():
                problems[f"{folder}/{path.name}: {module}"] = why
    assert not problems, f"undeclared imports (pyproject [test] or requirements.txt): {problems}"


def test_ranges_not_pins_and_requirements_installs_the_extras():
    project = pyproject()["project"]
    specs = list(project["dependencies"]) + [r for reqs in project["optional-dependencies"].values() for r in reqs]
    specs += requirement_lines(ROOT / "requirements.txt")
    pinned = [s for s in specs if "==" in s or "===" in s]
    assert not pinned, f"exact pins replace Colab's own torch: {pinned}"
    assert {"book", "test"} <= set(project["optional-dependencies"])
    lines = requirement_lines(ROOT / "requirements.txt")
    assert "-e .[book,test]" in lines, lines  # the one line that gets everything
    groups = declared()
    twice = groups["ci"] & (groups["core"] | groups["book"] | groups["test"])
    assert not twice, f"requirements.txt repeats what pyproject.toml declares: {twice}"


# --------------------------------------------------------------------------------------------
# Every command runs with core dependencies only
# --------------------------------------------------------------------------------------------

def core_closure() -> set[str]:
    """Canonical names of core's dependencies and theirs, as installed here (markers evaluated)."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    todo = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
    seen = {"aebook"}
    while todo:
        req = todo.pop()
        name = _canon(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in distribution(req.name).requires or []]
        except PackageNotFoundError:
            pass
    return seen


#: One call for each subcommand; {img}, {rgb}, {mask} and {tmp} are filled in. A new subcommand
#: must be added here (the test fails until it is), so that it too is checked with core only.
CLI_CALLS = {
    "train": ["train", "--dataset", "digits", "--model", "vae", "--latent-dim", "4", "--epochs", "1",
              "--limit", "64", "--quiet", "--out", "{tmp}/run"],
    "evaluate": ["evaluate", "{tmp}/run", "--limit", "64", "--baseline", "pca"],
    "sample": ["sample", "{tmp}/run", "--n", "4", "--out", "{tmp}/samples.npy"],
    "compress": ["compress", "{img}", "{tmp}/x.aeb"],
    "decompress": ["decompress", "{tmp}/x.aeb", "{tmp}/x.png"],
    "train-restorer": ["train-restorer", "denoise", "--epochs", "1", "--n-patches", "16", "--patch-size", "16",
                       "--depth", "3", "--width", "8", "--batch-size", "8", "--quiet", "--out", "{tmp}/restorer"],
    "denoise": ["denoise", "{img}", "{tmp}/d.png", "--sigma", "25"],
    "inpaint": ["inpaint", "{rgb}", "{mask}", "{tmp}/i.png"],
    "upscale": ["upscale", "{img}", "{tmp}/u.png", "--scale", "2"],
    "enhance": ["enhance", "{rgb}", "{tmp}/e.png"],
}

_CORE_ONLY_RUNNER = r'''
import importlib.machinery, json, re, sys
blocked, blocked_dists = (set(x) for x in json.loads(sys.argv[1]))

class CoreOnlyPathFinder:
    # sys.path's finder, minus every package outside core's dependency closure: imports of them
    # fail and importlib.util.find_spec / importlib.metadata do not see them, as after a plain
    # `pip install aebook`.
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)

    @staticmethod
    def find_distributions(context=None):
        from importlib.metadata import DistributionFinder
        for dist in importlib.machinery.PathFinder.find_distributions(context or DistributionFinder.Context()):
            if re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower() not in blocked_dists:
                yield dist

    @staticmethod
    def invalidate_caches():
        importlib.machinery.PathFinder.invalidate_caches()

blocked -= {m.partition(".")[0] for m in sys.modules}  # what the interpreter's start-up (.pth files) loaded
sys.meta_path[:] = [CoreOnlyPathFinder if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
from aebook.cli import main
results = {}
for command, argv in json.loads(sys.argv[2]).items():
    try:
        results[command] = main(argv)
    except BaseException as exc:  # a traceback is a failure too: report it and go on
        import traceback
        traceback.print_exc()
        results[command] = f"{type(exc).__name__}: {exc}"
print("RESULTS " + json.dumps(results))
'''


def test_every_command_runs_with_core_dependencies_only(tmp_path):
    from PIL import Image
    import numpy as np

    from aebook.cli import build_parser

    commands = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    assert commands == set(CLI_CALLS), f"add an invocation for every subcommand to CLI_CALLS: {commands ^ set(CLI_CALLS)}"

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[16:32, 16:32] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    fill = {"{img}": str(tmp_path / "gray.png"), "{rgb}": str(tmp_path / "rgb.png"),
            "{mask}": str(tmp_path / "mask.png"), "{tmp}": str(tmp_path)}
    calls = {c: [fill.get(a, a).replace("{tmp}", str(tmp_path)) for a in argv] for c, argv in CLI_CALLS.items()}

    closure = core_closure()
    blocked = sorted(m for m, dists in _installed_providers().items()
                     if m not in STDLIB and m != "aebook" and not {_canon(d) for d in dists} & closure)
    assert "bm3d" in blocked or "bm3d" not in _installed_providers()  # the blocker blocks the [book] extras
    env = {**os.environ, "OMP_NUM_THREADS": "2", "AEBOOK_DEVICE": "cpu"}
    blocked_dists = sorted({_canon(d) for m in blocked for d in _installed_providers()[m]} - closure)
    proc = subprocess.run([sys.executable, "-c", _CORE_ONLY_RUNNER, json.dumps([blocked, blocked_dists]),
                           json.dumps(calls)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")), None)
    assert line is not None, proc.stderr[-3000:]
    results = json.loads(line[len("RESULTS "):])
    failed = {c: code for c, code in results.items() if code != 0}
    assert not failed, f"commands failed with core dependencies only: {failed}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "x.png").exists() and (tmp_path / "restorer").is_dir()


# --------------------------------------------------------------------------------------------
# One version, one pinned install in every chapter
# --------------------------------------------------------------------------------------------

def aebook_version() -> str:
    tree = ast.parse((ROOT / "aebook" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__version__" for t in targets):
                return ast.literal_eval(node.value)
    raise AssertionError("aebook/__init__.py has no __version__")


def colab_install_line() -> str:
    """The one install command every chapter's Colab cell must run: aebook[book] at tag v<version>."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    return f'%pip install -q "aebook[book] @ git+{url}@v{aebook_version()}"'


def test_version_is_named_in_one_place():
    v = aebook_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", v), v
    project = pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "aebook.__version__"}
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and str(cff["version"]) == v
    assert cff["authors"] and cff["title"] and cff["message"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(v)}\]", changelog, re.M), f"CHANGELOG.md has no section for {v}"
    assert re.search(r"^## \[Unreleased\]", changelog, re.M)
    tags = set(re.findall(r"git\+https://\S+?@(v[\w.]+)", (ROOT / "README.md").read_text()))
    assert tags <= {f"v{v}"}, f"README installs {tags}, not v{v}"


def test_installed_metadata_has_this_version():
    import aebook

    assert aebook.__version__ == aebook_version()
    try:
        installed = version("aebook")
    except PackageNotFoundError:
        pytest.skip("aebook is imported from the source tree, not installed")
    assert installed == aebook_version(), "stale metadata: reinstall with pip install -e ."


def test_every_chapter_installs_the_pinned_release_on_colab():
    expected = colab_install_line()
    chapters = chapter_files()
    pages = chapters + [ROOT / "book" / "CHAPTER_TEMPLATE.txt"]
    for page in pages:
        text = page.read_text()
        first = _CODE_CELL.search(text)
        assert first is not None and expected in first.group(1), f"{page.name}: first code cell must run {expected}"
        stray = [line.strip() for line in text.splitlines()
                 if "pip install" in line and "aebook" in line and "git+" in line and line.strip() != expected]
        assert not stray, f"{page.name}: another aebook install line than {expected}: {stray}"
    for md in chapters:
        ipynb = md.with_suffix(".ipynb")
        if ipynb.exists():
            cells = [c for c in json.loads(ipynb.read_text())["cells"] if c["cell_type"] == "code"]
            assert expected in "".join(cells[0]["source"]), f"{ipynb.name} differs: jupytext --sync {md.name}"


def test_colab_line_names_the_tag_of_this_version():
    line = colab_install_line()
    assert f"@v{aebook_version()}\"" in line and "aebook[book] @ git+https://" in line


# --------------------------------------------------------------------------------------------
# Licence, wheel contents, Binder, CI
# --------------------------------------------------------------------------------------------

def test_licence_names_code_weights_and_data():
    text = " ".join((ROOT / "LICENSE").read_text().split())
    assert text.startswith("MIT License")
    for needed in ("aebook/zoo/weights", "aebook/datasets/mnist_sample.npz", "LeCun",
                   "Creative Commons Attribution-Share Alike 3.0"):
        assert needed in text, needed
    assert pyproject()["project"]["license"] == "MIT AND CC-BY-SA-3.0"


def test_wheel_ships_weights_data_and_licence(tmp_path):
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "aebook", src / "aebook", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]  # offline: needs setuptools >= 77 installed ([test])
    wheel = next((tmp_path / "dist").glob("aebook-*.whl"))
    assert wheel.name.startswith(f"aebook-{aebook_version()}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    manifest = json.loads((ROOT / "aebook" / "zoo" / "weights" / "MANIFEST.json").read_text())["models"]
    for entry in manifest.values():
        for f in ("model.safetensors", "config.json"):
            assert f"aebook/zoo/weights/{entry['path']}/{f}" in names, (entry["path"], f)
    assert "aebook/zoo/weights/MANIFEST.json" in names
    shipped_data = {p.relative_to(ROOT).as_posix() for p in (ROOT / "aebook" / "datasets").glob("*.npz")}
    assert shipped_data <= names, shipped_data - names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "aebook/cli.py" in names and not any(n.startswith(("tests/", "book/")) for n in names)


def test_binder_runs_the_chapters_on_a_cpu_without_test_tools():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    button = bool(config.get("launch_buttons", {}).get("binderhub_url"))
    binder = ROOT / "binder"
    assert button == (binder / "requirements.txt").exists(), "a Binder button needs binder/, and binder/ a button"
    if not button:
        return
    lines = requirement_lines(binder / "requirements.txt")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines  # CPU wheels
    names = {_requirement_name(line) for line in lines if not line.startswith("-")}
    assert {"torch", "jupytext"} <= names
    post_build = binder / "postBuild"
    assert os.access(post_build, os.X_OK) and 'pip install --no-cache-dir ".[book]"' in post_build.read_text()
    tools = {"pytest", "nbval", "hypothesis", "playwright", "jupyter-book"}
    assert not names & tools and not any(t in post_build.read_text() for t in tools)


def test_ci_runs_the_readme_test_command_on_every_push_and_pull_request():
    command = "pip install -r requirements.txt && AEBOOK_QUICK=1 python -m pytest"
    assert command in (ROOT / "README.md").read_text()
    workflows = {p.name: p.read_text() for p in (ROOT / ".github" / "workflows").glob("*.yml")}
    running = [name for name, text in workflows.items() if command in text]
    assert running, "no workflow runs the README's test command"
    for name in running:
        triggers = yaml.safe_load(workflows[name])[True]  # YAML 1.1 reads the key 'on' as True
        assert "push" in triggers and "pull_request" in triggers, (name, triggers)
        assert (triggers["push"] or {}).get("branches") is None, "tests run on every branch"
    old = {name: re.findall(r"actions/(?:checkout|setup-python)@v[1-5]\b|actions/upload-pages-artifact@v[1-4]\b"
                            r"|actions/deploy-pages@v[1-4]\b", text) for name, text in workflows.items()}
    assert not any(old.values()), f"outdated action majors: {old}"
