"""The book: every chapter runs on the quick profile, the book builds, its pages
load in a browser with working figures and players, and the results files are
reproducible byte for byte.

The chapters run in a scratch copy of the book (``MER_ROOT``: ``_config.yml``,
``_toc.yml``, ``book/*.md|bib``, ``notebooks/``), so the repository's own
``book/chapters`` and ``_build`` are left alone. Datasets and derived artefacts
are shared with the repository's ``data/`` (``MER_DATA``): they are named by a
content hash of their parameters and code, so sharing them is safe and spares
the tests rendering the synthetic set again.

``MER_BOOK_CHAPTERS=00_data,01_features`` restricts the run to some chapters
(the others are placeholder pages), for work on a chapter.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
import time
from pathlib import Path

import nbformat
import pytest

from mer import profiles, runner

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
if os.environ.get("MER_BOOK_CHAPTERS"):  # e.g. "00_data,01_features": a partial book while writing one
    CHAPTERS = [c for c in CHAPTERS if c in os.environ["MER_BOOK_CHAPTERS"].split(",")]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
#: Elements Sphinx wraps TeX in; the book serves MathJax itself
#: (sphinx-mathjax-offline), so every page with one must show typeset maths offline.
MATH_SELECTOR = ".math"
#: The two scripts myst-nb adds to a page with ipywidgets outputs (RequireJS and
#: the widgets' HTML manager, from CDNs, with integrity hashes, so they cannot be
#: stubbed). Offline they fail; only the console errors naming these URLs are
#: ignored: a widget then shows its text fallback.
WIDGETS_URLS = re.compile(r"^https://(cdnjs\.cloudflare\.com/ajax/libs/require\.js/[0-9.]+/require\.min\.js"
                          r"|cdn\.jsdelivr\.net/npm/@jupyter-widgets/html-manager@[0-9.]+/dist/embed-amd\.js)$")
#: Errors the pinned toolchain itself causes, ignored by exact text:
#: - sphinx-thebe 0.3.1 under Jupyter Book 1.0.4 / Sphinx 7.4 writes its config
#:   script (``const THEBE_JS_URL = ...``) twice into every page, so the second
#:   one throws; thebe (live code) is off in this book, nothing else depends on it;
#: - the failed loads of the widget scripts of WIDGETS_URLS (offline machine).
KNOWN_PAGE_ERRORS = re.compile(
    r"^page error: Identifier 'THEBE_JS_URL' has already been declared$"
    r"|^console: Failed to load resource: net::ERR_FAILED \((https://cdnjs\.cloudflare\.com/ajax/libs/require\.js/"
    r"[0-9.]+/require\.min\.js|https://cdn\.jsdelivr\.net/npm/@jupyter-widgets/html-manager@[0-9.]+/dist/embed-amd\.js)\)$")
#: Every player in the book plays a clip of this length (mer.audio.DURATION).
CLIP_SECONDS = 10.0


# ---------------------------------------------------------------------------
# Pages, without a build
# ---------------------------------------------------------------------------

def test_reproducing_page_lists_every_profile_value():
    page = (REPO / "book" / "reproducing.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): [c.strip().strip("`") for c in line.split("|")[2:5]]
            for line in page.splitlines() if line.startswith("| `")}
    for name, profile in profiles.PROFILES.items():
        for key, value in profile.items():
            assert key in rows, f"book/reproducing.md: parameter {key!r} missing from the profile table"
            column = ["quick", "default", "thesis"].index(name)
            shown = rows[key][column]
            expected = '""' if value == "" else str(value)
            assert shown == expected, f"book/reproducing.md: {key} in {name} is {shown}, profiles.py says {expected}"


def test_api_page_documents_every_module():
    page = (REPO / "book" / "api.md").read_text(encoding="utf-8")
    package = REPO / "mer"
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        assert f"automodule:: {module}\n" in page, f"book/api.md does not document {module}"


def test_toc_lists_every_chapter(monkeypatch):
    monkeypatch.setenv("MER_ROOT", str(REPO))
    listed = runner.toc_chapters()
    for chapter in CHAPTERS:
        assert chapter in listed, f"_toc.yml does not list book/chapters/{chapter}"


def test_every_citation_is_in_the_bibliography():
    from pybtex.database import parse_file

    keys = set(parse_file(str(REPO / "book" / "references.bib")).entries)
    sources = [p.read_text(encoding="utf-8") for p in (REPO / "book").glob("*.md")]
    sources += [p.read_text(encoding="utf-8") for p in (REPO / "notebooks").glob("*.ipynb")]
    cited = set()
    for text in sources:
        for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "no citation found in the book"
    assert not cited - keys, f"cited but not in book/references.bib: {sorted(cited - keys)}"


# ---------------------------------------------------------------------------
# The quick book
# ---------------------------------------------------------------------------

def scratch_root(root: Path) -> Path:
    """A copy of the book's sources (config, toc, pages, notebooks) to run chapters in."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / name, root / name)
    (root / "book").mkdir()
    for path in (REPO / "book").iterdir():
        if path.is_file():
            shutil.copy2(path, root / "book" / path.name)
        elif path.name != "chapters" and not path.name.startswith((".", "__")):
            shutil.copytree(path, root / "book" / path.name,
                            ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Run every chapter with the quick profile in a scratch root and build the book."""
    if not CHAPTERS:
        pytest.skip("no chapter notebook in notebooks/")
    root = scratch_root(tmp_path_factory.mktemp("book-root"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MER_ROOT", str(root))
        patch.setenv("MER_DATA", os.environ.get("MER_DATA", str(REPO / "data")))
        patch.delenv("MER_BUILD", raising=False)
        report = runner.run(CHAPTERS, profile="quick", force=True, build=True, progress=False)
        yield root, report


def test_every_chapter_runs_and_the_book_builds(book):
    root, report = book
    assert report.executed == CHAPTERS
    html = root / "_build" / "html"
    assert (html / "index.html").is_file()
    for page in ("book/intro.html", "book/reproducing.html", "book/api.html"):
        assert (html / page).is_file(), page
    for chapter in CHAPTERS:
        assert (html / "book" / "chapters" / f"{chapter}.html").is_file(), chapter
        assert not runner.is_placeholder(root / "book" / "chapters" / f"{chapter}.ipynb")
        assert runner.missing_glue_keys(root / "book" / "chapters" / f"{chapter}.ipynb") == [], chapter
        assert (root / "_build" / "results" / f"{chapter}.json").is_file(), \
            f"{chapter} did not call mer.report.finish"


def test_second_build_with_nothing_changed_is_skipped(book):
    started = time.perf_counter()
    report = runner.run(CHAPTERS, profile="quick", build=True, progress=False)
    seconds = time.perf_counter() - started
    assert report.executed == [], f"executed again: {report.reasons}"
    assert report.build_skipped and not report.built
    assert seconds < 30, f"an up-to-date `make book` took {seconds:.1f} s"


@pytest.fixture(scope="module")
def served(book):
    """``_build/html`` served on 127.0.0.1; yields the base URL."""
    root, _ = book
    handler = functools.partial(_QuietHandler, directory=str(root / "_build" / "html"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP range requests, as any web host serves them.

    Chromium reads an Ogg file's duration from its last page, fetched with a
    ``Range`` request; ``SimpleHTTPRequestHandler`` ignores ranges, and the
    browser then only estimates the duration from the bitrate.
    """

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def send_head(self):
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start, end = match.groups()
        if start:
            first, last = int(start), min(int(end) if end else size - 1, size - 1)
        else:  # a suffix range: the last N bytes
            first, last = max(size - int(end or 0), 0), size - 1
        if first > last:
            self.send_error(416, "range not satisfiable")
            return None
        handle = open(path, "rb")
        handle.seek(first)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return _Slice(handle, last - first + 1)


class _Slice:
    """The ``length`` bytes of an open file from its position (for ``copyfile``)."""

    def __init__(self, handle, length):
        self.handle, self.left = handle, length

    def read(self, size=-1):
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data

    def close(self):
        self.handle.close()


def _pages(book) -> list[str]:
    root, _ = book
    html = root / "_build" / "html"
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0].startswith("_"))


