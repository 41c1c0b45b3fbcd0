"""Helpers for the browser test (tests/test_browser.py): the book's pages in table-of-contents
order, what each page should show (title, Colab link), and a local web server for the built site.

Nothing here downloads anything: the site is served from ``_build/html`` on 127.0.0.1, and the
browser is the system's Chromium (Debian's ``chromium`` package), driven by Playwright for Python.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import re
import threading
from pathlib import Path
from typing import Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = Path(os.environ.get("AEBOOK_HTML_DIR", ROOT / "_build" / "html")).resolve()  # .ci/browser points it at its quick build
SCREENSHOT_DIR = ROOT / "_build" / "screenshots"
BUILD_COMMAND = "AEBOOK_QUICK=1 jupyter-book build . -W -n --keep-going"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_ENV = "AEBOOK_REQUIRE_BROWSER"


def toc_pages() -> list[str]:
    """Docnames (``book/01_introduction``) of every page in ``_toc.yml``, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part["chapters"]:
            pages.append(chapter["file"])
            pages += [s["file"] for s in chapter.get("sections", [])]
    return pages


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def source_title(docname: str) -> str:
    """The page's first level-1 Markdown heading (outside front matter and code fences)."""
    text = (ROOT / f"{docname}.md").read_text()
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("# "):
            return line[2:].strip()
    raise ValueError(f"{docname}.md has no '# ' title")


def expected_colab_url(docname: str) -> str | None:
    """Where the page's Colab launch link must point, or None for a page without a notebook.

    A chapter is a MyST Markdown notebook paired with ``{docname}.ipynb``; Colab opens the
    ``.ipynb`` in the repository, branch and book folder that ``_config.yml`` names.
    """
    if not (ROOT / f"{docname}.ipynb").exists():
        return None
    cfg = config()
    repo = cfg["repository"]
    owner_repo = repo["url"].rstrip("/").split("github.com/")[1]
    book_dir = (repo.get("path_to_book") or "").strip("/")
    path = f"{book_dir}/{docname}.ipynb" if book_dir else f"{docname}.ipynb"
    colab = cfg["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{owner_repo}/blob/{repo.get('branch', 'main')}/{path}"


def browser_missing() -> str | None:
    """Why the browser test cannot run here (None when Chromium and Playwright are installed)."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright; no 'playwright install' needed)")
    return " and ".join(missing) or None


def browser_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 at a free port in a background thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
