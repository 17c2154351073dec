"""Run the chapters with Papermill and build the book: ``python -m mer run``.

A chapter is a parameterised notebook ``notebooks/NN_name.ipynb``. The runner

1. resolves its parameters: the profile's values (:mod:`mer.profiles`) and the
   ``-p NAME VALUE`` overrides, restricted to the names the chapter declares in
   its cell tagged ``parameters``;
2. skips it when its source bytes, resolved parameters and the ``mer`` source
   (:func:`mer.store.package_hash`) are those of the output already in
   ``book/chapters/`` (the key is kept in ``book/chapters/.cache/<chapter>.json``);
3. otherwise executes it with Papermill into a temporary file, with the kernel's
   working directory in ``book/chapters/`` (so audio and images a chapter
   writes land beside it), prepares it for the page (:func:`present`: the
   parameter cells hidden, no widget state), and renames it onto
   ``book/chapters/NN_name.ipynb`` only on success: a failing chapter leaves
   the previous good output;
4. builds the book with Jupyter Book (execution off), unless nothing the build
   reads has changed since the last build.

Every path goes through :func:`mer.store.root`, so ``MER_ROOT`` points the
runner at another copy of the book (the tests use a scratch copy).

Notebook: ``book/reproducing.md`` shows the commands.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import nbformat
import yaml
from tqdm.auto import tqdm

from . import MerError, ParameterError, profiles, store

log = logging.getLogger(__name__)

#: Kernel the chapters run in; the runner points it at its own interpreter.
KERNEL_NAME = "python3"
#: A chapter notebook's file name: two digits, underscore, a name.
CHAPTER_PATTERN = re.compile(r"^(\d{2})_([A-Za-z0-9_]+)\.ipynb$")
#: Key of the notebook metadata that marks a placeholder page.
PLACEHOLDER_KEY = "mer_placeholder"


class ChapterError(MerError):
    """A chapter failed while it was executed.

    Attributes
    ----------
    chapter : str
        The chapter's name (``"01_features"``).
    cell : int or None
        Execution count of the failing cell (as shown in the notebook).
    ename, evalue : str
        The exception's class name and message inside the kernel.
    failed_notebook : pathlib.Path or None
        The partly executed notebook, kept for inspection.
    """

    def __init__(self, message: str, *, chapter: str, cell: int | None = None, ename: str = "",
                 evalue: str = "", failed_notebook: Path | None = None):
        super().__init__(message)
        self.chapter = chapter
        self.cell = cell
        self.ename = ename
        self.evalue = evalue
        self.failed_notebook = failed_notebook


@dataclass
class RunReport:
    """What a :func:`run` did.

    Attributes
    ----------
    executed : list of str
        Chapters executed, in order.
    skipped : list of str
        Chapters whose cached output was up to date.
    placeholders : list of str
        Chapters of ``_toc.yml`` rendered as a "not yet executed" page.
    parameters : dict
        ``chapter -> parameters`` passed to (or cached for) each selected chapter.
    seconds : dict
        ``chapter -> wall time`` of each executed chapter.
    reasons : dict
        ``chapter -> why it was executed`` (see :func:`stale_reason`).
    built : bool
        The book was built in this run.
    build_skipped : bool
        A build was asked for, but nothing it reads had changed.
    build_seconds : float
        Wall time of the build (0 when none ran).
    """

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    built: bool = False
    build_skipped: bool = False
    build_seconds: float = 0.0


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------

def notebooks_dir() -> Path:
    """``<root>/notebooks``: the chapter sources."""
    return store.root() / "notebooks"


def chapters_dir() -> Path:
    """``<root>/book/chapters``: the executed chapters the book renders."""
    return store.root() / "book" / "chapters"


def cache_dir() -> Path:
    """``<root>/book/chapters/.cache``: one cache key per executed chapter."""
    return chapters_dir() / ".cache"


def html_dir() -> Path:
    """``<build>/html``: the rendered book."""
    return store.build_dir() / "html"


# ---------------------------------------------------------------------------
# Chapters and parameters
# ---------------------------------------------------------------------------

def available_chapters() -> list[str]:
    """Names of the chapter notebooks in ``notebooks/``, in book order.

    Returns
    -------
    list of str
        ``["00_data", "01_features", ...]`` (file stems).
    """
    folder = notebooks_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if CHAPTER_PATTERN.match(p.name))


def resolve_chapters(selection: Iterable[str] | None = None) -> list[str]:
    """Turn chapter selectors into chapter names, in book order.

    Parameters
    ----------
    selection : iterable of str, optional
        Each one ``"01_features"``, ``"01"`` (or ``"1"``) or ``"features"``.
        ``None`` or empty selects every chapter.

    Raises
    ------
    ParameterError
        If a selector matches no chapter (the message lists the chapters).
    """
    chapters = available_chapters()
    if not selection:
        return chapters
    chosen = set()
    for item in selection:
        item = str(item).strip().removesuffix(".ipynb")
        matches = [c for c in chapters
                   if item == c
                   or (item.isdigit() and int(item) == int(c[:2]))
                   or item == c[3:]]
        if not matches:
            raise ParameterError(f"unknown chapter {item!r}; expected one of {chapters} "
                                 "(or their number, or their name without the number)")
        chosen.update(matches)
    return [c for c in chapters if c in chosen]


def declared_parameters(chapter: str) -> dict[str, Any]:
    """The parameters chapter ``chapter`` declares, with their defaults.

    Read without a kernel by :func:`papermill.inspect_notebook` from the cell
    tagged ``parameters``.

    Returns
    -------
    dict
        ``name -> default`` as written in the notebook (a string of source).
    """
    import papermill  # papermill takes ~0.4 s to import; only executing a chapter needs it

    path = notebooks_dir() / f"{chapter}.ipynb"
    found = papermill.inspect_notebook(str(path))
    return {name: spec.get("default") for name, spec in found.items()}


def parse_value(text: Any) -> Any:
    """Parse a command-line value as a YAML scalar (int, float, bool or str).

    ``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"FluidR3_GM"`` -> the
    string; anything that is not such a scalar (``""``, ``"null"``, a list or a
    date) stays the string as given.
    """
    if not isinstance(text, str):
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (bool, int, float, str)):
        return value
    return text


#: Parameters holding a file or folder path (relative ones are made absolute).
PATH_PARAMETERS = ("data_dir", "checkpoint", "pretrained")


def resolve_parameters(chapters: list[str], profile: str = "default",
                       overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Parameters of each chapter: profile + overrides, restricted to what it declares.

    Parameters
    ----------
    chapters : list of str
        Chapter names (see :func:`resolve_chapters`).
    profile : str
        ``"quick"``, ``"default"`` or ``"thesis"``.
    overrides : dict, optional
        ``name -> value``; string values are parsed with :func:`parse_value`.

    Returns
    -------
    dict
        ``chapter -> {name: value}``.

    Raises
    ------
    ParameterError
        If an override names a parameter no selected chapter declares; the
        message lists the parameters they do declare.
    """
    values = profiles.get(profile)
    overrides = {str(k): parse_value(v) for k, v in (overrides or {}).items()}
    # A relative path is the user's, from where they ran the command; the
    # kernel runs in book/chapters, so it gets the absolute path.
    for name in PATH_PARAMETERS:
        value = overrides.get(name)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            if name != "pretrained" or Path(value).exists():  # else a Hugging Face model id
                overrides[name] = str(Path(value).expanduser().resolve())
    values.update(overrides)
    declared = {chapter: declared_parameters(chapter) for chapter in chapters}
    valid = sorted(set().union(*declared.values())) if declared else []
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {unknown} for chapter(s) {chapters or '(none found)'}; "
            f"valid parameters: {', '.join(valid) if valid else '(none)'}")
    return {chapter: {name: values[name] for name in names if name in values}
            for chapter, names in declared.items()}


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_entry(chapter: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """What an executed chapter depends on: the source notebook's bytes, the
    resolved parameters and the ``mer`` package source (the kernel is the
    runner's own interpreter)."""
    source = notebooks_dir() / f"{chapter}.ipynb"
    return {"source_sha256": _sha256(source), "parameters": parameters,
            "mer_code": store.package_hash()}


def cache_key(chapter: str, parameters: dict[str, Any]) -> str:
    """Content hash of :func:`cache_entry`."""
    return store.hash_params(cache_entry(chapter, parameters), length=64)


def _cache_file(chapter: str) -> Path:
    return cache_dir() / f"{chapter}.json"


def stale_reason(chapter: str, parameters: dict[str, Any]) -> str | None:
    """Why ``book/chapters/<chapter>.ipynb`` must be executed again, or ``None``.

    Returns
    -------
    str or None
        ``"no output"``, ``"source notebook changed"``, ``"parameters changed"``,
        ``"mer code changed"``, ``"output changed since it was executed"``...;
        ``None`` when the output is a good one for these parameters.
    """
    output = chapters_dir() / f"{chapter}.ipynb"
    cached = _cache_file(chapter)
    if not output.is_file():
        return "no output"
    if not cached.is_file():
        return "placeholder" if is_placeholder(output) else "no cache entry"
    try:
        entry = json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "unreadable cache entry"
    now = cache_entry(chapter, parameters)
    if entry.get("key") == store.hash_params(now, length=64):
        if entry.get("output_sha256") != _sha256(output):
            return "output changed since it was executed"
        return None
    if entry.get("source_sha256") != now["source_sha256"]:
        return "source notebook changed"
    if store.canonical_json(entry.get("parameters")) != store.canonical_json(parameters):
        return "parameters changed"
    if entry.get("mer_code") != now["mer_code"]:
        return f"mer code changed ({entry.get('mer_code')} -> {now['mer_code']})"
    return "cache key changed"


def is_current(chapter: str, parameters: dict[str, Any]) -> bool:
    """Whether ``book/chapters/<chapter>.ipynb`` is a good output for these parameters."""
    return stale_reason(chapter, parameters) is None


# ---------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def kernel_environment() -> Iterator[None]:
    """Environment of the chapter kernels while the block runs.

    * ``python3`` resolves to a kernel spec that starts *this* interpreter
      (``sys.executable``), ahead of any user-level ``python3`` spec that may
      point at another environment (``JUPYTER_PATH`` is searched first);
    * ``PYTHONPATH`` starts with the folder holding this ``mer`` package, so
      the kernel, whose working directory is ``book/chapters``, imports it;
    * ``MER_ROOT`` is the runner's root; ``MER_RUNNER=1`` tells :mod:`mer.widgets` to
      show static figures (a rendered page has no kernel for a live panel).
    """
    package_parent = str(Path(__file__).resolve().parent.parent)
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "PYTHONPATH", "MER_ROOT", "MER_RUNNER", "MPLBACKEND")}
    with tempfile.TemporaryDirectory(prefix="mer-kernels-") as folder:
        spec_dir = Path(folder) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"Python 3 ({sys.prefix})", "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [folder, saved["JUPYTER_PATH"]]))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, saved["PYTHONPATH"]]))
        os.environ["MER_ROOT"] = str(store.root())
        os.environ["MER_RUNNER"] = "1"  # mer.widgets shows static figures, not live panels
        # A caller's MPLBACKEND=Agg (the test suite's) would stop figures from
        # reaching the notebook: kernels always draw inline.
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _first_line(source: str) -> str:
    lines = [line for line in (source or "").splitlines() if line.strip()]
    return (lines[0][:100] + (" ..." if len(lines) > 1 else "")) if lines else ""


