"""Open every page of the built book in headless Chromium, the way a reader sees it.

For each page in ``_toc.yml`` (in reading order) the test checks that the page renders (an h1,
and the browser title matches the chapter's title), that every image has loaded, that the
"next" link leads to the next page of the table of contents, that the browser console shows
no errors (nor failed requests), and that the Colab launch link opens the page's ``.ipynb`` in
the repository named in ``_config.yml``. The pages are served from localhost and every request
to another host is blocked, so the result does not depend on the network (see
``EXPECTED_EXTERNAL`` and ``IGNORED_ERRORS`` for the only exceptions, and why). A full-page screenshot of each page goes to ``_build/screenshots/`` for
review.

Run it after building the book (``.ci/browser`` does both)::

    AEBOOK_QUICK=1 jupyter-book build . -W -n --keep-going
    AEBOOK_REQUIRE_BROWSER=1 python -m pytest -m browser tests/test_browser.py

Policy: without a built site the test fails; without Chromium (``/usr/bin/chromium``) or the
``playwright`` package it is skipped, unless ``AEBOOK_REQUIRE_BROWSER=1`` makes that a failure.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest

from book_site import (
    BUILD_COMMAND,
    CHROMIUM,
    CHROMIUM_ARGS,
    HTML_DIR,
    REQUIRE_ENV,
    SCREENSHOT_DIR,
    browser_missing,
    browser_required,
    config,
    expected_colab_url,
    serve,
    source_title,
    toc_pages,
)

pytestmark = pytest.mark.browser

PAGES = toc_pages()
TIMEOUT_MS = 60_000  # generous: the machine may be busy

# The test runs offline and gives the same answer with or without a network: it blocks every
# request to another host. A page may ask another host only for these (each is loaded from its
# CDN in a reader's browser), so only these blocked requests are not errors. In the screenshots,
# math therefore shows as TeX source.
EXPECTED_EXTERNAL = (
    "https://cdn.jsdelivr.net/npm/mathjax@3/",  # MathJax, which Sphinx uses to typeset math
)
# Known, harmless console errors, ignored by their exact text (everything else fails the test):
IGNORED_ERRORS = (
    # Sphinx 7.4 emits inline scripts that an extension adds after the builder starts twice
    # (sphinx/builders/html/__init__.py re-adds the registry's files with filename '' instead
    # of None, so they are not deduplicated); sphinx-thebe's inline configuration starts with
    # `const THEBE_JS_URL = ...`, so the identical second copy throws. The first copy has set
    # everything, and the book does not enable thebe ("Live Code") anyway.
    "uncaught exception: Identifier 'THEBE_JS_URL' has already been declared",
)

# Wait until every <img> has finished loading (or failed), then report its size.
IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = "eager"; }
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  return imgs.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}
"""
# The h1's text without Sphinx's "#" permalink.
H1_JS = """
() => {
  const h1 = document.querySelector("main h1, article h1, h1");
  if (!h1) return null;
  const copy = h1.cloneNode(true);
  copy.querySelectorAll(".headerlink").forEach(a => a.remove());
  return copy.textContent.trim();
}
"""


