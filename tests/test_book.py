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
import html
import importlib.util
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
#: No console error is allowed on any page, and no request to another host: the
#: book is read offline, so a CDN's RequireJS or ipywidgets manager, or a web
#: font, is a failure. (The one error the toolchain caused, sphinx-thebe's config
#: script written twice, is removed by book/_ext/merbook.py.)
#: The reader's first screen: a laptop browser window.
SCREEN = {"width": 1400, "height": 900}
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


#: Numbers the chapters' prose may type: settings and constants a reader can look up, not measurements.
#: Anything a run measures is glued ({glue:text}`key`) or lives, dated, in book/design.md.
TYPED_NUMBERS_ALLOWED = {
    "95 %": "the level of every bootstrap interval",
    "10 %": "the warm-up share of the learning-rate schedule",
    "4 %": "the tempo tolerance of the beat-tracking check (a setting of mer.features)",
    "0.08": "the generator's label noise sigma (generator.json)",
    "0.30": "the generator's articulation range (generator.json)",
    "0.95": "the generator's articulation range (generator.json)",
    "0.625": "the probe set's neutral articulation (generator.json)",
    "0.05": "AdamW weight decay",
    "0.1": "label smoothing; the Hann smoothing window of the sonification mask in s",
    "0.5": "the decision threshold on p(happy)",
    "0.56": "the duration of three pooled stripes in s (hop 512 x 4 / 22 050 Hz x 3)",
    "0.2": "mixup alpha in the design list",
    "0.01": "the model-selection tolerance of chapter 2's training (min_delta)",
    "0.90": "the balanced accuracy chapter 2 aims at (a target, not a result)",
    "0.8": "chapter 3's target for relevance mass accuracy",
    "30 %": "the largest share of a clip a probe window may cover for chapter 3's mass target",
    "5 %": "the step of chapter 3's region-perturbation curves",
    "2.1": "the version of lxt's PyPI release that chapter 3 names",
    "10.2": "the top band of the log-frequency front end in kHz (a setting of mer.spectrogram)",
}
#: Decimals, percentages and "one clip in ten" style shares in prose.
_MEASURED = re.compile(r"(?<![\w.])(\d+\.\d+(?:\s?%)?|\d+\s?%)|\b(?:one|two|three|four|five|six|seven|eight|nine)"
                       r" (?:\w+ )?in (?:ten|five|four|three|twenty|a hundred)\b", re.IGNORECASE)


def _prose(markdown: str) -> str:
    """A markdown cell without what may hold digits legitimately: glue, code, maths, labels, links, citations."""
    text = re.sub(r"\{glue(?::[a-z]*)?\}`[^`]*`", " ", markdown)
    text = re.sub(r"\{(?:cite|ref|doc|numref|eq)(?::[a-z]+)?\}`[^`]*`", " ", text)
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.DOTALL)
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"\b(?:sec|eq|ch|fig)\.\s*\d+(?:\.\d+)*", " ", text, flags=re.IGNORECASE)  # a book's section
    return re.sub(r"^\([\w-]+\)=$", " ", text, flags=re.MULTILINE)


def test_no_measured_number_is_typed_into_a_chapters_prose():
    """A number a run measured differs between CPUs; the prose cites the run's own (glue) or the dated appendix.

    The figure captions (myst-nb cell metadata, :func:`figure_options`) are prose too: a caption says what
    to look at, and the figure itself shows the run's numbers.
    """
    allowed = {str(v) for profile in profiles.PROFILES.values() for v in profile.values()} | set(TYPED_NUMBERS_ALLOWED)
    found = []
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for i, cell in enumerate(nbformat.read(str(path), as_version=4).cells):
            if cell.cell_type == "markdown":
                texts = [(f"cell {i}", cell.source)]
            else:
                caption = figure_options(cell).get("caption")
                texts = [(f"cell {i} figure caption", caption)] if isinstance(caption, str) else []
            for where, text in texts:
                for match in _MEASURED.finditer(_prose(text)):
                    value = match.group(0)
                    if value not in allowed and ("%" in value or value.replace(" %", "") not in allowed):
                        found.append(f"{path.stem} {where}: {match.group(0)!r}")
    assert not found, "typed measurements (glue them, or move them with a date to book/design.md): " + "; ".join(found)