def execute_chapter(chapter: str, parameters: dict[str, Any], *, progress: bool = True) -> float:
    """Execute one chapter with Papermill; rename the result into place on success.

    Parameters
    ----------
    chapter : str
        The chapter's name.
    parameters : dict
        The values injected after its ``parameters`` cell.
    progress : bool
        Show Papermill's per-cell progress bar.

    Returns
    -------
    float
        Wall time in seconds.

    Raises
    ------
    ChapterError
        If a cell raises; ``book/chapters/<chapter>.ipynb`` is left as it was and
        the partly executed notebook is kept at
        ``book/chapters/.cache/<chapter>.failed.ipynb``.
    """
    # papermill takes ~0.4 s to import; only executing a chapter needs it
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    source = notebooks_dir() / f"{chapter}.ipynb"
    output = chapters_dir() / f"{chapter}.ipynb"
    failed = cache_dir() / f"{chapter}.failed.ipynb"
    cache_dir().mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fd, scratch = tempfile.mkstemp(prefix=f"{chapter}.", suffix=".running.ipynb", dir=cache_dir())
    os.close(fd)
    scratch = Path(scratch)
    # The kernel talks to papermill over Unix sockets where there are some: over TCP (jupyter_client's
    # default) ipykernel 7 warns on every chapter that the traffic is unencrypted, and any local user
    # could connect to the port. The sockets live in a private temporary folder, not in the chapters'
    # working directory (jupyter_client's default), where a run killed mid-chapter would leave them.
    sockets = tempfile.TemporaryDirectory(prefix="mer-kernel-") if os.name == "posix" else None
    engine = ({"config": Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets.name, "kernel")}})}
              if sockets else {})
    try:
        with kernel_environment(), (sockets or contextlib.nullcontext()):
            papermill.execute_notebook(
                str(source), str(scratch), parameters=parameters, kernel_name=KERNEL_NAME,
                cwd=str(chapters_dir()), log_output=False,
                progress_bar={"desc": chapter, "leave": False} if progress else False, **engine)
    except PapermillExecutionError as error:
        os.replace(scratch, failed)
        raise ChapterError(
            f"chapter {chapter} failed in cell [{error.exec_count}] "
            f"(`{_first_line(error.source)}`): {error.ename}: {error.evalue}\n"
            f"  previous output kept: {output if output.exists() else '(none)'}\n"
            f"  failed notebook: {failed}",
            chapter=chapter, cell=error.exec_count, ename=error.ename, evalue=error.evalue,
            failed_notebook=failed) from None
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    missing = missing_glue_keys(scratch)
    if missing:
        os.replace(scratch, failed)
        raise ChapterError(
            f"chapter {chapter}: its prose cites {len(missing)} number(s) the run did not record "
            f"(glue key {', '.join(repr(k) for k in missing)}); record them with mer.report.record "
            f"or take them out of the prose\n"
            f"  previous output kept: {output if output.exists() else '(none)'}\n"
            f"  executed notebook: {failed}",
            chapter=chapter, failed_notebook=failed)
    present(scratch)
    os.chmod(scratch, 0o644)  # mkstemp creates 0600; the book is read by others
    os.replace(scratch, output)
    failed.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    store.write_json(_cache_file(chapter), {
        "chapter": chapter, "key": cache_key(chapter, parameters), **cache_entry(chapter, parameters),
        "output_sha256": _sha256(output), "seconds": round(seconds, 1), "python": sys.executable,
    })
    return seconds


