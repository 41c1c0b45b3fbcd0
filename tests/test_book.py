"""The book's structure: every page in _toc.yml exists, notebook pairs are in sync, no outputs stored."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


from book_site import toc_pages as toc_files  # the one reader of _toc.yml in the tests


def notebooks() -> list[Path]:
    return [ROOT / f"{f}.md" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def test_every_toc_page_exists():
    for f in toc_files():
        assert (ROOT / f"{f}.md").exists(), f"{f}.md listed in _toc.yml is missing"


def test_every_notebook_is_in_the_toc():
    listed = {ROOT / f"{f}.ipynb" for f in toc_files()}
    for nb in (ROOT / "book").rglob("*.ipynb"):
        if ".ipynb_checkpoints" not in nb.parts:
            assert nb in listed, f"{nb.relative_to(ROOT)} is not in _toc.yml (nbval would run it anyway)"


def is_notebook(md: Path) -> bool:
    """A page is a notebook when its front matter declares jupytext (code cells); other pages are plain MyST."""
    return md.read_text().startswith("---") and "jupytext:" in md.read_text().split("---")[1]


def test_chapters_are_paired():
    chapters = [f for f in toc_files() if is_notebook(ROOT / f"{f}.md")]
    assert len(chapters) >= 7, f"expected the chapters of parts 1-3 in _toc.yml, found {chapters}"
    for f in chapters:
        assert (ROOT / f"{f}.ipynb").exists(), f"{f}.md has no paired .ipynb: run jupytext --sync {f}.md"
    for f in toc_files():
        if not is_notebook(ROOT / f"{f}.md"):
            assert "{code-cell}" not in (ROOT / f"{f}.md").read_text(), f"{f}.md has code cells but no jupytext header"


@pytest.mark.parametrize("md", notebooks(), ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(md):
    text_nb = jupytext.read(md)
    ipynb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    a = [(c.cell_type, c.source.strip()) for c in text_nb.cells]
    b = [(c.cell_type, c.source.strip()) for c in ipynb.cells]
    assert a == b, f"{md.name} and its .ipynb differ: run jupytext --sync {md.relative_to(ROOT)}"
    for c in ipynb.cells:
        if c.cell_type == "code":
            assert not c.get("outputs"), f"{md.with_suffix('.ipynb').name} stores outputs: clear them"


MAX_CHAPTER_CHARS = 30_000  # a chapter longer than this is split or moved into the library


@pytest.mark.parametrize("md", notebooks(), ids=lambda p: p.stem)
def test_chapter_is_under_the_length_limit(md):
    n = len(md.read_text())
    assert n < MAX_CHAPTER_CHARS, f"{md.name} has {n:,} characters (limit {MAX_CHAPTER_CHARS:,}): shorten it"


@pytest.mark.parametrize("md", notebooks(), ids=lambda p: p.stem)
def test_colab_install_cell_uses_the_configured_repository(md):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    text = md.read_text()
    # the release tag after '@' is checked against aebook.__version__ by tests/test_packaging.py
    installs = re.findall(r'%pip install -q "aebook\[book\] @ git\+([^"@]+)@v[^"]+"', text)
    assert installs, f"{md.name} has no Colab install cell"
    assert all(u == url for u in installs), f"{md.name} installs from {installs}, _config.yml says {url}"
    assert 'if "google.colab" in sys.modules' in text


def test_quick_mode_is_set_by_the_test_command():
    import aebook

    readme = (ROOT / "README.md").read_text()
    assert "AEBOOK_QUICK=1 python -m pytest" in readme
    assert "AEBOOK_QUICK=1 python -m pytest" in (ROOT / ".ci" / "run").read_text()
    assert aebook.quick_mode(), "run the tests with AEBOOK_QUICK=1 (the README's test command)"