# ---------------------------------------------------------------------------
# Figure captions, without a build
# ---------------------------------------------------------------------------
#
# Each figure of a chapter carries a numbered caption that says what to look at, set in
# its code cell's metadata: ``{"mystnb": {"figure": {"caption": ..., "name": "fig-..."}}}``.
# myst-nb wraps *every* rich output of such a cell (a table, a Markdown note, a player,
# each figure) in a figure with that caption and that name, so a captioned cell must show
# its figure and nothing else: tables and notes go to a cell of their own.

#: A call that draws a figure into the cell's output: a function of mer.plots (not its
#: ``save_*``, which write a file), a panel or view of mer.widgets, or mer.display's
#: ``show_figure`` / ``show_quadrants``.
_DRAWS = re.compile(r"\bmer\.(plots\.(?!save_)[a-z]\w*|widgets\.[a-z]\w*|display\.show_(?:figure|quadrants))\s*\("
                    r"|(?<![\w.])(show_figure)\s*\(")
#: Drawing calls whose cell cannot carry a caption, and why: in the book their output is
#: not a figure alone (myst-nb would caption the note, the headings and the players too).
UNCAPTIONED_CALLS = {
    "widgets.feature_model_panel": "in the book it shows mer.widgets.STATIC_NOTE only; the next cell draws "
                                   "its static figure, captioned",
    "widgets.sonification_panel": "in the book it shows mer.widgets.STATIC_NOTE only",
    "widgets.sonification_view": "a figure and its players, per setting, under headings; the figure is "
                                 "followed by a caption line (checked on the built page)",
    "display.show_quadrants": "a heading per quadrant and, per example, a figure, its caption line "
                              "(display.QUADRANT_CAPTIONS, checked on the built page) and its players",
}
#: A figure's name: its HTML id and the target of {numref}, ``fig-<chapter>-<slug>``.
FIGURE_NAME = re.compile(r"fig-[a-z]+(?:-[a-z0-9]+)+")


def figure_options(cell) -> dict:
    """The myst-nb figure options of a notebook cell (``{}`` if it has none)."""
    options = (cell.get("metadata", {}).get("mystnb") or {}).get("figure")
    return options if isinstance(options, dict) else {}


def figure_cells(chapter: str) -> list[tuple[int, object, list[str]]]:
    """``(index, cell, drawing calls)`` of every code cell of ``notebooks/<chapter>.ipynb`` that
    draws a figure or carries figure options (``mer.`` left out of the calls' names)."""
    found = []
    for i, cell in enumerate(nbformat.read(str(REPO / "notebooks" / f"{chapter}.ipynb"), as_version=4).cells):
        if cell.cell_type != "code":
            continue
        calls = [m.group(1) or m.group(2) for m in _DRAWS.finditer(cell.source)]
        if calls or figure_options(cell):
            found.append((i, cell, calls))
    return found


def caption_names(chapter: str) -> list[str]:
    """The figure names of the chapter's captioned cells, in order."""
    return [figure_options(cell).get("name") for _, cell, _ in figure_cells(chapter) if figure_options(cell)]


def test_every_figure_has_a_caption_and_a_unique_name():
    chapters = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    problems, owners = [], {}
    for chapter in chapters:
        prefixes = set()
        for i, cell, calls in figure_cells(chapter):
            where = f"{chapter} cell {i} ({cell.get('id')})"
            options = figure_options(cell)
            exempt = [call for call in calls if call in UNCAPTIONED_CALLS]
            if exempt:
                if options:
                    problems.append(f"{where}: calls {exempt[0]} ({UNCAPTIONED_CALLS[exempt[0]]}) but carries a "
                                    "figure caption, which myst-nb would put on every output")
                continue
            if not calls:
                problems.append(f"{where}: a figure caption on a cell that draws no figure")
            caption, name = options.get("caption"), options.get("name")
            if not isinstance(caption, str) or not caption.strip():
                problems.append(f"{where}: draws with {calls} but has no mystnb figure caption")
            elif "\n\n" in caption.strip():
                problems.append(f"{where}: the caption must be one paragraph")
            if not isinstance(name, str) or not FIGURE_NAME.fullmatch(name):
                problems.append(f"{where}: figure name {name!r} is not fig-<chapter>-<slug> (lower case)")
                continue
            if name in owners:
                problems.append(f"{where}: figure name {name!r} is also {owners[name]}'s")
            owners[name] = where
            prefixes.add(name.split("-")[1])
        if len(prefixes) > 1:
            problems.append(f"{chapter}: figure names with different chapter parts {sorted(prefixes)}")
    assert owners, "no captioned figure in the chapters"
    assert not problems, "\n".join(problems)