#: Tags of the cells that only carry parameters: the chapter's own ``parameters``
#: cell and Papermill's ``injected-parameters`` copy. The reader sees the values
#: as one table instead (:func:`mer.report.show_parameters`).
PARAMETER_TAGS = ("parameters", "injected-parameters")
#: MIME type of an ipywidgets view in a notebook output.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def present(notebook: str | Path) -> dict[str, int]:
    """Prepare an executed chapter for the page, in place.

    * The ``parameters`` and ``injected-parameters`` cells are tagged
      ``remove-cell``: the page shows the parameter table the chapter's setup
      cell displays (:func:`mer.report.show_parameters`), not two code cells.
      The source notebook keeps its ``parameters`` tag; Papermill needs it.
    * Outputs that are ipywidgets views (under the runner these are only the
      kernel's tqdm progress bars; the panels of :mod:`mer.widgets` show a note
      instead) and the notebook's saved widget state are dropped. A page with
      widget state makes myst-nb load RequireJS and the widgets' HTML manager
      from public CDNs, which an offline reader does not have; the book's own
      listening controls are plain HTML (:func:`mer.display.listening_slider`).

    Parameters
    ----------
    notebook : path
        An executed notebook (``.ipynb``), rewritten in place.

    Returns
    -------
    dict
        ``{"parameter_cells": n, "widget_outputs": n}``: what was tagged and dropped.

    Notebook: every chapter (the runner calls it after execution).
    """

    nb = nbformat.read(str(notebook), as_version=4)
    tagged = dropped = 0
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if cell.cell_type == "code" and any(t in tags for t in PARAMETER_TAGS):
            if "remove-cell" not in tags:
                tags.append("remove-cell")
            tagged += 1
        if not tags:
            del cell.metadata["tags"]
        outputs = cell.get("outputs")
        if outputs:
            kept = [o for o in outputs if WIDGET_VIEW not in o.get("data", {})]
            dropped += len(outputs) - len(kept)
            cell.outputs = kept
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, str(notebook))
    return {"parameter_cells": tagged, "widget_outputs": dropped}