@pytest.fixture(scope="session")
def site():
    """The built site, served on localhost for the whole session (None if it is not built)."""
    if not (HTML_DIR / "index.html").exists():
        yield None
        return
    with serve(HTML_DIR) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium through Playwright (never a downloaded browser)."""
    missing = browser_missing()
    if missing:
        message = f"browser test needs {missing}"
        if browser_required():
            pytest.fail(f"{message} ({REQUIRE_ENV}=1 is set)", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def page_url(base_url: str, docname: str) -> str:
    return f"{base_url}/{docname}.html"


def same_page(url: str, base_url: str, docname: str) -> bool:
    """Whether ``url`` (absolute) is the page ``docname`` of the local site."""
    return urlsplit(url)._replace(fragment="", query="").geturl() == page_url(base_url, docname)


@pytest.mark.parametrize("index", range(len(PAGES)), ids=[p.split("/")[-1] for p in PAGES])
def test_page_in_browser(site, index, request):
    # A missing build fails the test; a missing browser skips it (fails with AEBOOK_REQUIRE_BROWSER=1).
    if site is None:
        pytest.fail(f"build the book first: {BUILD_COMMAND} (then rerun this test); "
                    f"{HTML_DIR / 'index.html'} is missing", pytrace=False)
    browser = request.getfixturevalue("browser")
    docname = PAGES[index]
    url = page_url(site, docname)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    blocked: set[str] = set()  # external requests this test refused, all expected ones
    favicon = f"{site}/favicon.ico"  # asked for by the browser itself when a page names no icon

    def route(request_route):
        url_ = request_route.request.url
        if url_.startswith(f"{site}/"):
            request_route.continue_()
            return
        if url_.startswith(EXPECTED_EXTERNAL):
            blocked.add(url_)
        else:
            problems.append(f"requests a resource from another host: {url_}")
        request_route.abort()

    def on_console(msg):
        source = msg.location.get("url", "")
        if msg.type != "error" or source in blocked:
            return
        if source == favicon and "404" in msg.text:
            return
        problems.append(f"console.error: {msg.text} ({source})")

    def on_pageerror(exc):
        text = f"uncaught exception: {exc}"
        if text not in IGNORED_ERRORS:
            problems.append(text)

    def on_requestfailed(request):
        if request.url not in blocked:
            problems.append(f"request failed: {request.url} ({request.failure})")

    def on_response(response):
        if response.status >= 400 and response.url != favicon:
            problems.append(f"HTTP {response.status} for {response.url}")

    page.route("**/*", route)
    page.on("console", on_console)
    page.on("pageerror", on_pageerror)
    page.on("requestfailed", on_requestfailed)
    page.on("response", on_response)
    try:
        response = page.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{url}: HTTP {response.status if response else 'no response'}"
        page.wait_for_load_state("networkidle")

        # 1. The page renders: an h1, and the browser title is the chapter title.
        title = source_title(docname)
        h1 = page.evaluate(H1_JS)
        if h1 is None:
            problems.append("no <h1> on the page")
        elif h1 != title:
            problems.append(f"h1 is {h1!r}, the source's title is {title!r}")
        book_title = config()["title"]
        if page.title() != f"{title} — {book_title}":
            problems.append(f"browser title is {page.title()!r}, expected {title + ' — ' + book_title!r}")

        # 2. Every image loaded.
        images = page.evaluate(IMAGES_JS)
        broken = [img["src"] for img in images if img["width"] == 0]
        if broken:
            problems.append(f"{len(broken)} of {len(images)} images did not load: {broken}")

        # 3. "Next" goes to the next page of the table of contents (the last page has none).
        next_links = page.locator("a.right-next")
        if index + 1 < len(PAGES):
            if next_links.count() == 0:
                problems.append(f"no 'next' link (expected {PAGES[index + 1]})")
            else:
                href = urljoin(url, next_links.first.get_attribute("href"))
                if not same_page(href, site, PAGES[index + 1]):
                    problems.append(f"'next' goes to {href}, expected {page_url(site, PAGES[index + 1])}")
        elif next_links.count():
            problems.append(f"the last page has a 'next' link to {next_links.first.get_attribute('href')}")

        # 4. The Colab launch link opens this page's notebook in the configured repository.
        colab = [a.get_attribute("href") for a in page.locator("a[href*='colab.research.google.com']").all()]
        expected = expected_colab_url(docname)
        if expected is None:
            if colab:
                problems.append(f"a page without a notebook has Colab links {colab}")
        elif colab != [expected]:
            problems.append(f"Colab links are {colab}, expected exactly [{expected!r}]")
    finally:
        page.screenshot(path=str(SCREENSHOT_DIR / f"{index:02d}_{docname.split('/')[-1]}.png"), full_page=True)
        page.close()

    # 5. Also collected above, while the page ran: no console errors, uncaught exceptions,
    # failed requests or requests to unexpected hosts.
    assert not problems, f"{docname} ({url}):\n  " + "\n  ".join(problems)