def test_a_captioned_cell_shows_nothing_but_its_figures():
    """myst-nb captions every rich output of a captioned cell, so such a cell neither calls
    ``display`` nor ends in an expression whose value is shown (a table, or the figure a second time)."""
    import ast

    problems = []
    for chapter in sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for i, cell, _ in figure_cells(chapter):
            if not figure_options(cell):
                continue
            where = f"{chapter} cell {i} ({cell.get('id')})"
            tree = ast.parse(cell.source)
            shown = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and (getattr(node.func, "id", None) == "display" or getattr(node.func, "attr", None) == "display")]
            if shown:
                problems.append(f"{where}: display(...) on line {shown[0]}; give it a cell of its own")
            if tree.body and isinstance(tree.body[-1], ast.Expr) and not cell.source.rstrip().endswith(";"):
                problems.append(f"{where}: ends in an expression whose value the cell would show; "
                                "end it with ';' or move it to a cell of its own")
    assert not problems, "\n".join(problems)


def test_api_page_documents_every_module():
    """The API page's module list is generated at build time from the package on disk."""
    page = (REPO / "book" / "api.md").read_text(encoding="utf-8")
    spec = importlib.util.spec_from_file_location("merbook", REPO / "book" / "_ext" / "merbook.py")
    merbook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merbook)
    assert merbook.API_MARKER in page
    generated = merbook.api_sections()
    for path in sorted((REPO / "mer").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        assert f"automodule:: {module}\n" in generated, f"the API page would not document {module}"
    assert "## `mer.vit`" in generated and "### `mer.vit.training`" in generated
    # mer.vit.train is defined in mer.vit.training and re-exported: documented once, under mer.vit
    training = generated.split("### `mer.vit.training`")[1].split("```{eval-rst}")[1].split("```\n")[0]
    excluded = re.search(r":exclude-members: (.*)", training).group(1).split(", ")
    assert {"train", "TrainOptions"} <= set(excluded) and "SIZES" not in excluded  # SIZES: imported, not defined there
    assert ":exclude-members:" not in generated.split("## `mer.vit`")[1].split("```{eval-rst}")[1].split("```\n")[0]


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
        names = caption_names(chapter)
        if names:  # the players have <figcaption>s of their own: look for the numbered figures too
            page = (html / "book" / "chapters" / f"{chapter}.html").read_text(encoding="utf-8")
            assert "<figcaption" in page, f"{chapter}: captioned cells, but no <figcaption> on the page"
            assert 'class="caption-number"' in page, f"{chapter}: no numbered figure caption on the page"
            assert any(re.search(rf'<figure\b[^>]*\bid="{re.escape(name)}"', page) for name in names), \
                f"{chapter}: none of the captioned figures {names} is on the page"


def test_the_book_builds_without_a_sphinx_warning(book):
    """Sphinx's warnings are things a reader sees: an API entry shown twice (a name re-exported by its
    package), a cross-reference that links to the wrong one of two, a figure or a page that is missing."""
    import json

    stamp = json.loads((book[0] / "_build" / ".mer-build.json").read_text())
    assert stamp["warnings"] == [], "\n".join(stamp["warnings"][:20])


def test_the_model_predict_and_explain_use_heard_every_key(book):
    """Chapter 2 records, for ``python -m mer predict`` and ``explain``, the every-key model of the tonal writing."""
    import json

    from mer import vit

    record = vit.recorded_chapter_model("quick")
    assert record is not None and record["profile"] == "quick"
    meta = json.loads((Path(record["checkpoint"]) / vit.META_FILE).read_text())
    assert meta["status"] == "done"
    assert meta["key_invariance"]["front_end"] == "logfreq" and meta["key_invariance"]["canonicalise"] == "tonic"
    assert meta["model_config"]["input_channels"] == "onsets" and meta["model_config"]["num_channels"] == 3
    results = json.loads((book[0] / "_build" / "results" / "02_vit.json").read_text())
    assert results["parameters"]["writing"] == "tonal"
    by_key = results["results"]["balanced_accuracy_by_key"]  # the carry-over check's keys (a few in quick)
    assert len(by_key) > 1 and set(by_key) <= {"C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"}


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
            context.close()
            for name in pages:
                # A fresh browser profile per page: what a reader who opens this page
                # first meets (empty localStorage), not what an earlier page left behind.
                context = browser.new_context()
                context.route("**/*", route)
                page = context.new_page()
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(
                    f"console: {m.text} ({m.location.get('url')})") if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(f"page error: {e}"))
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
                problems += [f"{name}: {e}" for e in errors]
                context.close()
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