#: A myst-nb glue reference in markdown: ``{glue}`key```, ``{glue:text}`key:.2f```,
#: or a ``{glue:figure} key`` / ``{glue:math} key`` directive.
GLUE_ROLE = re.compile(r"\{glue(?::[a-z]*)?\}`([^`:]+)(?::[^`]*)?`")
GLUE_DIRECTIVE = re.compile(r"^[`:]{3,}\{glue(?::[a-z]+)?\}\s+(\S+)", re.MULTILINE)


def missing_glue_keys(notebook: str | Path) -> list[str]:
    """Glue keys the notebook's prose cites that none of its outputs records.

    myst-nb only logs a missing key and renders an empty slot, so a number
    the prose promises silently vanishes from the page; :func:`execute_chapter`
    refuses such a chapter instead.

    Parameters
    ----------
    notebook : path
        An executed notebook (``.ipynb``).

    Returns
    -------
    list of str
        Missing keys, sorted (empty when every citation has its value).

    Notebook: book/reproducing.md (what a run guarantees).
    """

    nb = nbformat.read(str(notebook), as_version=4)
    cited, recorded = set(), set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cited.update(k.strip() for k in GLUE_ROLE.findall(cell.source))
            cited.update(k.strip() for k in GLUE_DIRECTIVE.findall(cell.source))
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                recorded.add(name)
    return sorted(cited - recorded)