def browse(base: str, pages: list[str]) -> tuple[list[str], int]:
    """Open each page of ``base`` in headless Chromium; return the problems found
    and the number of audio players seen.

    A problem is a console error or an uncaught exception, an ``<img>`` with
    no pixels, an ``<audio>`` that does not reach ``HAVE_METADATA`` or whose
    duration is not the clip's, maths that MathJax did not typeset (or
    typeset as a TeX error), or a request that leaves the local server.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    n_audio = 0
    external: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base):
            request_route.continue_()
        else:
            if not WIDGETS_URLS.match(url):
                external.append(url)
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.route("**/*", route)
            # Jupyter Book's index.html only redirects to the root page.
            page = context.new_page()
            page.goto(base + "index.html")
            try:
                page.wait_for_url("**/book/intro.html", timeout=15_000)
            except PlaywrightTimeout:
                problems.append(f"index.html did not lead to book/intro.html (at {page.url})")
            page.close()
            for name in pages:
                page = context.new_page()
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(
                    f"console: {m.text} ({m.location.get('url')})") if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(f"page error: {e}"))
                errors_known = KNOWN_PAGE_ERRORS
                page.goto(base + name, wait_until="load")
                images = page.eval_on_selector_all(
                    "img", "els => els.map(e => [e.currentSrc || e.src, e.complete, e.naturalWidth])")
                for src, complete, width in images:
                    if not (complete and width > 0):
                        problems.append(f"{name}: image {src[:80]} did not load (naturalWidth {width})")
                if page.eval_on_selector_all(MATH_SELECTOR, "els => els.length"):
                    try:
                        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                               timeout=15_000)
                        typeset, failed = page.evaluate(
                            "() => MathJax.startup.promise.then(() => [document.querySelectorAll('mjx-container')"
                            ".length, [...document.querySelectorAll('mjx-merror')].map(e => e.textContent)])")
                    except PlaywrightTimeout:
                        typeset, failed = 0, []
                    if not typeset:
                        problems.append(f"{name}: maths on the page but MathJax typeset none of it")
                    problems += [f"{name}: TeX error in the maths: {text}" for text in failed]
                count = page.eval_on_selector_all("audio", "els => els.length")
                n_audio += count
                if count:
                    try:
                        page.wait_for_function(
                            "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1)",
                            timeout=30_000)
                    except PlaywrightTimeout:
                        pass  # reported below, player by player
                    players = page.eval_on_selector_all(
                        "audio", "els => els.map(e => [e.currentSrc, e.readyState, e.duration, "
                                 "e.error ? e.error.code : null])")
                    for src, state, duration, error in players:
                        if state < 1:
                            problems.append(f"{name}: audio {src} has readyState {state} (error {error})")
                        elif abs(duration - CLIP_SECONDS) > 0.5:
                            problems.append(f"{name}: audio {src} lasts {duration:.2f} s, "
                                            f"expected {CLIP_SECONDS} s")
                problems += [f"{name}: {e}" for e in errors if not errors_known.search(e)]
                page.close()
        finally:
            browser.close()
    problems += [f"request outside the book: {url}" for url in sorted(set(external))]
    return problems, n_audio


def test_pages_load_in_a_browser_with_figures_and_players(book, served):
    if not CHROMIUM.exists():
        pytest.skip(f"browser test needs {CHROMIUM} (Debian package chromium)")
    pytest.importorskip("playwright.sync_api")
    pages = [p for p in _pages(book) if p != "index.html"]
    assert "book/intro.html" in pages
    problems, n_audio = browse(served, pages)
    assert not problems, "\n".join(problems)
    if "00_data" in CHAPTERS:
        assert n_audio >= 4, "the Data page should play at least 2 Happy and 2 Sad clips"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_results_are_byte_identical_when_run_again(book, chapter):
    root, _ = book
    results = root / "_build" / "results" / f"{chapter}.json"
    before = results.read_bytes()
    report = runner.run([chapter], profile="quick", force=True, build=False, progress=False)
    assert report.executed == [chapter]
    assert results.read_bytes() == before, f"_build/results/{chapter}.json changed on a second run"
    executed = nbformat.read(root / "book" / "chapters" / f"{chapter}.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"] == report.parameters[chapter]


def test_whole_book_renders_from_the_fourq_fixture(tmp_path):
    """The command a researcher with a corpus types, as they type it: a relative
    data_dir, from the repository, the quick profile, every chapter and the build."""
    import subprocess
    import sys

    root = tmp_path / "root"
    root.mkdir()
    scratch_root(root)
    env = dict(os.environ, MER_ROOT=str(root), MER_DATA=os.environ.get("MER_DATA", str(REPO / "data")))
    env.pop("MER_BUILD", None)
    done = subprocess.run([sys.executable, "-m", "mer", "run", "--profile", "quick", "-p", "dataset", "fourq",
                           "-p", "data_dir", "tests/fixtures/fourq"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for chapter in CHAPTERS:
        assert (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").is_file(), chapter
        assert not runner.is_placeholder(root / "book" / "chapters" / f"{chapter}.ipynb")
        # prose written for the synthetic set may cite what a corpus run cannot record: refused, not empty
        assert runner.missing_glue_keys(root / "book" / "chapters" / f"{chapter}.ipynb") == [], chapter
    import json

    stamp = json.loads((root / "_build" / "results" / "00_data.json").read_text())
    assert stamp["parameters"]["dataset"] == "fourq"
    assert stamp["parameters"]["data_dir"] == str(REPO / "tests" / "fixtures" / "fourq")