def _chapter_html(book, chapter: str) -> str:
    root, _ = book
    return (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").read_text(encoding="utf-8")


def visible_code_before_first_section(page: str) -> tuple[str, list[str]]:
    """The chapter's title and the code a reader sees before its first ``##`` heading.

    A code cell's input is visible unless the cell was tagged ``remove-input``
    or ``remove-cell`` (no ``cell_input`` in the page) or ``hide-input`` (the
    input sits in a collapsed ``<details>``).

    Returns
    -------
    (str, list of str)
        The ``<h1>`` text and the first line of each visible input.
    """
    from bs4 import BeautifulSoup

    article = BeautifulSoup(page, "html.parser").select_one("article") or BeautifulSoup(page, "html.parser")
    title = article.find("h1")
    visible = []
    for element in article.find_all(["h2", "div"]):
        if element.name == "h2":
            break
        classes = element.get("class") or []
        if "cell_input" in classes and element.find_parent("details") is None:
            visible.append(element.get_text(" ", strip=True)[:80])
    return (title.get_text(" ", strip=True) if title else ""), visible


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_chapter_opens_with_its_title_and_prose_not_code(book, chapter):
    title, visible = visible_code_before_first_section(_chapter_html(book, chapter))
    assert title, f"{chapter}: no <h1> title"
    assert not visible, f"{chapter}: code shown before the first section: {visible}"
    page = _chapter_html(book, chapter)
    assert page.count("mer-parameters") == 1, f"{chapter}: the parameter table should appear once"
    assert page.count("mer-stamp") == 1, f"{chapter}: the reproducibility stamp should appear once"
    assert "&#39;run_time_s&#39;" not in page and "'run_time_s'" not in page, \
        f"{chapter}: the stamp is also printed as a raw dict"


def test_uncaptioned_figures_are_followed_by_what_to_look_at(book):
    """The figures the UNCAPTIONED_CALLS cells draw carry a caption line under them in the page."""
    if "04_sonification" not in CHAPTERS:
        pytest.skip("no chapter 4 in this run")
    from mer.display import QUADRANT_CAPTIONS

    text = re.sub(r"<[^>]+>", "", html.unescape(_chapter_html(book, "04_sonification")))
    text = re.sub(r"\s+", " ", text)
    shown = [q for q, caption in QUADRANT_CAPTIONS.items() if caption in text]
    assert shown, "no quadrant figure of chapter 4 is followed by its caption line"
    assert "The kept energy should lie on the notes the relevance marked." in text


def test_pages_load_nothing_from_another_host(book):
    """Every script, style sheet and font a page names is served by the book itself."""
    root, _ = book
    html = root / "_build" / "html"
    outside = re.compile(r"""<(?:script|link|img|audio|source|iframe)\b[^>]*?\b(?:src|href)=["'](?:https?:)?//""",
                         re.IGNORECASE)
    for page in _pages(book):
        text = (html / page).read_text(encoding="utf-8")
        found = [m.group(0)[:160] for m in outside.finditer(text)
                 if 'rel="canonical"' not in m.group(0)]
        assert not found, f"{page} loads from another host: {found}"
        assert "widget-state+json" not in text, f"{page} carries ipywidgets state (needs the widgets' CDN manager)"


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM),
                                      args=CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"])