# ---------------------------------------------------------------------------
# Table of contents and placeholders
# ---------------------------------------------------------------------------

def toc_chapters() -> list[str]:
    """Names of the executed chapters ``_toc.yml`` lists (``book/chapters/<name>``)."""
    toc = store.root() / "_toc.yml"
    if not toc.is_file():
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            target = node.get("file")
            if isinstance(target, str) and target.startswith("book/chapters/"):
                found.append(Path(target).stem)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(toc.read_text(encoding="utf-8")))
    return found


def write_placeholders() -> list[str]:
    """Write a "not yet executed" page for every chapter in ``_toc.yml`` without output.

    A placeholder is a one-cell notebook marked ``metadata.mer_placeholder``;
    it has no cache entry, so it is never taken for a good output.

    Returns
    -------
    list of str
        The chapters that got a placeholder.
    """

    written = []
    for chapter in toc_chapters():
        output = chapters_dir() / f"{chapter}.ipynb"
        if output.exists():
            continue
        number = chapter[:2]
        exists = (notebooks_dir() / f"{chapter}.ipynb").is_file()
        title = chapter[3:].replace("_", " ").capitalize()
        text = (f"# {title}\n\n"
                + ("This chapter has not been executed yet. Run it with\n\n"
                   f"```bash\npython -m mer run {number}\n```\n\n"
                   "and build the book again (`make book`)." if exists else
                   f"The source of this chapter, `notebooks/{chapter}.ipynb`, is not written yet."))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
        notebook.metadata[PLACEHOLDER_KEY] = True
        notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3",
                                           "language": "python"}
        with store.atomic_path(output) as tmp:
            nbformat.write(notebook, str(tmp))
        _cache_file(chapter).unlink(missing_ok=True)
        written.append(chapter)
    return written


def is_placeholder(path: Path) -> bool:
    """Whether the executed notebook at ``path`` is a placeholder page."""
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get(PLACEHOLDER_KEY))
    except (OSError, json.JSONDecodeError):
        return False


# ---------------------------------------------------------------------------
# Book build
# ---------------------------------------------------------------------------

def build_inputs() -> list[Path]:
    """Every file the book build reads besides the ``mer`` source (for its docstrings)."""
    root = store.root()
    files = [root / "_config.yml", root / "_toc.yml"]
    book = root / "book"
    if book.is_dir():
        files += [p for p in book.rglob("*") if p.is_file()  # not .cache, nor the build's own bytecode
                  and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(book).parts)]
    return [p for p in files if p.is_file()]


def build_key() -> str:
    """Hash of the build's inputs: config, toc, ``book/**`` and the ``mer`` source."""
    return store.hash_params({"files": store.hash_files(build_inputs(), base=store.root()),
                              "mer_code": store.package_hash()}, length=64)


def _build_stamp() -> Path:
    return store.build_dir() / ".mer-build.json"


def build_is_current() -> bool:
    """Whether ``<build>/html/index.html`` was built from the present inputs."""
    stamp = _build_stamp()
    if not ((html_dir() / "index.html").is_file() and stamp.is_file()):
        return False
    try:
        return json.loads(stamp.read_text(encoding="utf-8")).get("key") == build_key()
    except (OSError, json.JSONDecodeError):
        return False


def build_book(*, force: bool = False) -> float | None:
    """Build the HTML book with Jupyter Book (``jupyter-book build <root>``).

    Returns
    -------
    float or None
        Wall time in seconds, or ``None`` when the build was up to date.

    Raises
    ------
    MerError
        If Jupyter Book fails; the message carries the end of its output.
    """
    if not force and build_is_current():
        return None
    key = build_key()
    root = store.root()
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
               "build", str(root), "--builder", "html"]
    if store.build_dir().resolve() != (root / "_build").resolve():
        if store.build_dir().name != "_build":
            raise ParameterError(f"MER_BUILD must end in a folder named _build (Jupyter Book "
                                 f"writes <path-output>/_build), got {store.build_dir()}")
        command += ["--path-output", str(store.build_dir().parent)]
    environment = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
    environment["MER_ROOT"] = str(root)
    environment["NO_COLOR"] = "1"  # Sphinx: plain log lines
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    for line in warnings:
        log.warning("book: %s", line.strip())
    unglued = [line.strip() for line in warnings if "found in glue data" in line]
    if unglued:  # a page outside the chapters (or a key the scan could not see)
        raise MerError(f"jupyter-book build {root}: a page cites a number no run recorded:\n"
                       + "\n".join(unglued[:10]))
    if done.returncode != 0 or not (html_dir() / "index.html").is_file():
        tail = "\n".join(output.splitlines()[-30:])
        raise MerError(f"jupyter-book build {root} failed (exit {done.returncode}):\n{tail}")
    store.write_json(_build_stamp(), {"key": key, "seconds": round(seconds, 1),
                                      "warnings": [line.strip() for line in warnings]})
    return seconds


# ---------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------

def run(chapters: Iterable[str] | None = None, profile: str = "default",
        overrides: dict[str, Any] | None = None, force: bool = False, build: bool = True,
        *, progress: bool = True) -> RunReport:
    """Execute chapters (cached) and build the book.

    Parameters
    ----------
    chapters : iterable of str, optional
        Chapter selectors (``"01_features"``, ``"01"``, ``"features"``); ``None``
        runs every chapter in ``notebooks/``, in order.
    profile : str
        ``"quick"``, ``"default"`` or ``"thesis"`` (:mod:`mer.profiles`).
    overrides : dict, optional
        ``name -> value`` replacing profile values (``-p NAME VALUE``).
    force : bool
        Execute even chapters whose output is up to date (and rebuild).
    build : bool
        Build the book after the chapters.
    progress : bool
        Show progress bars.

    Returns
    -------
    RunReport

    Raises
    ------
    ParameterError
        Unknown chapter, profile or parameter.
    ChapterError
        A chapter failed; the chapters before it keep their new outputs, it
        and the ones after keep their previous ones.
    """

    selected = resolve_chapters(chapters)
    parameters = resolve_parameters(selected, profile, overrides)
    report = RunReport(parameters=parameters)
    chapters_dir().mkdir(parents=True, exist_ok=True)
    bar = tqdm(selected, desc="chapters", unit="chapter", disable=not progress or not selected)
    for chapter in bar:
        bar.set_postfix_str(chapter)
        reason = "--force" if force else stale_reason(chapter, parameters[chapter])
        if reason is None:
            log.info("%s: up to date, skipped", chapter)
            report.skipped.append(chapter)
            continue
        report.reasons[chapter] = reason
        log.info("%s: executing (%s) with %s", chapter, reason, parameters[chapter])
        seconds = execute_chapter(chapter, parameters[chapter], progress=progress)
        report.executed.append(chapter)
        report.seconds[chapter] = round(seconds, 1)
        log.info("%s: executed in %.1f s", chapter, seconds)
    bar.close()
    report.placeholders = write_placeholders()
    for chapter in report.placeholders:
        log.info("%s: not executed, placeholder page written", chapter)
    if build:
        seconds = build_book(force=force)
        if seconds is None:
            report.build_skipped = True
            log.info("book: up to date, build skipped (%s)", html_dir() / "index.html")
        else:
            report.built = True
            report.build_seconds = round(seconds, 1)
            log.info("book: built in %.1f s: %s", seconds, html_dir() / "index.html")
    return report