def test_first_screen_of_every_chapter_shows_no_code(book, served, tmp_path):
    """A 1400 x 900 window on each chapter: its title is on screen, no code cell is.

    Screenshots go to ``MER_SCREENSHOTS`` (a folder) when it is set, else to the
    test's scratch folder.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"browser test needs {CHROMIUM} (Debian package chromium)")
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("MER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    problems = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=SCREEN)
            for chapter in CHAPTERS:
                page.goto(f"{served}book/chapters/{chapter}.html", wait_until="load")
                page.screenshot(path=str(shots / f"{chapter}-first-screen.png"))
                seen = page.evaluate("""(height) => {
                    // collapsed behind "show code": inside a closed <details>, not rendered
                    const onScreen = e => { const r = e.getBoundingClientRect();
                        return r.width > 0 && r.height > 0 && r.top < height && r.bottom > 0
                               && !e.closest('details:not([open])')
                               && (!e.checkVisibility || e.checkVisibility({visibilityProperty: true})); };
                    const title = document.querySelector('article h1');
                    return {title: !!title && onScreen(title),
                            code: [...document.querySelectorAll('.cell_input')].filter(onScreen)
                                  .map(e => e.innerText.slice(0, 60)),
                            screens: document.documentElement.scrollHeight / height};
                }""", SCREEN["height"])
                if not seen["title"]:
                    problems.append(f"{chapter}: title not on the first screen")
                if seen["code"]:
                    problems.append(f"{chapter}: code on the first screen: {seen['code']}")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


def test_listening_sliders_switch_the_players_to_sounds_that_play(book, served):
    """Chapters 3 (probe clip) and 4 (each quadrant example): moving a slider changes
    the sonified and complement players' source, and the new source loads and plays."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser test needs {CHROMIUM} (Debian package chromium)")
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    pages = [c for c in ("03_lrp", "04_sonification") if c in CHAPTERS]
    if not pages:
        pytest.skip("no chapter with listening sliders in this run")
    problems, moved = [], {}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport=SCREEN)
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(served) else r.abort())
            for chapter in pages:
                page = context.new_page()
                errors = []
                page.on("pageerror", lambda e, errors=errors: errors.append(f"page error: {e}"))
                page.on("console", lambda m, errors=errors: errors.append(f"console: {m.text}")
                        if m.type == "error" else None)
                page.goto(f"{served}book/chapters/{chapter}.html", wait_until="load")
                boxes = page.locator("[data-mer-listen]")
                moved[chapter] = boxes.count()
                for k in range(boxes.count()):
                    box = boxes.nth(k)
                    slider = box.locator("input[type=range]")
                    before = box.evaluate("b => [...b.querySelectorAll('audio[data-mer-role]')].map(a => a.src)")
                    at_max = slider.evaluate("s => s.value === s.max")
                    box.scroll_into_view_if_needed()
                    slider.focus()
                    page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
                    after = box.evaluate("b => [...b.querySelectorAll('audio[data-mer-role]')].map(a => a.src)")
                    label = box.locator("output").inner_text()
                    if len(after) != 2 or any(a == b for a, b in zip(after, before)):
                        problems.append(f"{chapter} slider {k}: sources did not change ({before} -> {after})")
                        continue
                    played = box.evaluate("""async b => {
                        const out = [];
                        for (const a of b.querySelectorAll('audio[data-mer-role]')) {
                            if (a.readyState < 2) {
                                await new Promise((ok, no) => { a.addEventListener('canplay', ok, {once: true});
                                    a.addEventListener('error', () => no(new Error('error ' + (a.error && a.error.code))),
                                                       {once: true});
                                    setTimeout(() => no(new Error('no canplay in 20 s')), 20000); });
                            }
                            await a.play();
                            const ok = !a.paused && a.readyState >= 2;
                            a.pause();
                            out.push([a.currentSrc, ok, a.readyState, a.duration]);
                        }
                        return out;
                    }""")
                    for src, ok, state, duration in played:
                        if src not in after:
                            problems.append(f"{chapter} slider {k}: playing {src}, not the new source")
                        if not ok:
                            problems.append(f"{chapter} slider {k}: {src} did not play (readyState {state})")
                        elif abs(duration - CLIP_SECONDS) > 0.5:
                            problems.append(f"{chapter} slider {k}: {src} lasts {duration:.2f} s")
                    if not label.endswith("%"):
                        problems.append(f"{chapter} slider {k}: label {label!r}")
                problems += [f"{chapter}: {e}" for e in errors]
                page.close()
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
    if "03_lrp" in moved:
        assert moved["03_lrp"] >= 1, "chapter 3 should offer a listening slider for its probe clip"
    if "04_sonification" in moved:
        assert moved["04_sonification"] >= 1, "chapter 4 should offer a listening slider per quadrant example"


def test_every_parameter_a_chapter_declares_is_described(monkeypatch):
    monkeypatch.setenv("MER_ROOT", str(REPO))
    for chapter in CHAPTERS:
        missing = [name for name in runner.declared_parameters(chapter) if not profiles.describe(name)]
        assert not missing, f"{chapter}: mer.profiles.DESCRIPTIONS has no line for {missing}"
    for profile in profiles.PROFILES.values():
        assert not [name for name in profile if not profiles.describe(name)]


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
